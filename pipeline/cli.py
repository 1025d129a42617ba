"""`hicl-pipeline`: run, inspect and clean the preprocessing stages (``make preprocess`` calls ``run``)."""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline import preflight, store
from pipeline.errors import PipelineError
from pipeline.plan import RunConfig, StagePlan, Status, plan_run, plan_stages
from pipeline.progress import ProgressView, report_table
from pipeline.runner import run
from pipeline.stages import Graph, load_graph

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Offline preprocessing: raw dataset -> Zarr stores of the stage graph.")
console = Console()

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Dataset name from stages.yaml.")]
DataRootOpt = Annotated[Path | None, typer.Option(help="Raw data root [default: data/raw/<dataset>].")]
StoreRootOpt = Annotated[str | None, typer.Option(help="Store root, a folder or fsspec URL [default: data/stores/<dataset>].")]
StagesFileOpt = Annotated[Path | None, typer.Option("--stages-file", help="Stage graph [default: the repository's stages.yaml].")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a param: STAGE.PARAM=VALUE (YAML value). Repeatable.")]
VariantOpt = Annotated[list[str] | None, typer.Option("--variant", help="Use a declared stage variant: STAGE=VARIANT (e.g. pseudo=simulated). Repeatable.")]
SplitOpt = Annotated[str, typer.Option(help="Comma-separated splits to process.")]
_WHY_LINES = 20  # per stage, in `status`


def _fail(message: str) -> None:
    for line in message.splitlines():  # the pre-flight reports each problem on its own line
        console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        stage, dot, param = key.partition(".")
        if not eq or not dot or not stage or not param:
            raise typer.BadParameter(f"'{item}' is not STAGE.PARAM=VALUE", param_hint="--set")
        out.setdefault(stage, {})[param] = yaml.safe_load(value)
    return out


def _config(graph: Graph, dataset: str, data_root: Path | None, store_root: str | None, **kw: Any) -> RunConfig:
    graph.dataset(dataset)
    return RunConfig(
        dataset=dataset,
        data_root=data_root or Path("data/raw") / dataset,
        store_root=store_root or str(Path("data/stores") / dataset),
        **kw,
    )


def _variants(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        stage, eq, variant = item.partition("=")
        if not eq or not stage or not variant:
            raise typer.BadParameter(f"'{item}' is not STAGE=VARIANT", param_hint="--variant")
        out[stage] = variant
    return out


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _generate_if_missing(graph: Graph, cfg: RunConfig, scenes: int | None) -> None:
    """Synthetic datasets are generated into DATA_ROOT when it does not exist yet (not into a run
    that could not write its stores)."""
    gen = graph.dataset(cfg.dataset).generator
    if gen is None or cfg.data_root.exists():
        return
    problem = preflight.store_root_problem(cfg.store_root)
    if problem:
        raise PipelineError(problem)
    spec = dict(gen)
    module, _, attr = spec.pop("function").partition(":")
    if scenes is not None:
        spec["scenes"] = scenes
    console.print(f"generating {cfg.dataset} into {cfg.data_root} ({spec})")
    getattr(importlib.import_module(module), attr)(out=cfg.data_root, **spec)


@app.command("run")
def run_cmd(
    dataset: DatasetOpt,
    data_root: DataRootOpt = None,
    store_root: StoreRootOpt = None,
    workers: Annotated[int, typer.Option(help="Local Dask worker processes (0 = run in this process).")] = 2,
    scheduler: Annotated[str | None, typer.Option(help="Address of an existing Dask scheduler, e.g. tcp://host:8786 or tls://host:8786.")] = None,
    security: Annotated[Path | None, typer.Option(help="TLS for --scheduler: YAML/JSON file naming tls_ca_file, tls_client_cert, tls_client_key [default: Dask's distributed.comm.tls config].")] = None,
    split: SplitOpt = "train,val",
    scenes: Annotated[str | None, typer.Option(help="Comma-separated scene ids (instead of the splits).")] = None,
    limit: Annotated[int | None, typer.Option(help="Process only the first N scenes of the splits.")] = None,
    stages: Annotated[str | None, typer.Option(help="Comma-separated stages to run (with what they need).")] = None,
    force: Annotated[list[str] | None, typer.Option(help="Recompute STAGE and its downstream stages. Repeatable.")] = None,
    set_: SetOpt = None,
    variant: VariantOpt = None,
    generate: Annotated[int | None, typer.Option(help="Synthetic datasets: scenes to generate when DATA_ROOT is missing.")] = None,
    stages_file: StagesFileOpt = None,
) -> None:
    """Run the stage graph; skips what is up to date, resumes what is incomplete."""
    try:
        graph = load_graph(stages_file)
        cfg = _config(graph, dataset, data_root, store_root, splits=_csv(split) or (), scenes=_csv(scenes),
                      limit=limit, stages=_csv(stages), force=tuple(force or ()), overrides=_overrides(set_),
                      variants=_variants(variant), workers=workers, scheduler=scheduler, security=security)
        plan_stages(graph, cfg)  # every param resolved and checked (type, range) before data is generated
        _generate_if_missing(graph, cfg, generate)
        with ProgressView(console) as view:
            reports = run(graph, cfg, view, lock=True)
    except PipelineError as exc:
        _fail(str(exc))
        return
    console.print(report_table(reports))
    for r in reports:
        for line in r.warnings:
            console.print(f"[yellow]warning[/yellow] {r.name}: {escape(line)}", highlight=False, soft_wrap=True)
    failures = [(r.name, line) for r in reports for line in r.failed.values()]
    for name, line in failures:
        console.print(f"[red]failed[/red] {name}: {escape(line)}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def status(
    dataset: DatasetOpt,
    data_root: DataRootOpt = None,
    store_root: StoreRootOpt = None,
    set_: SetOpt = None,
    variant: VariantOpt = None,
    stages_file: StagesFileOpt = None,
) -> None:
    """Per stage: done scenes, failures, and whether (and why) the next run recomputes it."""
    try:
        graph = load_graph(stages_file)
        cfg = _config(graph, dataset, data_root, store_root, overrides=_overrides(set_),
                      variants=_variants(variant))
        plan = plan_run(graph, cfg)
    except PipelineError as exc:
        _fail(str(exc))
        return
    table = Table(title=f"{dataset} stores at {cfg.store_root}")
    for col in ("stage", "kind", "done", "failed", "next run"):
        table.add_column(col)
    failures, why = [], []
    for p in plan.stages:
        name = p.stage.name
        exists = store.stage_exists(cfg.store_root, name)
        failed = store.stage_attrs(cfg.store_root, name).get("failed", {}) if exists else {}
        failures += [(name, line) for line in failed.values()]
        todo = p.todo()
        if p.status is Status.REBUILD:
            nxt = f"rebuild: {p.reason}"
            why.append(f"{name}: rebuild: {p.reason}")
        elif p.status is Status.RESUME:
            nxt = f"resume: {len(todo)} scene(s) to compute"
            why += [f"{name}: {'' if s == store.GLOBAL else s + ': '}{sp.reason}"
                    for s, sp in list(todo.items())[:_WHY_LINES]]
            if len(todo) > _WHY_LINES:
                why.append(f"{name}: ... and {len(todo) - _WHY_LINES} more scene(s)")
        else:
            nxt = "skip (up to date)" if p.scenes is not None else "skip (up to date; resumes missing scenes)"
        table.add_row(name, p.stage.kind, str(_done_count(cfg.store_root, name, p.stage.kind)),
                      str(len(failed)), nxt)
    console.print(table)
    for line in why:
        console.print(f"next run {escape(line)}", highlight=False, soft_wrap=True)
    for name, line in failures:
        console.print(f"[red]failed[/red] {name}: {escape(line)}", highlight=False, soft_wrap=True)
    for line in preflight.problems(cfg, plan, _weights_here):
        console.print(f"[yellow]warning[/yellow] next run stops: {escape(line)}", highlight=False, soft_wrap=True)


def _weights_here(p: StagePlan) -> dict[str, str | None]:
    """A CLIP stage's weights problem on this machine (where `status` runs), as the pre-flight takes it."""
    return {"": preflight.weights_problem(p.stage.name, p.params)}


def _done_count(store_root: str, stage: str, kind: str) -> int:
    """Scenes of a stage whose writing finished (0 or 1 for a global stage)."""
    if kind != "global":
        return len(store.done_scenes(store_root, stage))
    try:
        store.open_global(store_root, stage)
    except PipelineError:
        return 0
    return 1


@app.command("eval")
def eval_cmd(
    dataset: DatasetOpt,
    data_root: DataRootOpt = None,
    store_root: StoreRootOpt = None,
    stage: Annotated[str, typer.Option(help="Stage whose pair labels are scored: pseudo (MaskCLIP-3D), refine or vote.")] = "pseudo",
    split: SplitOpt = "val",
    output: Annotated[Path | None, typer.Option(help="Also write the result as JSON here.")] = None,
) -> None:
    """MaskCLIP-3D: each point takes the majority label of its pairs; per-class IoU and mIoU
    (and head/common/tail mIoU for ScanNet200), in the class set of the stored text stage."""
    from pipeline.labels.maskclip3d import score_scenes, summary
    from pipeline.labelsets import text_class_set

    try:
        graph = load_graph()
        cfg = _config(graph, dataset, data_root, store_root, splits=_csv(split) or ())
        source = next(name for name in graph.order if graph.stages[name].kind == "source")
        reader = graph.dataset(dataset).resolve_reader()(cfg.data_root, graph.params(source, dataset))
        done = set(store.done_scenes(cfg.store_root, stage))
        scenes = [s for s in reader.scene_ids(list(cfg.splits)) if s in done]
        if not scenes:
            raise PipelineError(f"no scene of split {split} is done in stage '{stage}' under {cfg.store_root}")
        names = list(store.stage_attrs(cfg.store_root, "text", store.GLOBAL)["class_names"])
        scores = score_scenes(cfg.store_root, stage, scenes, len(names))
    except PipelineError as exc:
        _fail(str(exc))
        return
    result = {"stage": stage, "split": split, "scenes": len(scenes),
              **summary(scores, names, text_class_set(cfg.store_root))}
    table = Table(title=f"{dataset}: {stage} labels voted onto points, {len(scenes)} {split} scenes")
    for col in ("class", "IoU", "pair accuracy"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for n in names:
        v, a = result["iou"][n], result["pair_accuracy_per_class"].get(n)
        table.add_row(n, "-" if v is None else f"{100 * v:.1f}", "-" if a is None else f"{100 * a:.1f}")
    table.add_section()
    table.add_row("[bold]mean[/bold]", f"[bold]{100 * result['miou']:.1f}[/bold]", f"{100 * result['pair_accuracy']:.1f}")
    for group in ("head", "common", "tail"):
        if f"miou_{group}" in result:
            table.add_row(f"mean, {group}", f"{100 * result[f'miou_{group}']:.1f}", "")
    console.print(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1))


@app.command("list")
def list_cmd(stages_file: StagesFileOpt = None) -> None:
    """The stages, their params with defaults, and the datasets."""
    try:
        graph = load_graph(stages_file)
    except PipelineError as exc:
        _fail(str(exc))
        return
    table = Table(title="stages")
    for col in ("stage", "kind", "needs", "params (default)", "variants"):
        table.add_column(col)
    for name in graph.order:
        s = graph.stages[name]
        table.add_row(name, s.kind, ", ".join(s.needs),
                      "\n".join(f"{p.name}={p.default!r}" for p in s.params.values()),
                      ", ".join(s.variants))
    console.print(table)
    ds = Table(title="datasets")
    for col in ("dataset", "reader", "classes", "params (default)", "variants"):
        ds.add_column(col)
    for d in graph.datasets.values():
        ds.add_row(d.name, d.reader, d.classes, "\n".join(f"{p.name}={p.default!r}" for p in d.reader_params.values()),
                   ", ".join(f"{k}={v}" for k, v in d.variants.items()))
    console.print(ds)


@app.command()
def clean(
    dataset: DatasetOpt,
    stage: Annotated[str, typer.Option(help="Delete this stage's store and its downstream stages' stores.")],
    store_root: StoreRootOpt = None,
    stages_file: StagesFileOpt = None,
) -> None:
    """Delete stage stores (the stage and everything downstream of it)."""
    try:
        graph = load_graph(stages_file)
        if stage not in graph.stages:
            raise PipelineError(f"unknown stage '{stage}' (known: {', '.join(graph.order)})")
    except PipelineError as exc:
        _fail(str(exc))
        return
    root = store_root or str(Path("data/stores") / dataset)
    fs, _ = store.filesystem(root)
    for name in graph.downstream(stage):
        url = store.stage_url(root, name)
        if fs.exists(url):
            fs.rm(url, recursive=True)
            console.print(f"removed {url}")


if __name__ == "__main__":
    app()
