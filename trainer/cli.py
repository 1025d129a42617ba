"""Command line: `hicl-train fit|eval|predict|view|figures` (also `typer trainer run ...`, `python -m trainer`).

Heavy imports (torch, MinkowskiEngine) happen inside the commands, so `--help` is instant.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainer.config import ConfigError, TrainConfig, load_config

app = typer.Typer(
    name="hicl-train", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    help="Train, evaluate and run the label-free 3D segmentation model (hierarchical intra-modal "
         "correlation learning).")
console = Console()

ConfigOpt = Annotated[str | None, typer.Option(
    "--config", "-c", help="YAML config file or preset name (trainer/presets: scannet, nuscenes, "
                           "synthetic-scannet, ablation-I..V).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="Override one key: --set epochs=3 --set intra_scene=false (repeatable).")]
CheckpointOpt = Annotated[Path, typer.Option(
    "--checkpoint", help="A best.pt/last.pt file; its saved config is the starting point.")]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="auto|cpu|cuda, wins over the config (auto: CUDA when torch and "
                     "MinkowskiEngine have it).")]


def with_device(overrides: list[str] | None, device: str | None) -> list[str]:
    """The --set overrides, then --device as the last one, so it wins."""
    return [*(overrides or []), *([f"device={device}"] if device else [])]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn input problems into one red line and exit code 1 (no traceback)."""
    from pipeline.errors import PipelineError
    from trainer.checkpoint import CheckpointError

    try:
        yield
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except (CheckpointError, PipelineError, FileNotFoundError, KeyError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from exc


def _config_from_checkpoint(checkpoint: Path, config: str | None, overrides: list[str] | None) -> TrainConfig:
    """The checkpoint's config, then a config file, then --set overrides."""
    from trainer.checkpoint import load

    return load_config(config, overrides or [], base=load(checkpoint)["config"])


def _scene_ids(scenes: str | None, cfg: TrainConfig) -> list[str]:
    """The comma-separated --scenes, or the config's validation scenes; each one checked to be in
    the store before any is read."""
    from trainer.data import check_scenes, resolve_scenes

    ids = ([s.strip() for s in scenes.split(",") if s.strip()] if scenes
           else resolve_scenes(cfg.val_split, cfg.store_root, "scenes", "val_split"))
    return check_scenes(cfg.store_root, ids)


def _print_iou(result: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, value in result["iou"].items():
        table.add_row(name, "-" if value is None else f"{100 * value:.1f}")
    table.add_section()
    table.add_row("[bold]mIoU[/bold]", f"[bold]{100 * result['miou']:.1f}[/bold]")
    console.print(table)


def _run(fn: Callable[[], Any]) -> Any:
    with _user_errors():
        return fn()


@app.command()
def fit(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the run from <run>/last.pt.")] = False,
    until_epoch: Annotated[int | None, typer.Option(
        help="Stop after this epoch (time-limited jobs); continue later with --resume.")] = None,
    allow_code_change: Annotated[bool, typer.Option(
        help="With --resume: continue a run trained by another commit (or other uncommitted "
             "changes); the run's provenance.json records it.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Train the 3D model (Sec. 3.4 schedule); checkpoints and metrics go to <runs_root>/<name>."""
    from trainer.distributed import rank_from_env
    from trainer.engine import fit as run_fit

    if config is None:
        raise typer.BadParameter("--config is required (a YAML file or a preset name)")

    def go() -> None:
        cfg = load_config(config, with_device(overrides, device))
        origin = {"config": config, "overrides": with_device(overrides, device)}
        summary = run_fit(cfg, resume=resume, until_epoch=until_epoch, console=console, origin=origin,
                          allow_code_change=allow_code_change)
        if rank_from_env() != 0:  # under torchrun, rank 0 reports
            return
        last = summary.get("last", {})
        if "iou" in last:
            _print_iou(last, f"{cfg.name}: epoch {summary['epoch']}")
        best = summary["best_miou"]
        scored = f"  best mIoU: {best:.4f}" if best > float("-inf") else "  (no validation run yet)"
        console.print(f"run folder: {summary['run_dir']}{scored}")

    _run(go)


@app.command("eval")
def evaluate(
    checkpoint: CheckpointOpt,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    output: Annotated[Path | None, typer.Option(help="Also write the result as JSON here.")] = None,
    device: DeviceOpt = None,
) -> None:
    """Per-class IoU and mIoU of a checkpoint on val_split, at full point resolution."""
    from trainer.engine import evaluate as run_eval

    def go() -> None:
        cfg = _config_from_checkpoint(checkpoint, config, with_device(overrides, device))
        result = run_eval(cfg, checkpoint, console=console)
        _print_iou(result, f"{checkpoint} on {result['scenes']} scenes")
        if output is not None:
            output.write_text(json.dumps(result, indent=1))

    _run(go)


@app.command()
def predict(
    checkpoint: CheckpointOpt,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    scenes: Annotated[str | None, typer.Option(
        help="Comma-separated scene ids (default: the config's val_split).")] = None,
    classes: Annotated[str | None, typer.Option(
        help="Any class list, 'a,b,c' or a file with one name per line (default: the training "
             "classes); embedded with CLIP.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default <run>/predictions).")] = None,
    clip_model: Annotated[str, typer.Option(help="open_clip model for new class lists.")] = "ViT-B-16",
    clip_pretrained: Annotated[str, typer.Option(help="open_clip pretrained tag.")] = "openai",
    clip_checkpoint: Annotated[str | None, typer.Option(help="Local CLIP weights file.")] = None,
    device: DeviceOpt = None,
) -> None:
    """Labels per point (<scene>.labels.npy) and a coloured PLY per scene, for any class list."""
    from trainer.predict import predict as run_predict

    def go() -> None:
        cfg = _config_from_checkpoint(checkpoint, config, with_device(overrides, device))
        ids = _scene_ids(scenes, cfg)
        result = run_predict(cfg, checkpoint, out or cfg.run_dir / "predictions", ids, classes,
                             clip_model, clip_pretrained, clip_checkpoint)
        console.print(f"wrote {result['scenes']} scenes to {result['out_dir']}")

    _run(go)


@app.command()
def figures(
    baseline: Annotated[Path, typer.Option(help="Checkpoint of the baseline (Table 2 row I); its run "
                                                "folder's metrics.jsonl gives Fig. 6's curve.")],
    full: Annotated[Path, typer.Option(help="Checkpoint of the full method (row V: both transformers); "
                                            "its store and validation scenes are drawn.")],
    out: Annotated[Path, typer.Option(help="Folder for fig3_refinement.png, fig4_predictions.png, "
                                           "fig6_epochs.png and fig7_tsne.png.")],
    reference: Annotated[Path | None, typer.Option(
        help="An `hicl-pipeline eval` JSON (MaskCLIP-3D) whose mIoU Fig. 6 draws as a line.")] = None,
    samples: Annotated[int, typer.Option(help="Voxels sampled per scene for Fig. 7's t-SNE maps.")] = 512,
) -> None:
    """The paper's Fig. 3 (refinement), 4 (predictions), 6 (mIoU per epoch) and 7 (t-SNE of features)."""
    from trainer.figures import paper_figures

    def go() -> None:
        if reference is not None and not reference.is_file():
            raise FileNotFoundError(f"reference {reference} does not exist")
        paths = paper_figures(baseline, full, out, reference, samples)
        console.print("figures written:\n" + "\n".join(f"  {path}" for path in paths), highlight=False,
                      soft_wrap=True)

    _run(go)


@app.command()
def view(
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="A best.pt/last.pt file: adds its prediction, its errors and the "
                             "open-vocabulary query; its saved config names the store.")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    scenes: Annotated[str | None, typer.Option(
        help="Comma-separated scene ids for the picker (default: the config's val_split); the "
             "page opens any other scene of the store by name.")] = None,
    host: Annotated[str, typer.Option(
        help="Address to listen on: 127.0.0.1 keeps the page to this machine, 0.0.0.0 opens it "
             "to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (the next free one when it is taken).")] = 8080,
    device: DeviceOpt = None,
) -> None:
    """Serve a web page of a store's scenes: layers, per-class IoU, frames and text queries."""
    import dataclasses
    import socket
    import time

    from trainer.view import open_source, serve

    if checkpoint is None and config is None:
        raise typer.BadParameter("give --checkpoint or --config (a YAML file or a preset name)")

    def go() -> None:
        opts = with_device(overrides, device)
        cfg = (_config_from_checkpoint(checkpoint, config, opts) if checkpoint is not None
               else load_config(config, opts))
        cfg = dataclasses.replace(cfg, num_workers=0, progress=False)
        source = open_source(cfg, checkpoint)
        ids = _scene_ids(scenes, cfg)
        server, _ = serve(source, ids, host, port)
        shown = socket.gethostname() if host == "0.0.0.0" else host
        url = f"http://{shown}:{server.get_port()}"
        console.print(f"viewer of {cfg.store_root} ({len(ids)} scenes): {url}", highlight=False,
                      soft_wrap=True)
        if host in ("127.0.0.1", "localhost"):
            console.print(f"open it in a browser on this machine; from another one: ssh -L "
                          f"{server.get_port()}:127.0.0.1:{server.get_port()} <this host>, then the "
                          "same URL there. Ctrl+C stops it.", highlight=False, soft_wrap=True)
        console.file.flush()  # the URL shows at once when stdout is a pipe
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.stop()

    _run(go)
