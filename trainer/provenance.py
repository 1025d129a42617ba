"""What a run was trained by: the code's commit, the fingerprints of the stores it read, its
scenes, the preset and the overrides.

A run writes this record to `<run>/provenance.json` and into every checkpoint. `--resume`
compares the checkpoint's record with the current one and refuses, in one line, another store
(by content, not by path: a moved store resumes), other training or validation scenes, or other
code, unless `--allow-code-change` is given, which the record keeps with the epoch it resumed
from. The code is identified by its git commit and, for a tree with uncommitted changes, a
digest of `git diff HEAD`, so that two dirty trees with different edits never pass as one.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import store
from pipeline.errors import PipelineError
from trainer.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
FILE = "provenance.json"
OUTPUTS = ("benchmarks/results", "docs/figures")


def _git(*args: str, root: Path) -> str | None:
    """stdout of a git command in `root`; None where git or the repository is missing."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def code_state(root: Path = REPO) -> dict[str, Any]:
    """`commit` (None outside a git checkout), `dirty` (uncommitted changes to tracked files
    outside `OUTPUTS`) and, when dirty, `diff`: the first 16 hex digits of SHA-256 over their
    `git diff HEAD`."""
    commit = _git("rev-parse", "HEAD", root=root)
    if commit is None:
        return {"commit": None, "dirty": None}
    code = ["--", ".", *(f":(exclude){path}" for path in OUTPUTS)]
    status = _git("status", "--porcelain", "--untracked-files=no", *code, root=root) or ""
    state: dict[str, Any] = {"commit": commit.strip(), "dirty": bool(status.strip())}
    if state["dirty"]:
        diff = _git("diff", "HEAD", "--binary", *code, root=root) or ""
        state["diff"] = hashlib.sha256(diff.encode()).hexdigest()[:16]
    return state


