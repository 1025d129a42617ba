"""Trainer split lists of a nuScenes version: the keyframe sample tokens of its train and val scenes.

``python -m pipeline.datasets.nuscenes_splits --data-root /data/nuscenes --version v1.0-trainval``
writes ``data/splits/nuscenes_train.txt`` and ``nuscenes_val.txt`` (what the ``nuscenes`` trainer
preset reads), one token per line: the pipeline's scene ids, from the devkit's scene splits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.datasets.base import DATA_DIR
from pipeline.datasets.nuscenes import NuScenesReader
from pipeline.errors import PipelineError
from pipeline.stages import stage_params

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)


def write_split_lists(data_root: Path, version: str, out: Path) -> dict[str, int]:
    """Write ``nuscenes_{train,val}.txt`` under ``out``; return the number of samples per split."""
    reader = NuScenesReader(data_root, stage_params("scenes", {"version": version}, dataset="nuscenes"))
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "val"):
        tokens = reader.scene_ids([split])
        (out / f"nuscenes_{split}.txt").write_text("".join(f"{t}\n" for t in tokens))
        counts[split] = len(tokens)
    return counts


@app.command()
def main(
    data_root: Annotated[Path, typer.Option(help="nuScenes root (holds <version>/, samples/, ...).")],
    version: Annotated[str, typer.Option(help="Devkit version folder.")] = "v1.0-trainval",
    out: Annotated[Path, typer.Option(help="Folder for the split lists.")] = DATA_DIR / "splits",
) -> None:
    """Write the keyframe sample tokens of the train and val scenes, one file per split."""
    try:
        counts = write_split_lists(data_root, version, out)
    except PipelineError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(", ".join(f"{split}: {n} samples" for split, n in counts.items()) + f" -> {out}")


if __name__ == "__main__":
    app(prog_name="python -m pipeline.datasets.nuscenes_splits")
