"""Runs the planned stage graph: one task per scene the plan computes, reports per stage.

The plan (:mod:`pipeline.plan`) says what each stage and scene needs: a rebuilt stage is reset
first; a scene is computed when its plan says so and none of its inputs failed in this run
(otherwise it is counted as blocked). A scene that fails is reported with its file and reason
while the others finish. Before any task is sent, the pre-flight (:mod:`pipeline.preflight`)
reports every problem of the run; then the store lock is taken. Where tasks run (in-process or
on a Dask cluster) is :mod:`pipeline.executor`'s business; what one task does, :mod:`pipeline.task`'s.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline import preflight, store
from pipeline.errors import PipelineError
from pipeline.executor import Executor, load_security
from pipeline.lock import StoreLock
from pipeline.plan import Plan, RunConfig, StagePlan, Status, plan_run
from pipeline.stages import Dataset, Graph, Stage
from pipeline.task import Result, Task


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


def uses_gpu(stage: Stage, params: Mapping[str, Any]) -> bool:
    """Whether a stage may run on the GPU: a `gpu: true` stage whose device is not cpu."""
    return stage.gpu and params["device"] != "cpu"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device here (imports torch: called only for GPU stages)."""
    import torch

    return torch.cuda.is_available()


def needs_local_gpu(cfg: RunConfig, plans: list[StagePlan]) -> bool:
    """Whether the local cluster gets a GPU worker: a GPU stage computes something and CUDA is here."""
    return (cfg.scheduler is None and cfg.workers > 0
            and any(uses_gpu(p.stage, p.params) and p.computes for p in plans)
            and cuda_available())


def run(graph: Graph, cfg: RunConfig, progress: Any = None, lock: bool = False) -> list[StageReport]:
    """Run the planned stages in order; ``progress`` is a pipeline.progress.ProgressView or None;
    ``lock``: hold the store lock (pipeline.lock) while writing.

    Before any task is sent: an external scheduler must accept the connection, and the pre-flight
    must find nothing wrong (it reports every problem, each CLIP stage's weights checked where its
    tasks run).
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
    plan = plan_run(graph, cfg)
    executor = Executor(cfg.workers, cfg.scheduler, processes=not store.in_one_process(cfg.store_root),
                        gpu=needs_local_gpu(cfg, plan.stages), security=security)
    try:
        if cfg.scheduler:
            executor.connect()
        preflight.check(cfg, plan, lambda p: executor.run_where_tasks_run(
            preflight.weights_problem, p.stage.name, p.params, gpu=uses_gpu(p.stage, p.params)))
        with StoreLock(cfg.store_root) if lock else contextlib.nullcontext():
            return _run_plan(plan, cfg, dataset, executor, progress)
    finally:
        executor.close()


def _run_plan(plan: Plan, cfg: RunConfig, dataset: Dataset, executor: Executor, progress: Any) -> list[StageReport]:
    """Run every stage of the plan in order; a scene lost upstream (failed or blocked) is blocked."""
    kinds = {p.stage.name: p.stage.kind for p in plan.stages}
    lost: dict[str, set[str]] = {}
    reports = []
    for p in plan.stages:
        reports.append(_run_stage(p, cfg, dataset, kinds, lost, executor, progress))
    return reports


def _run_stage(p: StagePlan, cfg: RunConfig, dataset: Dataset, kinds: Mapping[str, str],
               lost: dict[str, set[str]], executor: Executor, progress: Any) -> StageReport:
    stage, root = p.stage, cfg.store_root
    report = StageReport(stage.name)
    t0 = time.perf_counter()
    if p.status is Status.REBUILD:
        store.reset_stage(root, stage.name, {
            "fingerprint": p.fingerprint, "version": stage.version, "params": p.params, "kind": stage.kind,
            "upstream": {n: f for n, f in ((n, store.stage_attrs(root, n).get("fingerprint")) for n in stage.needs)},
            "dataset": dataset.name, "variant": stage.variant,
        })
    scenes = p.scenes or {}
    blocked = {s for s in scenes if any(s in lost[n] or store.GLOBAL in lost[n] for n in stage.needs)}
    report.blocked = len(blocked)
    todo = [s for s, sp in p.todo().items() if s not in blocked]
    report.skipped = len(scenes) - len(blocked) - len(todo)
    lost[stage.name] = set(blocked)
    source = (dataset.reader, str(cfg.data_root)) if stage.kind == "source" else None
    needs = tuple((n, kinds[n] == "global") for n in stage.needs)
    tasks = [Task(stage.name, stage.function, stage.kind, needs, root, s, p.params, scenes[s].fingerprint, source,
                  p.outputs) for s in todo]
    bar = progress.start(stage.name, len(scenes) - len(blocked), report.skipped) if progress else None

    def on_done(result: Result) -> None:
        scene, failure, _ = result
        if failure:
            report.failed[scene] = failure
            lost[stage.name].add(scene)
        else:
            report.done += 1
        if progress:
            progress.advance(bar, failure)

    executor.map(tasks, on_done, gpu=uses_gpu(stage, p.params))
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
