"""Command line: ``python -m pipeline.datasets.synthetic <dataset> --out DIR ...``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.datasets.synthetic.fusion import FusionParams
from pipeline.datasets.synthetic.rig import IMAGE_HW
from pipeline.datasets.synthetic.scannet import FRAMES, SPACING, generate_scannet

VOXEL = FusionParams.voxel

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Generate synthetic datasets in the layout of the real ones.")


@app.callback()
def main() -> None:
    """Synthetic dataset generators (one subcommand per dataset layout)."""


def _check_val(val: int | None, scenes: int) -> None:
    """The validation list cannot hold more scenes than are generated."""
    if val is not None and val > scenes:
        raise typer.BadParameter(f"--val {val} exceeds --scenes {scenes}", param_hint="--val")


def _progress(dataset: str) -> Progress:
    """One bar over the generated scenes, naming the scene being written."""
    return Progress(TextColumn(f"[bold]{dataset}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[scene]}"))


@app.command()
def scannet(
    out: Annotated[Path, typer.Option(help="Dataset root to write (scans/ and split lists go here).")],
    scenes: Annotated[int, typer.Option(min=1, help="Number of rooms.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed; scene i depends only on (seed, i).")] = 0,
    frames: Annotated[int, typer.Option(min=1, help="RGB-D frames kept (exported) per room.")] = FRAMES,
    val: Annotated[int | None, typer.Option(min=0, help="Scenes in the validation list (default: a quarter).")] = None,
    spacing: Annotated[float, typer.Option(min=0.01, max=0.1, help="Vertex spacing of the true surfaces (m).")] = SPACING,
    voxel: Annotated[float, typer.Option(min=0.01, max=0.1, help="TSDF voxel of the fused scan mesh (m).")] = VOXEL,
    jobs: Annotated[int, typer.Option(min=1, help="Rooms generated at once, in separate processes.")] = 1,
) -> None:
    """Procedural rooms scanned with a simulated RGB-D sensor and fused into meshes, written as a ScanNet v2 export."""
    _check_val(val, scenes)
    start = time.perf_counter()
    with _progress("scannet") as progress:
        task = progress.add_task("rooms", total=scenes, scene="")
        fusion = FusionParams(voxel=voxel, truncation=2 * voxel)
        ids = generate_scannet(out, scenes, seed, frames, val=val, spacing=spacing, fusion=fusion, jobs=jobs,
                               on_scene=lambda s: progress.update(task, advance=1, scene=s))
    typer.echo(f"wrote {len(ids)} scenes to {out} in {time.perf_counter() - start:.1f} s")


@app.command()
def nuscenes(
    out: Annotated[Path, typer.Option(help="Dataset root to write (<version>/, samples/, sweeps/, lidarseg/, maps/).")],
    scenes: Annotated[int, typer.Option(min=1, help="Number of drives (v1.0-mini has names for 10).")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed; scene i depends only on (seed, i).")] = 0,
    keyframes: Annotated[int, typer.Option(min=1, help="Keyframe samples per drive (2 Hz).")] = 6,
    sweeps: Annotated[int, typer.Option(min=0, help="LiDAR sweeps before each keyframe.")] = 1,
    version: Annotated[str, typer.Option(help="Version name: v1.0-mini or v1.0-trainval.")] = "v1.0-mini",
    val: Annotated[int | None, typer.Option(min=0, help="Drives in the val split (default: a quarter).")] = None,
    height: Annotated[int, typer.Option(min=16, help="Camera image height (the field of view stays nuScenes').")] = IMAGE_HW[0],
    width: Annotated[int, typer.Option(min=16, help="Camera image width.")] = IMAGE_HW[1],
) -> None:
    """Procedural street drives with ray-cast LiDAR and six cameras, written as a nuScenes dataset."""
    from pipeline.datasets.synthetic.nuscenes import generate_nuscenes  # imports nuscenes-devkit

    _check_val(val, scenes)
    start = time.perf_counter()
    with _progress("nuscenes") as progress:
        task = progress.add_task("drives", total=scenes, scene="")
        try:
            names = generate_nuscenes(out, scenes, seed, keyframes, sweeps=sweeps, version=version, val=val,
                                      image_hw=(height, width),
                                      on_scene=lambda s: progress.update(task, advance=1, scene=s))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"wrote {len(names)} drives ({', '.join(names)}) to {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    app(prog_name="python -m pipeline.datasets.synthetic")
