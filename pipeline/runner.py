"""Runs the stage graph with Dask: fingerprints, skip / resume / rebuild, per-scene failures.

One task per scene (one for a global stage). A stage whose stored fingerprint matches and whose
scenes are all done is skipped; an incomplete one resumes the scenes not yet done; a changed
one is reset and rebuilt, and because fingerprints chain, exactly its downstream stages follow.
A scene that fails is reported with its file and reason while the others finish.
"""
from __future__ import annotations

import functools
import posixpath
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pipeline import preflight, store
from pipeline.errors import PipelineError, SceneError
from pipeline.fingerprint import scene_fingerprint, stage_fingerprint
from pipeline.stages import Dataset, Graph, Stage, import_named


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
    """A stage resolved for one run: params, fingerprint, and why it will (not) run."""

    stage: Stage
    params: dict[str, Any]
    fingerprint: str
    reason: str


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


def _stage_params(graph: Graph, stage: Stage, dataset: Dataset, cfg: RunConfig) -> dict[str, Any]:
    """Declared defaults < dataset overrides < command-line overrides, each checked."""
    if stage.kind == "source":
        values = {**cfg.overrides.get(stage.name, {})}
        unknown = sorted(set(values) - set(dataset.reader_params))
        if unknown:
            raise PipelineError(
                f"--set {stage.name}.{unknown[0]}: unknown param for dataset '{dataset.name}' "
                f"(known: {', '.join(sorted(dataset.reader_params))})"
            )
        return {n: p.check(values.get(n, p.default), f"dataset '{dataset.name}'")
                for n, p in dataset.reader_params.items()}
    merged = {**dataset.stage_params.get(stage.name, {}), **cfg.overrides.get(stage.name, {})}
    return stage.resolve_params(merged, f"stage '{stage.name}'")


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
        params = _stage_params(graph, stage, dataset, cfg)
        extra = {"function": stage.function, "variant": stage.variant}
        if stage.kind == "source":
            extra.update(dataset=dataset.name, reader=dataset.reader)
        fp = stage_fingerprint(name, stage.version, {**params, **extra}, {n: fps[n] for n in stage.needs})
        fps[name] = fp
        plans.append(StagePlan(stage, params, fp, _why(cfg.store_root, stage, params, fp, fps, name in forced)))
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


def _make_reader(dataset_reader: str, data_root: str, params: dict[str, Any]) -> Any:
    """The dataset reader named by ``module:Class`` over ``data_root`` (plain values: Dask tasks build it too)."""
    return import_named(dataset_reader, "reader")(Path(data_root), params)


def scene_selection(dataset: Dataset, plans: list[StagePlan], cfg: RunConfig) -> tuple[Any, list[str]]:
    """The source stage's reader (None when none is planned) and the run's scenes: ``cfg.scenes``,
    else the reader's split lists up to ``cfg.limit``."""
    source = next((p for p in plans if p.stage.kind == "source"), None)
    reader = _make_reader(dataset.reader, str(cfg.data_root), source.params) if source else None
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


def run_scene_task(
    stage_name: str, function: str, kind: str, needs: tuple[tuple[str, bool], ...], store_root: str,
    scene: str, params: dict[str, Any], fingerprint: str, source: tuple[str, str] | None,
) -> tuple[str, str | None, float]:
    """Compute and write one scene of one stage; returns (scene, failure line or None, seconds).

    Runs on a Dask worker (or in-process): everything it needs travels as plain values.
    """
    t0 = time.perf_counter()
    try:
        fn = import_named(function, f"stage '{stage_name}': function")
        if kind == "source":
            assert source is not None
            out = fn(_make_reader(source[0], source[1], params), scene)
        else:
            inputs = {n: store.read_scene(store_root, n, store.GLOBAL if is_global else scene)
                      for n, is_global in needs}
            out = fn(inputs, params)
        store.write_scene(store_root, stage_name, scene, out, fingerprint)
    except SceneError as exc:
        exc.scene = exc.scene or scene
        return scene, exc.line(), time.perf_counter() - t0
    except PipelineError as exc:
        line = str(exc) if str(exc).startswith(f"scene {scene}") else f"scene {scene}: {exc}"
        return scene, line, time.perf_counter() - t0
    except Exception as exc:  # an unexpected bug: one line here, the traceback in a log file
        log = _log_traceback(store_root, stage_name, scene)
        return scene, f"scene {scene}: unexpected {type(exc).__name__}: {exc} (traceback: {log})", time.perf_counter() - t0
    return scene, None, time.perf_counter() - t0


