"""Loads and validates stages.yaml: the stage graph, each stage's function, typed params and
declared outputs, and the datasets with the record kind their readers return.

Configuration is data: this module turns it into frozen records and rejects, with one line that
names the culprit, unknown stages or params, cycles, missing functions, wrong types, values
outside a param's declared range (``min`` / ``max`` inclusive, ``exclusive_min``) and malformed
output or record declarations (:mod:`pipeline.fields`).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from graphlib import CycleError, TopologicalSorter
from math import inf
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.fields import VALUE_TYPES, Fields, parse_fields, parse_record

KINDS = ("source", "scene", "global")
_BOUNDS = {"min": "minimum", "max": "maximum", "exclusive_min": "exclusive_minimum"}  # YAML key -> Param field
DEFAULT_STAGES_FILE = Path(__file__).resolve().parent.parent / "stages.yaml"
STAGES_FILE_ENV = "HICL_STAGES_FILE"  # another stages file for every command that does not name one


@dataclass(frozen=True)
class Param:
    """One declared parameter: type name, default, allowed values (of a list: of its items) or
    range, whether None is allowed."""

    name: str
    type: str
    default: Any
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    exclusive_minimum: float | None = None

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` converted to the declared type, or raise naming ``where``."""
        if value is None and self.nullable:
            return None
        if self.type == "float" and VALUE_TYPES["int"](value):
            value = float(value)
        if not VALUE_TYPES[self.type](value):
            raise PipelineError(
                f"{where}: param '{self.name}' must be {self.type}"
                f"{' or null' if self.nullable else ''}, got {value!r} ({type(value).__name__})"
            )
        if self.choices is not None:
            items = value if self.type == "list" else [value]  # a list's choices are those of its items
            bad = [item for item in items if item not in self.choices]
            if bad:
                what = "items from" if self.type == "list" else "one of"
                raise PipelineError(f"{where}: param '{self.name}' must be {what} {list(self.choices)}, got {bad[0]!r}")
        if not self.in_range(value):
            raise PipelineError(f"{where}: param '{self.name}' must be {self.range_text()}, got {value!r}")
        return value

    def in_range(self, value: Any) -> bool:
        """Whether a number lies within the declared bounds (always true without bounds)."""
        return ((self.minimum is None or value >= self.minimum)
                and (self.exclusive_minimum is None or value > self.exclusive_minimum)
                and (self.maximum is None or value <= self.maximum))

    def range_text(self) -> str:
        """The bounds as a reader writes them: ``>= 1``, ``> 0``, ``in [0, 1]``, ``in (0, 1]``."""
        low = self.minimum if self.minimum is not None else self.exclusive_minimum
        if self.maximum is None:
            return f"{'>=' if self.minimum is not None else '>'} {low}"
        if low is None:
            return f"<= {self.maximum}"
        return f"in {'[' if self.minimum is not None else '('}{low}, {self.maximum}]"


def import_named(spec: str, what: str) -> Any:
    """The object named by ``module:attr``; a PipelineError naming ``what`` when it cannot be imported."""
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"{what} '{spec}' cannot be imported ({exc})") from exc


