"""Class sets: data/classes/<name>.txt (one name per line, order = label id) or inline lists.

Kept free of torch, so stages that only need the names (the simulated VLM) start fast.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError

CLASSES_DIR = Path(__file__).resolve().parents[1] / "data" / "classes"


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


def read_class_names(classes: str | Sequence[str]) -> list[str]:
    """Class names of a named set in data/classes or of an inline list; a bad list is a
    PipelineError naming its file."""
    if not isinstance(classes, str):
        return validate_class_names(classes)
    path = CLASSES_DIR / f"{classes}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in CLASSES_DIR.glob("*.txt"))
        raise PipelineError(f"unknown class set {classes!r}; known: {', '.join(known)} (in {CLASSES_DIR})")
    try:
        return validate_class_names(path.read_text(encoding="utf-8").splitlines())
    except PipelineError as exc:
        raise PipelineError(f"file {path}: {exc}") from exc
