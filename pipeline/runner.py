"""Plans and runs the stage graph: params, fingerprints, skip / resume / rebuild, task lists.

One task per scene (one for a global stage). A stage whose stored fingerprint matches and whose
scenes are all done is skipped; an incomplete one resumes the scenes not yet done; a changed
one is reset and rebuilt, and because fingerprints chain, exactly its downstream stages follow.
A scene that fails is reported with its file and reason while the others finish. Where tasks
run (in-process or on a Dask cluster) is :mod:`pipeline.executor`'s business; what one task
does, :mod:`pipeline.task`'s.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline import preflight, store
from pipeline.errors import PipelineError
from pipeline.executor import Executor, load_security
from pipeline.fields import Fields
from pipeline.fingerprint import scene_fingerprint, stage_fingerprint
from pipeline.stages import Dataset, Graph, Stage
from pipeline.task import Result, Task, make_reader


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
    security: Path | None = None  # TLS files for `scheduler` (see load_security)


@dataclass
class StagePlan:
    """A stage resolved for one run: params, fingerprint, why it will (not) run, declared outputs."""

    stage: Stage
    params: dict[str, Any]
    fingerprint: str
    reason: str
    outputs: Fields | None = None  # what each write must hold (None: not declared)


@dataclass
class StageReport:
    """What happened to one stage."""

    name: str
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    blocked: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def plan(graph: Graph, cfg: RunConfig) -> list[StagePlan]:
    """Resolve params and fingerprints of the stages to run, and why each would rerun."""
    dataset = graph.dataset(cfg.dataset)
    for name in (*cfg.overrides, *cfg.force, *(cfg.stages or ())):
        if name not in graph.stages:
            raise PipelineError(f"unknown stage '{name}' (known: {', '.join(graph.order)})")
    graph = graph.with_variants({**dataset.variants, **cfg.variants})
    names = graph.upstream(list(cfg.stages or graph.targets))
    forced = {s for f in cfg.force for s in graph.downstream(f)}
    fps: dict[str, str] = {}
    plans = []
    for name in names:
        stage = graph.stages[name]
        params = graph.params(name, dataset.name, cfg.overrides.get(name))
        extra = {"function": stage.function, "variant": stage.variant}
        if stage.kind == "source":
            extra.update(dataset=dataset.name, reader=dataset.reader)
        fp = stage_fingerprint(name, stage.version, {**params, **extra}, {n: fps[n] for n in stage.needs})
        fps[name] = fp
        reason = _why(cfg.store_root, stage, params, fp, fps, name in forced)
        plans.append(StagePlan(stage, params, fp, reason, graph.outputs(name, dataset.name)))
    return plans


def _why(store_root: str, stage: Stage, params: dict, fp: str, fps: dict, forced: bool) -> str:
    """Human reason a stage's stored state does or does not match this run."""
    if forced:
        return "forced (--force)"
    if not store.stage_exists(store_root, stage.name):
        return "never run"
    attrs = store.stage_attrs(store_root, stage.name)
    if attrs.get("fingerprint") == fp:
        return "up to date"
    if attrs.get("variant", "default") != stage.variant:
        return f"variant {attrs.get('variant', 'default')} -> {stage.variant}"
    if attrs.get("version") != stage.version:
        return f"code version {attrs.get('version')} -> {stage.version}"
    old = attrs.get("params", {})
    changed = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
    if changed:
        return "params changed: " + ", ".join(f"{k} {old.get(k)!r} -> {params.get(k)!r}" for k in changed)
    ups = sorted(n for n, f in attrs.get("upstream", {}).items() if fps.get(n) != f)
    return f"upstream changed: {', '.join(ups)}" if ups else "fingerprint changed"


def scene_selection(dataset: Dataset, plans: list[StagePlan], cfg: RunConfig) -> tuple[Any, list[str]]:
    """The source stage's reader (None when none is planned) and the run's scenes: ``cfg.scenes``,
    else the reader's split lists up to ``cfg.limit``."""
    source = next((p for p in plans if p.stage.kind == "source"), None)
    reader = make_reader(dataset.reader, str(cfg.data_root), source.params) if source else None
    scenes = list(cfg.scenes or [])
    if reader is not None and not scenes:
        scenes = reader.scene_ids(list(cfg.splits))[: cfg.limit]
    return reader, scenes


def scene_inputs(stage: Stage, scene: str, reader: Any, scene_fps: Mapping[str, Mapping[str, str]]) -> Any:
    """What a scene's fingerprint covers: a source scene's raw-file manifest, else the scene (or
    global) fingerprints of the stages it needs, None for one that has none."""
    if stage.kind == "source":
        return reader.manifest(scene)
    return [scene_fps[n].get(scene, scene_fps[n].get(store.GLOBAL)) for n in stage.needs]


