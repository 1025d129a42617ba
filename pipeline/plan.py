"""The plan of a run: per stage and per scene, what the next run does (a Status) and why.

One answer to "will this compute, and why": `run`, `status` and the pre-flight all read the plan
this module returns. A stage's fingerprint hashes its name, version, resolved params, function,
variant and its upstream fingerprints; a scene's adds its raw manifest (source stage) or its
inputs' scene fingerprints. A stage stored under another fingerprint (or forced, or never run) is
rebuilt: every scene of it is computed; otherwise each scene not done under its own fingerprint is.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import store
from pipeline.errors import PipelineError
from pipeline.explain import scene_reason, stage_change
from pipeline.fields import Fields
from pipeline.fingerprint import scene_fingerprint, stage_fingerprint
from pipeline.stages import Dataset, Graph, Stage
from pipeline.task import make_reader


class Status(enum.Enum):
    """What the next run does with a stage, or with one scene of a stage."""

    UP_TO_DATE = "up to date"  # stored under this fingerprint (a stage: every scene of the run done)
    RESUME = "resume"          # a stage stored under this fingerprint with scenes of the run not done
    REBUILD = "rebuild"        # a stage never run, forced or changed: reset, every scene computed
    COMPUTE = "compute"        # a scene the next run computes


@dataclass(frozen=True)
class RunConfig:
    """What to run: dataset, where its raw data and stores live, and how."""

    dataset: str
    data_root: Path
    store_root: str
    splits: tuple[str, ...] = ("train", "val")
    scenes: tuple[str, ...] | None = None
    limit: int | None = None
    stages: tuple[str, ...] | None = None
    force: tuple[str, ...] = ()
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variants: Mapping[str, str] = field(default_factory=dict)
    workers: int = 2
    scheduler: str | None = None
    security: Path | None = None  # TLS files for `scheduler` (see pipeline.executor.load_security)


@dataclass(frozen=True)
class ScenePlan:
    """One scene of one stage: its fingerprint, UP_TO_DATE or COMPUTE, and why it is computed."""

    fingerprint: str
    status: Status
    reason: str = ""


@dataclass
class StagePlan:
    """A stage resolved for one run: params, fingerprint, status and reason, declared outputs and,
    once the run's scenes are planned, each scene's plan (None before: then UP_TO_DATE only says
    that the stored fingerprint matches)."""

    stage: Stage
    params: dict[str, Any]
    fingerprint: str
    status: Status
    reason: str
    outputs: Fields | None = None  # what each write must hold (None: not declared)
    scenes: dict[str, ScenePlan] | None = None

    @property
    def computes(self) -> bool:
        """Whether the next run computes anything in this stage."""
        return self.status is not Status.UP_TO_DATE

    def todo(self) -> dict[str, ScenePlan]:
        """The scenes the next run computes, with their plans."""
        return {s: p for s, p in (self.scenes or {}).items() if p.status is Status.COMPUTE}


@dataclass
class Plan:
    """A whole run: the stages in order, the source reader, the run's scenes, and why the scenes
    could not be listed (then no stage has scene plans)."""

    stages: list[StagePlan]
    reader: Any = None
    scenes: list[str] = field(default_factory=list)
    scene_problem: str | None = None

    def stage(self, name: str) -> StagePlan:
        """The plan of the stage called ``name``."""
        return next(p for p in self.stages if p.stage.name == name)


def plan_stages(graph: Graph, cfg: RunConfig) -> list[StagePlan]:
    """Resolve params and fingerprints of the stages to run, and whether each is rebuilt and why
    (every param checked; no raw data read)."""
    dataset = graph.dataset(cfg.dataset)
    for name in (*cfg.overrides, *cfg.force, *(cfg.stages or ())):
        if name not in graph.stages:
            raise PipelineError(f"unknown stage '{name}' (known: {', '.join(graph.order)})")
    graph = graph.with_variants({**dataset.variants, **cfg.variants})
    forced = {s for f in cfg.force for s in graph.downstream(f)}
    fps: dict[str, str] = {}
    plans = []
    for name in graph.upstream(list(cfg.stages or graph.targets)):
        stage = graph.stages[name]
        params = graph.params(name, dataset.name, cfg.overrides.get(name))
        extra = {"function": stage.function, "variant": stage.variant}
        if stage.kind == "source":
            extra.update(dataset=dataset.name, reader=dataset.reader)
        fp = stage_fingerprint(name, stage.version, {**params, **extra}, {n: fps[n] for n in stage.needs})
        fps[name] = fp
        status, reason = _stored_state(cfg.store_root, stage, params, fp, fps, name in forced)
        plans.append(StagePlan(stage, params, fp, status, reason, graph.outputs(name, dataset.name)))
    return plans


def _stored_state(store_root: str, stage: Stage, params: dict[str, Any], fp: str, fps: dict[str, str],
                  forced: bool) -> tuple[Status, str]:
    """UP_TO_DATE when the stage is stored under ``fp``, else REBUILD with the reason."""
    if forced:
        return Status.REBUILD, "forced (--force)"
    if not store.stage_exists(store_root, stage.name):
        return Status.REBUILD, "never run"
    attrs = store.stage_attrs(store_root, stage.name)
    if attrs.get("fingerprint") == fp:
        return Status.UP_TO_DATE, "up to date"
    return Status.REBUILD, stage_change(attrs, stage, params, fps)


def plan_run(graph: Graph, cfg: RunConfig) -> Plan:
    """The stages' plans and, when the run's scenes can be listed, every scene's; a scene list that
    cannot be made (no data root, no scenes, a reader error) is kept as ``scene_problem``."""
    stages = plan_stages(graph, cfg)
    try:
        reader, scenes = scene_selection(graph.dataset(cfg.dataset), stages, cfg)
    except PipelineError as exc:
        return Plan(stages, scene_problem=str(exc))
    plan_scenes(stages, cfg.store_root, reader, scenes)
    return Plan(stages, reader, scenes)


def scene_selection(dataset: Dataset, plans: list[StagePlan], cfg: RunConfig) -> tuple[Any, list[str]]:
    """The source stage's reader (None when none is planned) and the run's scenes: ``cfg.scenes``,
    else the reader's split lists up to ``cfg.limit``; a stage per scene needs at least one."""
    source = next((p for p in plans if p.stage.kind == "source"), None)
    per_scene = any(p.stage.kind != "global" for p in plans)
    if source is not None and not Path(cfg.data_root).exists():
        raise PipelineError(f"data root {cfg.data_root} does not exist; --data-root takes the folder of "
                            f"the raw dataset '{dataset.name}'")
    reader = make_reader(dataset.reader, str(cfg.data_root), source.params) if source else None
    scenes = list(cfg.scenes or [])
    if reader is not None and not scenes:
        scenes = reader.scene_ids(list(cfg.splits))[: cfg.limit]
    if per_scene and not scenes:
        raise PipelineError(f"no scenes found for dataset '{dataset.name}' under {cfg.data_root} "
                            f"(splits {', '.join(cfg.splits)})")
    return reader, scenes


