"""Class sets: data/classes/<name>.txt (one name per line, order = label id; $HICL_CLASSES_DIR
names another folder) or inline lists.

Kept free of torch, so stages that only need the names (the simulated VLM) start fast. A class
list is refused when it is read for a run (by the text stage, before any pseudo-label is made)
if its label ids do not fit the u8 labels of the pseudo and refine stages.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError

CLASSES_DIR = Path(__file__).resolve().parents[1] / "data" / "classes"
CLASSES_DIR_ENV = "HICL_CLASSES_DIR"  # another folder of class lists, read each time a set is resolved
MAX_CLASSES = 256  # pseudo and refine store label ids as u8 (0..255)


def validate_class_names(class_names: Sequence[str]) -> list[str]:
    """The names stripped of surrounding spaces; empty or repeated names are a PipelineError."""
    names = [str(name).strip() for name in class_names]
    if not names:
        raise PipelineError("the class list is empty")
    empty = [i for i, name in enumerate(names) if not name]
    if empty:
        raise PipelineError(f"empty class name at position(s) {empty}; every label id needs a name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PipelineError(f"repeated class name(s) {repeated}; each class must be listed once")
    return names


def check_label_capacity(names: Sequence[str], what: str) -> list[str]:
    """The names unchanged; more classes than the u8 stage labels hold is a PipelineError."""
    if len(names) > MAX_CLASSES:
        raise PipelineError(f"{what} has {len(names)} classes, more than the {MAX_CLASSES} that the "
                            f"u8 labels of the pseudo and refine stages hold")
    return list(names)


def classes_dir() -> Path:
    """The folder of named class lists: $HICL_CLASSES_DIR, else the repository's data/classes."""
    return Path(os.environ.get(CLASSES_DIR_ENV) or CLASSES_DIR)


def read_class_names(classes: str | Sequence[str]) -> list[str]:
    """Class names of a named set in :func:`classes_dir` or of an inline list; a bad list, or one too
    long for the u8 stage labels, is a PipelineError naming the set and its file."""
    if not isinstance(classes, str):
        return check_label_capacity(validate_class_names(classes), "the inline class list")
    folder = classes_dir()
    path = folder / f"{classes}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.txt"))
        raise PipelineError(f"unknown class set {classes!r}; known: {', '.join(known)} (in {folder})")
    try:
        names = validate_class_names(path.read_text(encoding="utf-8").splitlines())
    except PipelineError as exc:
        raise PipelineError(f"file {path}: {exc}") from exc
    return check_label_capacity(names, f"class set {classes!r} ({path})")
