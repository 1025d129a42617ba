"""Runs a command line in this process and SIGKILLs the process at a chosen point (crash tests).

    python -m killpoints pipeline STAGE N WHEN -- <hicl-pipeline arguments>
        WHEN = marker: while writing the N-th scene of STAGE, after its arrays, before its done
               marker; done: right after the N-th scene of STAGE is completely written;
               reset: right after STAGE's store is reset (N is ignored).
    python -m killpoints train STEP -- <hicl-train arguments>
        right after training step STEP is logged (the step's optimiser update is done).

The kill is the real thing (SIGKILL: no cleanup, no finally blocks); only its moment is chosen
by wrapping the functions the command calls.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def pipeline(stage: str, n: int, when: str, argv: list[str]) -> None:
    """`hicl-pipeline` killed while or after writing the n-th scene of ``stage``, or after its reset."""
    from zarr.core.attributes import Attributes

    from pipeline import store
    from pipeline.cli import app

    write_scene, reset_stage, setitem = store.write_scene, store.reset_stage, Attributes.__setitem__
    state = {"count": 0, "armed": False}

    def write(root: Any, name: str, scene: str, outputs: Any, fingerprint: str, **kw: Any) -> None:
        state["count"] += name == stage
        hit = name == stage and state["count"] == n
        state["armed"] = hit and when == "marker"
        write_scene(root, name, scene, outputs, fingerprint, **kw)
        if hit and when == "done":
            _kill()

    def set_attr(self: Attributes, key: str, value: Any) -> None:
        if state["armed"] and key == "done":
            _kill()
        setitem(self, key, value)

    def reset(root: Any, name: str, attrs: Any) -> None:
        reset_stage(root, name, attrs)
        if name == stage and when == "reset":
            _kill()

    store.write_scene, store.reset_stage, Attributes.__setitem__ = write, reset, set_attr
    sys.argv = ["hicl-pipeline", *argv]
    app()


def train(step: int, argv: list[str]) -> None:
    """`hicl-train` killed right after training step ``step`` is logged."""
    from trainer.cli import app
    from trainer.runlog import RunLog

    write = RunLog.write

    def logged(self: RunLog, record: dict[str, Any], at: int) -> None:
        write(self, record, at)
        if record.get("kind") == "train" and record["step"] == step:
            _kill()

    RunLog.write = logged
    sys.argv = ["hicl-train", *argv]
    app()


if __name__ == "__main__":
    split = sys.argv.index("--")
    head, rest = sys.argv[1:split], sys.argv[split + 1:]
    if head[0] == "pipeline":
        pipeline(head[1], int(head[2]), head[3], rest)
    else:
        train(int(head[1]), rest)