def _log_traceback(store_root: str, stage: str, scene: str) -> str:
    """The current traceback into ``<store_root>/logs/<stage>/<scene>.log``; returns where it went."""
    try:
        fs, root = store.filesystem(store_root)
        path = posixpath.join(root, "logs", stage, f"{scene}.log")
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        fs.pipe_file(path, traceback.format_exc().encode())
    except (OSError, PipelineError) as exc:
        return f"not written: {exc}"
    return store.path_in(store_root, "logs", stage, f"{scene}.log")


GPU = "GPU"  # the Dask worker resource that a GPU stage's task takes one unit of


def uses_gpu(stage: Stage, params: Mapping[str, Any]) -> bool:
    """Whether a stage may run on the GPU: a `gpu: true` stage whose device is not cpu."""
    return stage.gpu and params.get("device") != "cpu"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device here (imports torch: called only for GPU stages)."""
    import torch

    return torch.cuda.is_available()


def needs_local_gpu(cfg: RunConfig, plans: list[StagePlan]) -> bool:
    """Whether the local cluster gets a GPU worker: a GPU stage will run and CUDA is here."""
    return (cfg.scheduler is None and cfg.workers > 0
            and any(uses_gpu(p.stage, p.params) and p.reason != "up to date" for p in plans)
            and cuda_available())


TLS_KEYS = ("tls_ca_file", "tls_client_cert", "tls_client_key")


def load_security(path: Path) -> Any:
    """A ``distributed.security.Security`` that requires TLS, from a YAML/JSON file naming
    ``tls_ca_file``, ``tls_client_cert`` and ``tls_client_key`` (relative to the file's folder)."""
    from distributed.security import Security

    where = f"--security {path}"
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PipelineError(f"{where}: cannot be read ({exc.strerror or type(exc).__name__})") from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"{where}: not valid YAML or JSON ({exc})".replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise PipelineError(f"{where}: must be a mapping of {', '.join(TLS_KEYS)}")
    unknown = sorted(set(raw) - set(TLS_KEYS))
    if unknown:
        raise PipelineError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(TLS_KEYS)})")
    unnamed = [key for key in TLS_KEYS if not isinstance(raw.get(key), str)]
    if unnamed:
        raise PipelineError(f"{where}: '{unnamed[0]}' must name a file")
    files = {key: path.parent / Path(raw[key]).expanduser() for key in TLS_KEYS}
    for key, file in files.items():
        if not file.is_file():
            raise PipelineError(f"{where}: {key} {file} does not exist")
    return Security(require_encryption=True, **{k: str(f) for k, f in files.items()})


