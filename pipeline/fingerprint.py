"""Fingerprints: a stage's output is a pure function of what these hashes cover."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(payload: Any) -> str:
    """Stable short hash of a JSON-able value (keys sorted)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def stage_fingerprint(name: str, version: int, params: dict[str, Any], upstream: dict[str, str]) -> str:
    """Hash of a stage's name, code version, resolved params and upstream stage fingerprints."""
    return digest({"stage": name, "version": version, "params": params, "upstream": upstream})


def scene_fingerprint(stage_fp: str, inputs: Any) -> str:
    """Hash of the stage fingerprint and what this scene was computed from (raw manifest or
    upstream scene fingerprints), so one changed raw file reruns only its scene."""
    return digest({"stage": stage_fp, "inputs": inputs})