def uses_gpu(stage: Stage, params: Mapping[str, Any]) -> bool:
    """Whether a stage may run on the GPU: a `gpu: true` stage whose device is not cpu."""
    return stage.gpu and params["device"] != "cpu"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device here (imports torch: called only for GPU stages)."""
    import torch

    return torch.cuda.is_available()


def needs_local_gpu(cfg: RunConfig, plans: list[StagePlan]) -> bool:
    """Whether the local cluster gets a GPU worker: a GPU stage will run and CUDA is here."""
    return (cfg.scheduler is None and cfg.workers > 0
            and any(uses_gpu(p.stage, p.params) and p.reason != "up to date" for p in plans)
            and cuda_available())


def run(graph: Graph, cfg: RunConfig, progress: Any = None) -> list[StageReport]:
    """Run the planned stages in order; ``progress`` is a pipeline.progress.ProgressView or None.

    Before any task is sent: an external scheduler must accept the connection, and each CLIP stage
    that will compute something must find its weights where its tasks run (`pipeline.preflight`).
    """
    if cfg.security is not None and not cfg.scheduler:
        raise PipelineError(f"--security {cfg.security} is for an external cluster: give --scheduler too")
    security = load_security(cfg.security) if cfg.security is not None else None
    if cfg.scheduler:
        if store.in_one_process(cfg.store_root):
            raise PipelineError(f"store {cfg.store_root} lives in this process's memory, which the workers of "
                                f"{cfg.scheduler} cannot see: use a folder or an object-store URL")
        local = store.local_root(cfg.store_root)  # the cluster's workers have their own working directory
        cfg = replace(cfg, data_root=cfg.data_root.absolute(),
                      store_root=str(local.absolute()) if local is not None else cfg.store_root)
    dataset = graph.dataset(cfg.dataset)
    plans = plan(graph, cfg)
    executor = Executor(cfg.workers, cfg.scheduler, processes=not store.in_one_process(cfg.store_root),
                        gpu=needs_local_gpu(cfg, plans), security=security)
    reports: list[StageReport] = []
    scene_fps: dict[str, dict[str, str]] = {}
    try:
        if cfg.scheduler:
            executor.connect()
        selection = functools.cache(lambda: scene_selection(dataset, plans, cfg))  # a reader may be slow to build
        for p in plans:  # pre-flight: class lists, here
            preflight.check_class_list(p.stage.name, p.params)
        for p in plans:  # pre-flight: each CLIP stage's weights, where its tasks will run
            if preflight.uses_clip(p.stage) and preflight.will_run(p, cfg.store_root, lambda: selection()[1]):
                preflight.raise_first(executor.run_where_tasks_run(
                    preflight.weights_problem, p.stage.name, p.params, gpu=uses_gpu(p.stage, p.params)))
        reader, scenes = selection()
        if not scenes and any(p.stage.kind != "global" for p in plans):
            raise PipelineError(f"no scenes found for dataset '{dataset.name}' under {cfg.data_root} "
                                f"(splits {', '.join(cfg.splits)})")
        for p in plans:
            reports.append(_run_stage(p, cfg, dataset, reader, scenes, scene_fps, executor, progress))
    finally:
        executor.close()
    return reports


def _run_stage(p: StagePlan, cfg: RunConfig, dataset: Dataset, reader: Any, scenes: list[str],
               scene_fps: dict[str, dict[str, str]], executor: Executor, progress: Any) -> StageReport:
    stage, root = p.stage, cfg.store_root
    report = StageReport(stage.name)
    t0 = time.perf_counter()
    if p.reason != "up to date":
        store.reset_stage(root, stage.name, {
            "fingerprint": p.fingerprint, "version": stage.version, "params": p.params, "kind": stage.kind,
            "upstream": {n: f for n, f in ((n, store.stage_attrs(root, n).get("fingerprint")) for n in stage.needs)},
            "dataset": dataset.name, "variant": stage.variant,
        })
    targets = [store.GLOBAL] if stage.kind == "global" else scenes
    fps: dict[str, str] = {}
    for scene in targets:
        inputs = scene_inputs(stage, scene, reader, scene_fps)
        if stage.kind != "source" and any(u is None for u in inputs):
            report.blocked += 1
            continue
        fps[scene] = scene_fingerprint(p.fingerprint, inputs)
    todo = [s for s in fps if not store.scene_done(root, stage.name, s, fps[s])]
    report.skipped = len(fps) - len(todo)
    failed: dict[str, str] = {}
    source = (dataset.reader, str(cfg.data_root)) if stage.kind == "source" else None
    needs = tuple((n, store.GLOBAL in scene_fps[n]) for n in stage.needs)
    tasks = [Task(stage.name, stage.function, stage.kind, needs, root, s, p.params, fps[s], source, p.outputs)
             for s in todo]
    bar = progress.start(stage.name, len(fps), report.skipped) if progress else None

    def on_done(result: Result) -> None:
        scene, failure, _ = result
        if failure:
            failed[scene] = failure
            fps.pop(scene, None)
        else:
            report.done += 1
        if progress:
            progress.advance(bar, failure)

    executor.map(tasks, on_done, gpu=uses_gpu(stage, p.params))
    scene_fps[stage.name] = fps  # failed scenes were removed: downstream counts them as blocked
    report.failed = failed
    root_group = store.open_stage(root, stage.name, mode="a")
    root_group.attrs["failed"] = report.failed
    report.warnings = _frame_warnings(root, stage, todo, report.failed)
    report.seconds = time.perf_counter() - t0
    if progress:
        progress.finish(bar)
    return report


def _frame_warnings(root: str, stage: Stage, scenes: list[str], failed: dict[str, str]) -> list[str]:
    """One line per scene whose source record skipped frames (e.g. -inf poses)."""
    if stage.kind != "source":
        return []
    lines = []
    for scene in scenes:
        if scene in failed:
            continue
        skipped = store.stage_attrs(root, stage.name, scene).get("skipped_frames") or {}
        for reason, files in skipped.items():
            lines.append(f"scene {scene}: skipped {len(files)} frame(s): {reason} (e.g. {files[0]})")
    return lines
