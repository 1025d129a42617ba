"""Atomic checkpoints (temporary file + os.replace) and loading with explicit mismatch errors.

A crash while saving can lose the newest checkpoint, never corrupt the previous one.
Checkpoints hold only tensors and plain Python values, so they load with `weights_only=True`.
"""
from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = 1
# Config keys that may differ between a run and its resumption (they do not change results);
# the stores' content and the scenes behind store_root and val_split are compared by the run's
# provenance record instead (trainer/provenance.py), so a moved store resumes and another does not.
RESUME_FREE_KEYS = frozenset({"name", "runs_root", "store_root", "device", "num_workers",
                              "prefetch_factor", "progress", "eval_every", "val_split"})


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used with the current model or config; says why."""


def save_atomic(state: Mapping[str, Any], path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict[str, Any]:
    """A checkpoint dict; a clear error when it is missing or not ours."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files, other pickles: torch raises many types
        raise CheckpointError(f"{path} cannot be read as a trainer checkpoint: truncated, corrupt "
                              f"or not written by torch.save ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a trainer checkpoint (format {FORMAT})")
    return state


def check_signature(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse a checkpoint whose model differs, naming every differing key."""
    diffs = [f"{k}={saved.get(k)!r} in checkpoint, {current.get(k)!r} now"
             for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(f"{path} was trained with a different model: " + "; ".join(diffs))


def check_resumable(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse to resume under a config that would change the training, naming the keys."""
    keys = sorted((set(saved) | set(current)) - RESUME_FREE_KEYS)
    diffs = [f"{k}={saved.get(k)!r} in checkpoint, {current.get(k)!r} now"
             for k in keys if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(f"cannot resume {path} under a different config: " + "; ".join(diffs))


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
