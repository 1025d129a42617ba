"""Declared keys of what a stage writes: arrays with dtype and rank, plain values with a type.

stages.yaml declares each stage's ``outputs:`` and, under ``records:``, the keys of a scene
record per kind of dataset; this module parses those declarations (one line naming the culprit
on a mistake) and checks a task's outputs against them at the write, so a reader that forgets a
key, or writes one of the wrong dtype or rank, fails where the record is made. Arrays are
written as Zarr arrays, plain values as attributes of the scene's group.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import PipelineError, SceneError

DTYPES = ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
          "float16", "float32", "float64")
VALUE_TYPES: dict[str, Callable[[Any], bool]] = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
}


@dataclass(frozen=True)
class Field:
    """One declared key: an array (``dtype``, ``rank``) or a plain value (``type``)."""

    name: str
    dtype: str | None = None
    rank: int | None = None
    type: str | None = None
    doc: str = ""

    @property
    def is_array(self) -> bool:
        """Whether the key holds an array (stored as a Zarr array, not an attribute)."""
        return self.dtype is not None

    def describe(self) -> str:
        """What the key must hold, as a message says it: ``float64 array of rank 3``, ``bool value``."""
        return f"{self.dtype} array of rank {self.rank}" if self.is_array else f"{self.type} value"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit the declaration; None when it does."""
        if self.is_array:
            if not isinstance(value, np.ndarray):
                return f"must be a {self.describe()}, got {type(value).__name__}"
            if value.dtype != np.dtype(self.dtype) or value.ndim != self.rank:
                return f"must be a {self.describe()}, got {value.dtype} array of rank {value.ndim}"
            return None
        assert self.type is not None
        if not VALUE_TYPES[self.type](value):
            return f"must be a {self.describe()}, got {type(value).__name__}"
        return None


@dataclass(frozen=True)
class Fields:
    """What one write must hold: required and optional keys; ``label`` names the declaration."""

    label: str
    required: Mapping[str, Field] = field(default_factory=dict)
    optional: Mapping[str, Field] = field(default_factory=dict)

    def all(self) -> dict[str, Field]:
        """Every declared key, required first, in declaration order."""
        return {**self.required, **self.optional}

    def array_names(self) -> tuple[str, ...]:
        """Names of the declared arrays (what a reader of the store can open), required first."""
        return tuple(name for name, f in self.all().items() if f.is_array)

    def joined(self, other: Fields) -> Fields:
        """Both declarations as one (a source stage's own outputs and its dataset's record)."""
        return Fields(f"{self.label} ({other.label})", {**self.required, **other.required},
                      {**self.optional, **other.optional})

    def check(self, outputs: Mapping[str, Any]) -> None:
        """Raise a SceneError of one line when ``outputs`` hold an undeclared key, lack a required
        one or hold one of the wrong kind, dtype or rank."""
        declared = self.all()
        for name in outputs:
            if name not in declared:
                close = difflib.get_close_matches(name, list(declared), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise SceneError(f"{self.label} wrote undeclared key '{name}'{hint}")
        missing = [name for name in self.required if name not in outputs]
        if missing:
            keys = ", ".join(f"'{name}'" for name in missing)
            raise SceneError(f"{self.label} lacks required key{'s' if len(missing) > 1 else ''} {keys}")
        for name, value in outputs.items():
            problem = declared[name].problem(value)
            if problem:
                raise SceneError(f"{self.label} key '{name}' {problem}")


def parse_field(name: str, spec: Any, where: str) -> Field:
    """One declared key from its YAML mapping: ``{dtype, rank, doc}`` or ``{type, doc}``."""
    here = f"{where}: key '{name}'"
    if not isinstance(spec, dict):
        raise PipelineError(f"{here} must be a mapping with dtype and rank, or type")
    unknown = sorted(set(spec) - {"dtype", "rank", "type", "doc"})
    if unknown:
        raise PipelineError(f"{here}: unknown key '{unknown[0]}' (allowed: doc, dtype, rank, type)")
    doc = str(spec.get("doc", ""))
    if "type" in spec:
        if "dtype" in spec or "rank" in spec:
            raise PipelineError(f"{here}: give dtype and rank (an array) or type (a value), not both")
        if spec["type"] not in VALUE_TYPES:
            raise PipelineError(f"{here}: unknown type {spec['type']!r} (use {', '.join(VALUE_TYPES)})")
        return Field(name, type=spec["type"], doc=doc)
    if "dtype" not in spec or "rank" not in spec:
        raise PipelineError(f"{here} needs dtype and rank (an array) or type (a value)")
    if spec["dtype"] not in DTYPES:
        raise PipelineError(f"{here}: unknown dtype {spec['dtype']!r} (use {', '.join(DTYPES)})")
    rank = spec["rank"]
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise PipelineError(f"{here}: rank must be an int >= 0, got {rank!r}")
    return Field(name, dtype=spec["dtype"], rank=rank, doc=doc)


def parse_fields(raw: Any, where: str) -> dict[str, Field]:
    """A mapping of key name -> declaration, each validated."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PipelineError(f"{where}: must be a mapping of key -> {{dtype, rank}} or {{type}}")
    return {str(name): parse_field(str(name), spec, where) for name, spec in raw.items()}


def parse_record(name: str, raw: Any, where: str) -> Fields:
    """A record kind (``doc``, ``required``, ``optional``) as the Fields its readers must return."""
    here = f"{where}: record '{name}'"
    if not isinstance(raw, dict):
        raise PipelineError(f"{here}: must be a mapping with required and optional keys")
    unknown = sorted(set(raw) - {"doc", "required", "optional"})
    if unknown:
        raise PipelineError(f"{here}: unknown key '{unknown[0]}' (allowed: doc, optional, required)")
    if not raw.get("required"):
        raise PipelineError(f"{here}: missing key 'required'")
    required = parse_fields(raw["required"], f"{here}: required")
    optional = parse_fields(raw.get("optional"), f"{here}: optional")
    both = sorted(set(required) & set(optional))
    if both:
        raise PipelineError(f"{here}: key '{both[0]}' is both required and optional")
    return Fields(f"record '{name}'", required, optional)
