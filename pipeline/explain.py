"""Why a stage or a scene is computed again, in words (the reasons of `pipeline.plan`).

A stage is rebuilt when what its fingerprint covers changed: its variant, code version, params or
an upstream stage. A scene of a stage that is not rebuilt is computed when it is not done under
its scene fingerprint, which covers the manifest of its raw files (path, size, mtime) for the
source stage, and its inputs' scene fingerprints later on. So a changed raw file reruns its scene
in the source stage and in every stage downstream, and the reason names the file (the source stage
keeps each scene's manifest as ``raw_files``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline import store
from pipeline.stages import Stage


def stage_change(attrs: Mapping[str, Any], stage: Stage, params: Mapping[str, Any],
                 fps: Mapping[str, str]) -> str:
    """What differs between a stage's stored attributes and this run's stage, variant, params and
    upstream fingerprints ``fps``."""
    if attrs.get("variant", "default") != stage.variant:
        return f"variant {attrs.get('variant', 'default')} -> {stage.variant}"
    if attrs.get("version") != stage.version:
        return f"code version {attrs.get('version')} -> {stage.version}"
    old = attrs.get("params", {})
    changed = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
    if changed:
        return "params changed: " + ", ".join(f"{k} {old.get(k)!r} -> {params.get(k)!r}" for k in changed)
    ups = sorted(n for n, f in attrs.get("upstream", {}).items() if fps.get(n) != f)
    return f"upstream changed: {', '.join(ups)}" if ups else "fingerprint changed"


def scene_reason(store_root: str, stage: Stage, scene: str, inputs: Any, recomputed: Sequence[str]) -> str:
    """Why one scene of a stage stored under its fingerprint is not done under its scene
    fingerprint; ``recomputed``: the stages it needs that the run computes for it."""
    try:
        attrs = store.stage_attrs(store_root, stage.name, scene)
    except KeyError:
        failed = store.stage_attrs(store_root, stage.name).get("failed") or {}
        return "failed in the last run, retried" if scene in failed else "not computed yet"
    except Exception as exc:  # corrupt group metadata: the scene is not done
        return f"its stored group cannot be read ({type(exc).__name__}), recomputed"
    if "done" not in attrs:
        return "half written by an interrupted run, recomputed"
    if stage.kind == "source":
        return _raw_change(attrs.get("raw_files"), inputs)
    if recomputed:
        return f"its inputs are recomputed ({', '.join(recomputed)})"
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
