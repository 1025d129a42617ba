"""A toy dataset and stages for runner tests: scenes are text files of numbers."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.datasets.base import file_entry
from pipeline.errors import SceneError


def _log(entry: str) -> None:
    path = os.environ.get("TOY_LOG")
    if path:
        with open(path, "a") as f:
            f.write(entry + "\n")


class ToyReader:
    """Each ``<root>/<scene>.txt`` holds numbers; a file starting with 'bad' is a broken scene."""

    def __init__(self, root: Path, params: dict[str, Any]):
        self.root, self.params = Path(root), params

    def scene_ids(self, splits: list[str]) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.txt"))

    def manifest(self, scene: str) -> list:
        return [file_entry(self.root / f"{scene}.txt")]

    def read(self, scene: str) -> dict[str, Any]:
        path = self.root / f"{scene}.txt"
        text = path.read_text()
        if text.startswith("bad"):
            raise SceneError("not a list of numbers", path)
        _log(f"scenes:{scene}")
        time.sleep(self.params["sleep"])
        return {"values": np.array([float(x) for x in text.split()]) * self.params["scale"], "note": "ok"}


def double_stage(inputs: dict, params: dict) -> dict[str, Any]:
    _log("double")
    time.sleep(params["sleep"])
    return {"values": inputs["scenes"]["values"] * params["factor"]}


def negate_stage(inputs: dict, params: dict) -> dict[str, Any]:
    _log("negate")
    return {"values": -inputs["scenes"]["values"]}


def offset_stage(inputs: dict, params: dict) -> dict[str, Any]:
    _log("offset")
    return {"offset": np.array([params["offset"]], np.float64)}


def shifted_stage(inputs: dict, params: dict) -> dict[str, Any]:
    _log("shifted")
    return {"values": inputs["double"]["values"] + inputs["offset"]["offset"][0]}


def boom_stage(inputs: dict, params: dict) -> dict[str, Any]:
    raise ZeroDivisionError("deliberate")


STAGES_YAML = """
stages:
  scenes: {function: "pipeline.datasets.base:scenes_stage", kind: source, version: 1}
  double:
    function: "toy_pipeline:double_stage"
    kind: scene
    needs: [scenes]
    version: 1
    params:
      factor: {type: float, default: 2.0}
      sleep: {type: float, default: 0.0}
    variants:
      negate:
        function: "toy_pipeline:negate_stage"
  offset:
    function: "toy_pipeline:offset_stage"
    kind: global
    version: 1
    params:
      offset: {type: float, default: 10.0}
  shifted:
    function: "toy_pipeline:shifted_stage"
    kind: scene
    needs: [double, offset]
    version: 1
datasets:
  toy:
    reader: "toy_pipeline:ToyReader"
    classes: none
    params:
      scale: {type: float, default: 1.0}
      sleep: {type: float, default: 0.0}
"""
