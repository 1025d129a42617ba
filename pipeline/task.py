"""One task: compute one scene of one stage, check it against the declared outputs, write it.

A task runs on a Dask worker or in-process, so everything it needs travels as plain values.
A failure comes back as one line naming the scene (an unexpected exception also writes its
traceback to ``<store_root>/logs/<stage>/<scene>.log``); the other scenes go on.
"""
from __future__ import annotations

import posixpath
import time
import traceback
from pathlib import Path
from typing import Any, NamedTuple

from pipeline import store
from pipeline.errors import PipelineError, SceneError
from pipeline.fields import Fields
from pipeline.stages import import_named

Result = tuple[str, str | None, float]  # (scene, failure line or None, seconds)


class Task(NamedTuple):
    """The arguments of one ``run_scene_task`` call, all plain values."""

    stage: str
    function: str
    kind: str
    needs: tuple[tuple[str, bool], ...]  # (stage, is_global) of each input
    store_root: str
    scene: str
    params: dict[str, Any]
    fingerprint: str
    source: tuple[str, str] | None  # (reader, data_root) of the source stage
    outputs: Fields | None = None  # declared keys of the result; None: not checked

    @property
    def key(self) -> str:
        """A Dask key unique to this scene's computation."""
        return f"{self.stage}-{self.scene}-{self.fingerprint}"


def make_reader(reader: str, data_root: str, params: dict[str, Any]) -> Any:
    """The dataset reader named by ``module:Class`` over ``data_root``."""
    return import_named(reader, "reader")(Path(data_root), params)


def run_scene_task(
    stage_name: str, function: str, kind: str, needs: tuple[tuple[str, bool], ...], store_root: str,
    scene: str, params: dict[str, Any], fingerprint: str, source: tuple[str, str] | None,
    outputs: Fields | None = None,
) -> Result:
    """Compute and write one scene of one stage (the fields of ``Task``); returns (scene, failure
    line or None, seconds)."""
    t0 = time.perf_counter()
    try:
        fn = import_named(function, f"stage '{stage_name}': function")
        if kind == "source":
            assert source is not None
            out = fn(make_reader(source[0], source[1], params), scene)
        else:
            inputs = {n: store.read_scene(store_root, n, store.GLOBAL if is_global else scene)
                      for n, is_global in needs}
            out = fn(inputs, params)
        store.write_scene(store_root, stage_name, scene, out, fingerprint, declared=outputs)
    except SceneError as exc:
        exc.scene = exc.scene or scene
        return scene, exc.line(), time.perf_counter() - t0
    except PipelineError as exc:
        line = str(exc) if str(exc).startswith(f"scene {scene}") else f"scene {scene}: {exc}"
        return scene, line, time.perf_counter() - t0
    except Exception as exc:  # an unexpected bug: one line here, the traceback in a log file
        log = _log_traceback(store_root, stage_name, scene)
        return scene, f"scene {scene}: unexpected {type(exc).__name__}: {exc} (traceback: {log})", time.perf_counter() - t0
    return scene, None, time.perf_counter() - t0


def _log_traceback(store_root: str, stage: str, scene: str) -> str:
    """The current traceback into ``<store_root>/logs/<stage>/<scene>.log``; returns where it went."""
    try:
        fs, root = store.filesystem(store_root)
        path = posixpath.join(root, "logs", stage, f"{scene}.log")
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        fs.pipe_file(path, traceback.format_exc().encode())
    except (OSError, PipelineError) as exc:
        return f"not written: {exc}"
    return store.path_in(store_root, "logs", stage, f"{scene}.log")
