"""Why the next run computes a scene of a stage whose fingerprint is up to date (`status`).

It follows the runner's fingerprint chain: a source scene's fingerprint covers the manifest of
its raw files (path, size, mtime), a later stage's scene covers its inputs' scene fingerprints.
So a changed raw file reruns its scene in the source stage and in every stage downstream, and
the reason names the file (the source stage keeps each scene's manifest as ``raw_files``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline import store
from pipeline.fingerprint import scene_fingerprint
from pipeline.runner import RunConfig, StagePlan, scene_inputs, scene_selection
from pipeline.stages import Graph


def scene_reasons(graph: Graph, cfg: RunConfig, plans: list[StagePlan]) -> dict[str, dict[str, str]]:
    """Per stage, the scenes the next run computes with the reason for each; empty for a stage
    that is complete or rebuilds every scene (its plan's reason says why)."""
    reader, scenes = scene_selection(graph.dataset(cfg.dataset), plans, cfg)
    fps: dict[str, dict[str, str]] = {}
    pending: dict[str, dict[str, str]] = {}
    for p in plans:
        name, stage = p.stage.name, p.stage
        fps[name], pending[name] = {}, {}
        for scene in [store.GLOBAL] if stage.kind == "global" else scenes:
            inputs = scene_inputs(stage, scene, reader, fps)
            fps[name][scene] = scene_fingerprint(p.fingerprint, inputs)
            if p.reason == "up to date" and not store.scene_done(cfg.store_root, name, scene, fps[name][scene]):
                pending[name][scene] = _scene_reason(cfg.store_root, p, scene, inputs, pending)
    return pending


def _scene_reason(store_root: str, p: StagePlan, scene: str, inputs: Any,
                  pending: dict[str, dict[str, str]]) -> str:
    """Why one scene of an up-to-date stage is not done under its current fingerprint."""
    name = p.stage.name
    try:
        attrs = store.stage_attrs(store_root, name, scene)
    except KeyError:
        failed = store.stage_attrs(store_root, name).get("failed") or {}
        return "failed in the last run, retried" if scene in failed else "not computed yet"
    except Exception as exc:  # corrupt group metadata: the runner treats the scene as not done
        return f"its stored group cannot be read ({type(exc).__name__}), recomputed"
    if "done" not in attrs:
        return "half written by an interrupted run, recomputed"
    if p.stage.kind == "source":
        return _raw_change(attrs.get("raw_files"), inputs)
    changed = [n for n in p.stage.needs if scene in pending[n] or store.GLOBAL in pending[n]]
    if changed:
        return f"its inputs are recomputed ({', '.join(changed)})"
    return "its inputs changed since it was written"


def _raw_change(recorded: Sequence[Sequence[Any]] | None, manifest: Sequence[Sequence[Any]]) -> str:
    """The raw files whose (size, mtime) differ from those the stored scene was read from."""
    if not recorded:
        return "raw files changed"
    before = {str(e[0]): list(e[1:]) for e in recorded}
    after = {str(e[0]): list(e[1:]) for e in manifest}
    changed = sorted(f for f in before.keys() | after.keys() if before.get(f) != after.get(f))
    if not changed:
        return "raw files changed"
    first = changed[0]
    if after.get(first, [-1])[0] == -1:
        how = "removed"
    elif before.get(first, [-1])[0] == -1:
        how = "added"
    else:
        how = "modified"
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return f"raw file {how}: {first}{more}"