@dataclass(frozen=True)
class Stage:
    """A node of the graph: what runs, per what, after which stages, with which params."""

    name: str
    function: str
    kind: str
    needs: tuple[str, ...]
    version: int
    params: Mapping[str, Param]
    doc: str = ""
    variants: Mapping[str, Stage] = field(default_factory=dict)
    variant: str = "default"
    gpu: bool = False  # runs on the GPU when its `device` param resolves to CUDA
    outputs: Fields | None = None  # None: not declared, so not checked

    def resolve(self) -> Callable[..., Any]:
        """Import the stage function named by ``module:function``."""
        return import_named(self.function, f"stage '{self.name}': function")

    def resolve_params(self, overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Defaults updated by ``overrides``, every value type-checked."""
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise PipelineError(
                f"{where}: unknown param '{unknown[0]}' for stage '{self.name}' "
                f"(known: {', '.join(sorted(self.params)) or 'none'})"
            )
        return {
            name: p.check(overrides.get(name, p.default), where) for name, p in self.params.items()
        }


@dataclass(frozen=True)
class Dataset:
    """A dataset entry: its reader, record kind, class list and per-stage param overrides."""

    name: str
    reader: str
    classes: str
    reader_params: Mapping[str, Param]
    stage_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    generator: Mapping[str, Any] | None = None
    variants: Mapping[str, str] = field(default_factory=dict)
    record: str | None = None  # a kind of `records:`; None: the reader's record is not checked
    channels: tuple[str, ...] = ()  # record arrays that are the 3D model's per-point input

    def resolve_reader(self) -> Callable[..., Any]:
        """Import the reader class named by ``module:Class``."""
        return import_named(self.reader, f"dataset '{self.name}': reader")


@dataclass(frozen=True)
class Graph:
    """All stages in topological order plus the dataset table and the record kinds."""

    stages: Mapping[str, Stage]
    order: tuple[str, ...]
    datasets: Mapping[str, Dataset]
    targets: tuple[str, ...] = ()
    records: Mapping[str, Fields] = field(default_factory=dict)

    def with_variants(self, chosen: Mapping[str, str]) -> Graph:
        """The graph with some stages replaced by a declared variant (e.g. pseudo=simulated)."""
        stages = dict(self.stages)
        for name, variant in chosen.items():
            if name not in stages:
                raise PipelineError(f"variant for unknown stage '{name}' (known: {', '.join(self.order)})")
            if variant == "default":
                continue
            if variant not in stages[name].variants:
                known = ", ".join(["default", *stages[name].variants])
                raise PipelineError(f"stage '{name}' has no variant '{variant}' (known: {known})")
            stages[name] = stages[name].variants[variant]
        return Graph(stages, _order(stages, "variants"), self.datasets, self.targets, self.records)

    def dataset(self, name: str) -> Dataset:
        """The dataset entry called ``name``, or a clear error listing the known ones."""
        if name not in self.datasets:
            raise PipelineError(
                f"unknown dataset '{name}' (known: {', '.join(sorted(self.datasets))})"
            )
        return self.datasets[name]

    def params(self, stage: str, dataset: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A stage's complete params for a dataset: declared defaults < the dataset's ``stages:``
        values < ``overrides``, each checked (for the source stage: the dataset's reader params)."""
        entry, declared, values = self.dataset(dataset), self.stages[stage], dict(overrides or {})
        if declared.kind != "source":
            return declared.resolve_params({**entry.stage_params.get(stage, {}), **values}, f"stage '{stage}'")
        unknown = sorted(set(values) - set(entry.reader_params))
        if unknown:
            raise PipelineError(f"stage '{stage}': unknown param '{unknown[0]}' for dataset '{entry.name}' "
                                f"(known: {', '.join(sorted(entry.reader_params)) or 'none'})")
        return {n: p.check(values.get(n, p.default), f"dataset '{entry.name}'")
                for n, p in entry.reader_params.items()}

    def outputs(self, stage: str, dataset: str | None = None) -> Fields | None:
        """What one write of ``stage`` must hold; for the source stage its own outputs joined with
        the dataset's record kind. None when nothing is declared (then nothing is checked)."""
        declared = self.stages[stage]
        if declared.kind != "source":
            return declared.outputs
        record = self.dataset(dataset).record if dataset is not None else None
        if record is None:
            return None
        return (declared.outputs or Fields(f"stage '{stage}'")).joined(self.records[record])

    def downstream(self, name: str) -> list[str]:
        """``name`` and every stage that depends on it, in run order."""
        hit = {name}
        for stage in self.order:
            if hit & set(self.stages[stage].needs):
                hit.add(stage)
        return [s for s in self.order if s in hit]

    def upstream(self, names: list[str]) -> list[str]:
        """``names`` and everything they need, in run order."""
        want: set[str] = set()
        todo = list(names)
        while todo:
            s = todo.pop()
            if s not in want:
                want.add(s)
                todo.extend(self.stages[s].needs)
        return [s for s in self.order if s in want]


def _params(raw: Any, where: str) -> dict[str, Param]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PipelineError(f"{where}: 'params' must be a mapping of name -> {{type, default}}")
    out = {}
    for name, spec in raw.items():
        here = f"{where}: param '{name}'"
        if not isinstance(spec, dict) or "type" not in spec or "default" not in spec:
            raise PipelineError(f"{here} needs 'type' and 'default'")
        unknown = set(spec) - {"type", "default", "doc", "choices", "nullable", *_BOUNDS}
        if unknown:
            raise PipelineError(f"{here}: unknown key '{sorted(unknown)[0]}'")
        if spec["type"] not in VALUE_TYPES:
            raise PipelineError(f"{here}: unknown type '{spec['type']}' (use {', '.join(VALUE_TYPES)})")
        choices = spec.get("choices")
        param = Param(name, spec["type"], spec["default"], spec.get("doc", ""),
                      tuple(choices) if choices is not None else None, bool(spec.get("nullable", False)),
                      **_bounds(spec, here))
        param.check(param.default, f"{where} (default)")
        out[name] = param
    return out


def _bounds(spec: Mapping[str, Any], where: str) -> dict[str, float]:
    """A param's declared range (``min``, ``max`` inclusive; ``exclusive_min``), validated."""
    given = {key: spec[key] for key in _BOUNDS if key in spec}
    if given and spec["type"] not in ("int", "float"):
        raise PipelineError(f"{where}: bounds ({', '.join(given)}) apply to int and float params only")
    for key, value in given.items():
        if not VALUE_TYPES["float"](value):
            raise PipelineError(f"{where}: {key} must be a number, got {value!r}")
    if "min" in given and "exclusive_min" in given:
        raise PipelineError(f"{where}: give min or exclusive_min, not both")
    top = given.get("max", inf)
    if given.get("min", -inf) > top or given.get("exclusive_min", -inf) >= top:
        raise PipelineError(f"{where}: no value fits {', '.join(f'{k}: {v}' for k, v in given.items())}")
    return {_BOUNDS[key]: value for key, value in given.items()}


def _expect_keys(raw: Any, allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise PipelineError(f"{where}: must be a mapping")
    unknown = set(raw) - allowed
    if unknown:
        raise PipelineError(f"{where}: unknown key '{sorted(unknown)[0]}' (allowed: {', '.join(sorted(allowed))})")
    missing = required - set(raw)
    if missing:
        raise PipelineError(f"{where}: missing key '{sorted(missing)[0]}'")


def parse_graph(raw: Any, source: str = "stages.yaml") -> Graph:
    """Validate the parsed YAML document and build the graph."""
    _expect_keys(raw, {"stages", "datasets", "targets", "anchors", "records"}, {"stages", "datasets"}, source)
    records = raw.get("records") or {}
    if not isinstance(records, dict):
        raise PipelineError(f"{source}: records must be a mapping of kind -> {{doc, required, optional}}")
    records = {str(kind): parse_record(str(kind), spec, source) for kind, spec in records.items()}
    stages: dict[str, Stage] = {}
    for name, spec in (raw["stages"] or {}).items():
        where = f"{source}: stage '{name}'"
        stages[name] = _stage(name, spec, where)
        for vname, vspec in (spec.get("variants") or {}).items():
            if isinstance(vspec, dict) and "outputs" in vspec:
                raise PipelineError(f"{where}: variant '{vname}' cannot declare outputs (a variant writes its stage's)")
            base = {k: v for k, v in spec.items() if k not in ("variants", "params", "doc")}
            variant = _stage(name, {**base, **(vspec or {})}, f"{where}: variant '{vname}'", vname)
            stages[name] = replace(stages[name], variants={**stages[name].variants, vname: variant})
    everything = [s for st in stages.values() for s in (st, *st.variants.values())]
    for stage in everything:
        for need in stage.needs:
            if need not in stages:
                raise PipelineError(f"{source}: stage '{stage.name}' needs unknown stage '{need}'")
            if stage.kind == "global" and stages[need].kind != "global":
                raise PipelineError(
                    f"{source}: global stage '{stage.name}' cannot need per-scene stage '{need}'"
                )
        if stage.kind == "source" and stage.needs:
            raise PipelineError(f"{source}: source stage '{stage.name}' cannot need other stages")
    order = _order(stages, source)
    targets = tuple(raw.get("targets") or order)
    for t in targets:
        if t not in stages:
            raise PipelineError(f"{source}: target '{t}' is not a stage")

    datasets: dict[str, Dataset] = {}
    for name, spec in (raw["datasets"] or {}).items():
        where = f"{source}: dataset '{name}'"
        _expect_keys(spec, {"reader", "classes", "params", "stages", "generator", "variants", "record", "channels"},
                     {"reader", "classes"}, where)
        overrides = spec.get("stages") or {}
        for stage_name in overrides:
            if stage_name not in stages:
                raise PipelineError(f"{where}: overrides unknown stage '{stage_name}'")
        record = spec.get("record")
        if record is not None and record not in records:
            raise PipelineError(f"{where}: unknown record kind {record!r} "
                                f"(known: {', '.join(sorted(records)) or 'none'})")
        channels = _channels(spec.get("channels"), records.get(record) if record else None, where)
        variants = dict(spec.get("variants") or {})
        datasets[name] = Dataset(name, spec["reader"], spec["classes"], _params(spec.get("params"), where),
                                 overrides, spec.get("generator"), variants, record, channels)
        graph = Graph(stages, order, datasets, targets, records).with_variants(variants)
        for stage_name, values in overrides.items():
            graph.stages[stage_name].resolve_params(values or {}, where)
    _check_record_keys(stages, records, source)
    return Graph(stages, order, datasets, targets, records)


def _channels(raw: Any, record: Fields | None, where: str) -> tuple[str, ...]:
    """A dataset's input channels: names of per-point arrays (rank 1 or 2) of its record kind."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        raise PipelineError(f"{where}: channels must be a non-empty list of record array names, got {raw!r}")
    if record is not None:
        arrays = {n: f for n, f in record.all().items() if f.is_array and f.rank in (1, 2)}
        unknown = [c for c in raw if c not in arrays]
        if unknown:
            raise PipelineError(f"{where}: channel '{unknown[0]}' is not a per-point array of {record.label} "
                                f"(known: {', '.join(arrays)})")
    return tuple(raw)


def _check_record_keys(stages: Mapping[str, Stage], records: Mapping[str, Fields], source: str) -> None:
    """A record kind may not declare a key that a source stage already declares as its own output."""
    for stage in stages.values():
        if stage.kind != "source" or stage.outputs is None:
            continue
        for kind, record in records.items():
            both = sorted(set(stage.outputs.all()) & set(record.all()))
            if both:
                raise PipelineError(f"{source}: record '{kind}' declares '{both[0]}', "
                                    f"which source stage '{stage.name}' already writes")


def _stage(name: str, spec: Any, where: str, variant: str = "default") -> Stage:
    """One stage record from its YAML mapping, validated."""
    _expect_keys(spec, {"function", "kind", "needs", "version", "params", "doc", "variants", "gpu", "outputs"},
                 {"function", "kind", "version"}, where)
    if spec["kind"] not in KINDS:
        raise PipelineError(f"{where}: kind must be one of {', '.join(KINDS)}, got {spec['kind']!r}")
    if ":" not in str(spec["function"]):
        raise PipelineError(f"{where}: function must be 'module:function', got {spec['function']!r}")
    if not VALUE_TYPES["int"](spec["version"]):
        raise PipelineError(f"{where}: version must be an int")
    gpu = spec.get("gpu", False)
    if not isinstance(gpu, bool):
        raise PipelineError(f"{where}: gpu must be true or false, got {gpu!r}")
    params = _params(spec.get("params"), where)
    if gpu and "device" not in params:
        raise PipelineError(f"{where}: a gpu stage needs a 'device' param (auto, cpu or cuda)")
    outputs = None
    if "outputs" in spec:
        fields = parse_fields(spec["outputs"], f"{where}: outputs")
        if not fields and spec["kind"] != "source":
            raise PipelineError(f"{where}: outputs must declare at least one key")
        outputs = Fields(f"stage '{name}'", fields)
    return Stage(name, str(spec["function"]), spec["kind"], tuple(spec.get("needs") or ()), spec["version"],
                 params, spec.get("doc", ""), variant=variant, gpu=gpu, outputs=outputs)


def _order(stages: Mapping[str, Stage], source: str) -> tuple[str, ...]:
    """Topological order of the stages, or a clear error naming the cycle."""
    try:
        return tuple(TopologicalSorter({s.name: s.needs for s in stages.values()}).static_order())
    except CycleError as exc:
        raise PipelineError(f"{source}: the stages form a cycle: {' -> '.join(exc.args[1])}") from exc


def stages_path(path: str | Path | None = None) -> Path:
    """The stages file to use: ``path``, else $HICL_STAGES_FILE, else the repository's stages.yaml."""
    return Path(path or os.environ.get(STAGES_FILE_ENV) or DEFAULT_STAGES_FILE)


def load_graph(path: str | Path | None = None) -> Graph:
    """Read and validate a stages file (default: ``stages_path()``)."""
    path = stages_path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise PipelineError(f"stages file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({exc})") from exc
    return parse_graph(raw, str(path.name))


def stage_params(stage: str, overrides: Mapping[str, Any] | None = None, *, dataset: str | None = None,
                 variant: str | None = None, path: str | Path | None = None) -> dict[str, Any]:
    """A stage's complete params as a run resolves them, for calling a stage function directly.

    Declared defaults < the dataset's ``stages:`` values (when ``dataset`` is given) < ``overrides``;
    ``variant`` picks a declared variant (default: the dataset's choice, else the stage itself);
    the source stage needs ``dataset`` (its params are the reader's). ``path``: another stages file.
    """
    graph = load_graph(path)
    chosen = dict(graph.dataset(dataset).variants) if dataset is not None else {}
    if variant is not None:
        chosen[stage] = variant
    graph = graph.with_variants(chosen)
    if stage not in graph.stages:
        raise PipelineError(f"unknown stage '{stage}' (known: {', '.join(graph.order)})")
    if dataset is None:
        if graph.stages[stage].kind == "source":
            raise PipelineError(f"stage '{stage}' reads a dataset: name it to get its reader's params")
        return graph.stages[stage].resolve_params(overrides or {}, f"stage '{stage}'")
    return graph.params(stage, dataset, overrides)