def same_code(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two code states name the same commit and the same uncommitted changes."""
    return (a.get("commit"), a.get("diff")) == (b.get("commit"), b.get("diff"))


def describe_code(state: Mapping[str, Any]) -> str:
    """'6ddaf51' or '6ddaf51 with uncommitted changes 1a2b...' ('unknown code' outside git)."""
    commit = state.get("commit")
    if commit is None:
        return "unknown code (no git commit recorded)"
    return commit[:7] + (f" with uncommitted changes {state['diff']}" if state.get("dirty") else "")


def stages_read(cfg: TrainConfig) -> list[str]:
    """The stages a run of `cfg` reads: scenes, the class texts, and for training the pairs, the
    supervising labels and, where sampling or soft targets need them, the geometric sets."""
    stages = ["scenes", cfg.text_stage]
    if cfg.label_stage != "gt":
        stages += ["pairs", cfg.label_stage]
    if cfg.uses_samples or cfg.soft_targets:
        stages.append("geosets")
    return stages


def digest(values: Any) -> str:
    """First 16 hex digits of SHA-256 over the canonical JSON of `values`."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def stage_fingerprint(store_root: str, stage: str, scenes: Sequence[str]) -> dict[str, Any]:
    """A stage's fingerprint and a digest of the `done` marks of `scenes` (each mark is the
    fingerprint of what the scene was computed from), or of the global group; None where the
    stage is missing."""
    try:
        root = store.open_stage(store_root, stage)
    except PipelineError:
        return {"fingerprint": None, "scenes": None}
    names = list(scenes) if store.GLOBAL not in root else [store.GLOBAL]
    marks = {}
    for name in names:
        try:
            marks[name] = root[name].attrs.get("done")
        except Exception:  # a scene the stage lacks: its mark is None, which the digest keeps
            marks[name] = None
    return {"fingerprint": root.attrs.get("fingerprint"), "scenes": digest(marks)}


def store_fingerprints(cfg: TrainConfig, scenes: Sequence[str]) -> dict[str, Any]:
    """Per stage the run reads, its fingerprint over `scenes`, and one `digest` of them all."""
    stages = {stage: stage_fingerprint(cfg.store_root, stage, scenes) for stage in stages_read(cfg)}
    return {"stages": stages, "digest": digest(stages)}


def record(cfg: TrainConfig, train_scenes: Sequence[str], val_scenes: Sequence[str],
           origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The provenance of a run starting now: code, stores, scenes, and how its config was given
    (`origin`: `config`, the preset or file, and `overrides`, the --set values)."""
    origin = dict(origin or {})
    return {
        "code": code_state(),
        "config": origin.get("config"), "overrides": list(origin.get("overrides") or []),
        "store_root": cfg.store_root,
        "stores": store_fingerprints(cfg, sorted({*train_scenes, *val_scenes})),
        "train_scenes": {"count": len(train_scenes), "digest": digest(sorted(train_scenes))},
        "val_scenes": {"count": len(val_scenes), "digest": digest(sorted(val_scenes))},
        "resumes": [],
    }


def resume_problem(saved: Mapping[str, Any] | None, current: Mapping[str, Any],
                   allow_code_change: bool) -> str | None:
    """Why a run recorded as `saved` must not continue as `current` (None: it may)."""
    if saved is None:
        if allow_code_change:
            return None
        return ("it has no provenance record (written before runs recorded their commit and "
                "stores); pass --allow-code-change to resume it anyway")
    old, new = saved["stores"]["stages"], current["stores"]["stages"]
    for stage in sorted(set(old) | set(new)):
        if old.get(stage) != new.get(stage):
            was, now = (old.get(stage) or {}).get("fingerprint"), (new.get(stage) or {}).get("fingerprint")
            what = "its scenes differ" if was == now else f"fingerprint {was} in the checkpoint, {now} now"
            return (f"stage '{stage}' of the store differs from the one it was trained on ({what}; "
                    f"trained on {saved['store_root']}, now {current['store_root']})")
    for split in ("train", "val"):
        key = f"{split}_scenes"
        if saved[key] != current[key]:
            name = "training" if split == "train" else "validation"
            return (f"its {name} scenes differ ({saved[key]['count']} scenes in the checkpoint, "
                    f"{current[key]['count']} now, digest {saved[key]['digest']} vs {current[key]['digest']})")
    trained_by = saved["resumes"][-1]["code"] if saved["resumes"] else saved["code"]
    if not allow_code_change and not same_code(trained_by, current["code"]):
        return (f"it was trained by {describe_code(trained_by)}, the code is now "
                f"{describe_code(current['code'])}; pass --allow-code-change to resume anyway "
                f"(the run records it)")
    return None


def resumed(saved: Mapping[str, Any] | None, current: Mapping[str, Any], epoch: int,
            allow_code_change: bool) -> dict[str, Any]:
    """The record of a run resumed after `epoch`: the saved one (or, for a checkpoint without one,
    the current one marked as started unrecorded) with this resumption appended."""
    base = dict(saved) if saved is not None else {**current, "code": None, "unrecorded_before_epoch": epoch + 1}
    entry = {"epoch": epoch, "code": current["code"], "allow_code_change": allow_code_change}
    return {**base, "resumes": [*base.get("resumes", []), entry]}


def commits(prov: Mapping[str, Any]) -> list[str | None]:
    """Every commit that trained part of the run, in order (the start's, then each resumption's)."""
    states = [prov.get("code")] + [r["code"] for r in prov.get("resumes", [])]
    seen: list[str | None] = []
    for state in states:
        commit = None if state is None else state.get("commit")
        if commit not in seen:
            seen.append(commit)
    return seen


def write(run_dir: Path, prov: Mapping[str, Any]) -> None:
    """`<run>/provenance.json`, replaced atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{FILE}.tmp"
    tmp.write_text(json.dumps(prov, indent=1) + "\n")
    os.replace(tmp, run_dir / FILE)


def read(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's provenance record (None where it has none)."""
    path = Path(run_dir) / FILE
    return json.loads(path.read_text()) if path.is_file() else None
