"""Ground truth of a scene for a class set, made from the raw per-vertex ids the scenes stage
keeps, so that switching ScanNet's 20 and 200 classes never re-reads the raw data.

A ScanNet scenes record holds ``raw_labels`` i32[N] and their id space ``raw_label_space``:
``scannet_raw`` (ScanNet's raw category ids, the ``id`` column of scannetv2-labels.combined.tsv,
from the scene's aggregation and segments files) or ``nyu40`` (the labels PLY's NYU40 ids).
scannet20 is defined on NYU40 ids (raw ids reach NYU40 through
data/labelmaps/scannet_raw_nyu40.tsv first), scannet200 on raw ids (data/labelmaps/scannet200.tsv,
which also gives each class's head/common/tail split). Any other class set, and a record without
raw labels (own scans, nuScenes), is evaluated against the
record's ``labels``. Ground truth is i16 with -1 = ignore. The evaluation class set is the one
the text stage embedded (its ``classes`` param).
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import store
from pipeline.datasets.base import LABELMAPS, load_label_map
from pipeline.errors import SceneError

RAW, NYU40 = "scannet_raw", "nyu40"  # the id spaces of raw_labels
SPLITS = ("head", "common", "tail")
RAW_TO_NYU40 = LABELMAPS / "scannet_raw_nyu40.tsv"
# class set -> (the id space it is defined on, its map from that space to label ids)
LABEL_SETS: dict[str, tuple[str, Path]] = {
    "scannet20": (NYU40, LABELMAPS / "scannet20.tsv"),
    "scannet200": (RAW, LABELMAPS / "scannet200.tsv"),
}
_TABLE_SIZE = 2048  # lookup tables cover every id below this (ScanNet's raw ids stay below 1400)


@functools.cache
def _table(path: Path) -> np.ndarray:
    """Lookup table id -> label of a labelmap TSV (cached: the files ship with the project)."""
    return load_label_map(path, size=_TABLE_SIZE)


def _lookup(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """i16 ``table[ids]``, -1 for ids outside the table."""
    ids = np.asarray(ids).astype(np.int64)
    inside = (ids >= 0) & (ids < len(table))
    return np.where(inside, table[np.clip(ids, 0, len(table) - 1)], -1).astype(np.int16)


def _needs_raw_ids(class_set: str, scene: str) -> SceneError:
    """The one-line refusal of a class set on raw ids for a scene that has only NYU40 ids."""
    return SceneError(
        f"class set {class_set} needs ScanNet's raw category ids, but this scene has only NYU40 ids; "
        f"give it {scene}.aggregation.json and {scene}_vh_clean_2.0.010000.segs.json (and "
        f"scannetv2-labels.combined.tsv in DATA_ROOT), then rerun the scenes stage", scene=scene)


def eval_labels(class_set: str | None, record: Mapping[str, Any], scene: str) -> np.ndarray:
    """Ground truth i16[N] (-1 ignore) of a scenes record in ``class_set`` (see the module doc)."""
    if class_set not in LABEL_SETS:
        return np.asarray(record["labels"]).astype(np.int16)
    space, labelmap = LABEL_SETS[class_set]
    have = record.get("raw_label_space") if "raw_labels" in record else None
    if "raw_labels" in record and have not in (RAW, NYU40):
        raise SceneError(f"raw_label_space is {have!r}, expected {RAW!r} or {NYU40!r}", scene=scene)
    if have is None:  # a record without raw ids (own scans, nuScenes): its labels are in the run's class set
        return np.asarray(record["labels"]).astype(np.int16)
    if space == RAW and have != RAW:
        raise _needs_raw_ids(class_set, scene)
    ids = record["raw_labels"] if have == space else _lookup(_table(RAW_TO_NYU40), record["raw_labels"])
    return _lookup(_table(labelmap), ids)


def class_groups(class_set: str) -> dict[str, list[int]]:
    """Label ids of each split of a class set ({} for a set without one): ScanNet200's
    head, common and tail, read from the ``split`` column of its labelmap."""
    if class_set not in LABEL_SETS:
        return {}
    lines = [line.split("\t") for line in LABEL_SETS[class_set][1].read_text().splitlines()
             if line and not line.startswith("#")]
    header, rows = lines[0], lines[1:]
    if "split" not in header:
        return {}
    label, split = header.index("label"), header.index("split")
    groups: dict[str, list[int]] = {name: [] for name in SPLITS}
    for row in rows:
        groups.setdefault(row[split], []).append(int(row[label]))
    return {name: sorted(ids) for name, ids in groups.items() if ids}


def text_class_set(store_root: str, text_stage: str = "text") -> str | None:
    """The class set a stored text stage embedded (its ``classes`` param); None when the store
    has no such stage or it recorded none (then ground truth is the record's ``labels``)."""
    if not store.stage_exists(store_root, text_stage):
        return None
    classes = store.stage_attrs(store_root, text_stage).get("params", {}).get("classes")
    return classes if isinstance(classes, str) else None


def read_eval_labels(store_root: str, scene: str, class_set: str | None) -> np.ndarray:
    """``eval_labels`` of a stored scene in ``class_set`` (the stored text stage's, resolved once
    by the caller with :func:`text_class_set`)."""
    if class_set in LABEL_SETS and "raw_labels" in store.open_scene(store_root, "scenes", scene):
        record = {**store.stage_attrs(store_root, "scenes", scene),
                  **store.read_arrays(store_root, "scenes", scene, ["raw_labels"])}
    else:
        record = store.read_arrays(store_root, "scenes", scene, ["labels"])
    return eval_labels(class_set, record, scene)