def scene_inputs(stage: Stage, scene: str, reader: Any, scene_fps: Mapping[str, Mapping[str, str]]) -> Any:
    """What a scene's fingerprint covers: a source scene's raw-file manifest, else the scene (or
    global) fingerprints of the stages it needs."""
    if stage.kind == "source":
        return reader.manifest(scene)
    return [scene_fps[n].get(scene, scene_fps[n].get(store.GLOBAL)) for n in stage.needs]


def plan_scenes(plans: list[StagePlan], store_root: str, reader: Any, scenes: list[str]) -> None:
    """Give every stage plan its scene plans, and RESUME to a stage stored under its fingerprint
    that has scenes to compute."""
    fps: dict[str, dict[str, str]] = {}
    for p in plans:
        name, stage = p.stage.name, p.stage
        p.scenes, fps[name] = {}, {}
        for scene in [store.GLOBAL] if stage.kind == "global" else scenes:
            inputs = scene_inputs(stage, scene, reader, fps)
            fp = fps[name][scene] = scene_fingerprint(p.fingerprint, inputs)
            if p.status is Status.REBUILD:
                p.scenes[scene] = ScenePlan(fp, Status.COMPUTE, p.reason)
            elif store.scene_done(store_root, name, scene, fp):
                p.scenes[scene] = ScenePlan(fp, Status.UP_TO_DATE)
            else:
                recomputed = [n for n in stage.needs if _computes(plans, n, scene)]
                p.scenes[scene] = ScenePlan(fp, Status.COMPUTE,
                                            scene_reason(store_root, stage, scene, inputs, recomputed))
        if p.status is Status.UP_TO_DATE and p.todo():
            p.status = Status.RESUME


def _computes(plans: list[StagePlan], name: str, scene: str) -> bool:
    """Whether the plan of stage ``name`` computes ``scene`` (or, for a global stage, its one group)."""
    planned = next(p for p in plans if p.stage.name == name).scenes or {}
    return any(s.status is Status.COMPUTE for s in (planned.get(scene), planned.get(store.GLOBAL)) if s)