class Executor:
    """Runs task lists in-process (workers=0) or on a Dask cluster started on first use.

    The local cluster's workers are processes, or threads of this process when ``processes`` is
    False (a ``memory://`` store, which no other process sees). With ``gpu`` one of them holds
    the GPU resource, so GPU tasks run one at a time while the others take CPU tasks; on an
    external cluster, workers started with ``--resources GPU=1`` hold it. ``security`` (TLS) is
    for the external scheduler; without it the client takes Dask's ``distributed.comm.tls`` config.
    """

    def __init__(self, workers: int, scheduler: str | None, processes: bool = True, gpu: bool = False,
                 security: Any = None):
        self.workers, self.scheduler, self.processes, self.gpu = workers, scheduler, processes, gpu
        self.security = security
        self._client: Any = None
        self._cluster: Any = None

    def map(self, tasks: list[tuple], on_done: Callable[[tuple], None], gpu: bool = False) -> None:
        """Run ``run_scene_task(*args)`` for each args tuple; call ``on_done`` with each result.

        ``gpu``: the tasks may use the GPU; each takes one unit of the GPU resource when some
        worker has it (otherwise they run anywhere and pick their device themselves).
        """
        if self.workers == 0 and self.scheduler is None:
            for args in tasks:
                on_done(run_scene_task(*args))
            return
        from dask.distributed import as_completed

        client = self._start()
        resources = {GPU: 1} if gpu and self.gpu_workers() else None
        futures = [client.submit(run_scene_task, *args, pure=False, key=f"{args[0]}-{args[5]}-{args[7]}",
                                 resources=resources)
                   for args in tasks]
        for fut in as_completed(futures):
            on_done(fut.result())

    def run_where_tasks_run(self, fn: Callable[..., Any], *args: Any, gpu: bool = False) -> dict[str, Any]:
        """``fn(*args)`` where ``map``'s tasks would run, by worker address ("" for this machine,
        which the in-process and local-cluster tasks share): on an external cluster every worker,
        or with ``gpu`` the GPU workers when there are any."""
        if self.scheduler is None:
            return {"": fn(*args)}
        return self._start().run(fn, *args, workers=(self.gpu_workers() if gpu else None) or None)

    def connect(self) -> None:
        """Start the cluster or reach the scheduler now (so a refused connection writes nothing)."""
        self._start()

    def gpu_workers(self) -> list[str]:
        """Addresses of the cluster's workers that hold the GPU resource."""
        info = self._start().scheduler_info(n_workers=-1)["workers"]
        return sorted(addr for addr, w in info.items() if (w.get("resources") or {}).get(GPU))

    def _start(self) -> Any:
        if self._client is None:
            from dask.distributed import Client, LocalCluster

            if self.scheduler:
                try:
                    self._client = Client(self.scheduler, security=self.security)
                except (OSError, TypeError, RuntimeError, ValueError) as exc:  # unreachable, or refused by TLS
                    hint = ("; a tls:// scheduler needs --security FILE or Dask's distributed.comm.tls config"
                            if self.security is None and self.scheduler.startswith("tls://") else "")
                    raise PipelineError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}{hint}") from exc
            else:
                self._cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=self.processes,
                                             dashboard_address=None)
                if self.gpu:  # one worker of the same kind as the others, plus the GPU resource
                    spec = self._cluster.new_spec
                    self._cluster.worker_spec["gpu"] = {
                        **spec, "options": {**spec["options"], "resources": {GPU: 1}}}
                self._cluster.scale(self.workers)
                self._client = Client(self._cluster)
                self._client.wait_for_workers(self.workers)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()


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
    tasks = [(stage.name, stage.function, stage.kind, needs, root, s, p.params, fps[s], source) for s in todo]
    task = progress.start(stage.name, len(fps), report.skipped) if progress else None

    def on_done(result: tuple[str, str | None, float]) -> None:
        scene, failure, _ = result
        if failure:
            failed[scene] = failure
            fps.pop(scene, None)
        else:
            report.done += 1
        if progress:
            progress.advance(task, failure)

    executor.map(tasks, on_done, gpu=uses_gpu(stage, p.params))
    scene_fps[stage.name] = fps  # failed scenes were removed: downstream counts them as blocked
    report.failed = failed
    root_group = store.open_stage(root, stage.name, mode="a")
    root_group.attrs["failed"] = report.failed
    report.warnings = _frame_warnings(root, stage, todo, report.failed)
    report.seconds = time.perf_counter() - t0
    if progress:
        progress.finish(task)
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
