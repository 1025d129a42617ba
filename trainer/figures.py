"""The paper's figures of a demo run folder: what they show, loaded from stores, checkpoints and
run logs, and the command that writes them (`python -m trainer.figures RUN_DIR`).

- Fig. 3: pair labels voted onto points (pseudo, refined) next to ground truth, top-down;
- Fig. 4: predictions of two models next to ground truth, top-down and oblique point views;
- Fig. 6: validation mIoU against training epoch;
- Fig. 7: t-SNE maps of sampled voxel features for two scenes and their concatenation.

Scenes are read, voxelised and sampled as in training (`SceneDataset`, `sample_by_set`), and the
transformers run as in `compute_losses` (`TermInputs`); trainer/plots.py draws the figures.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from trainer.config import TrainConfig, from_dict
from trainer.plots import Curve, plot_feature_maps, plot_label_views, plot_miou_curves, tsne_grid
from trainer.runlog import epoch_records

if TYPE_CHECKING:
    from trainer.engine import Models


def epoch_curve(run_dir: Path) -> Curve:
    """Validation mIoU per evaluated epoch from `<run>/metrics.jsonl` (a resumed epoch: last)."""
    records = epoch_records(run_dir)
    epochs = sorted(e for e, r in records.items() if "miou" in r)
    return Curve(epochs, [float(records[e]["miou"]) for e in epochs])


def voted_labels(store_root: str, stage: str, scene: str, num_points: int,
                 num_classes: int) -> np.ndarray:
    """i16[N]: each point's majority pair label of `stage` (pseudo or refine), -1 if unpaired."""
    from pipeline import store
    from pipeline.labels.maskclip3d import point_majority

    point = store.open_scene(store_root, "pairs", scene)["point"][...]
    label = store.open_scene(store_root, stage, scene)["label"][...]
    return point_majority(label, point, num_points, num_classes)


def run_config(checkpoint_path: Path, **changes: Any) -> TrainConfig:
    """The TrainConfig saved in a checkpoint, with `changes` applied."""
    from trainer.checkpoint import load

    return dataclasses.replace(from_dict(load(checkpoint_path)["config"]), **changes)


def load_models(checkpoint_path: Path) -> tuple[Models, TrainConfig]:
    """A checkpoint's 3D model and transformers on the CPU, in eval mode, and its config."""
    import torch

    from trainer.engine import build_models, load_encoder

    cfg = run_config(checkpoint_path, num_workers=0, device="cpu", progress=False)
    models = build_models(cfg, torch.device("cpu"))
    state = load_encoder(models, checkpoint_path)
    models.correlation.load_state_dict(state["correlation"])
    models.train(False)
    return models, cfg


def predict_scene(checkpoint_path: Path, scene: str) -> np.ndarray:
    """i64[N] predicted class per point of `scene` by a checkpoint's 3D model."""
    import torch

    from trainer.engine import eval_loader, predict_points

    models, cfg = load_models(checkpoint_path)
    (batch,) = list(eval_loader(cfg, [scene], len(models.class_names)))
    return predict_points(models, batch.to(torch.device("cpu"))).numpy()


def scene_samples(cfg: TrainConfig, scene: str, num_classes: int, num_samples: int, seed: int
                  ) -> dict[str, np.ndarray]:
    """A scene's voxels as evaluation reads them (no augmentation) and up to `num_samples` of them
    drawn per set as in training, among voxels with a pair and a ground-truth label; their
    ground-truth class."""
    from pipeline import store
    from trainer.data import SceneDataset, majority_label
    from trainer.sampling import sample_by_set

    item = SceneDataset(cfg, [scene], num_classes, train=False)[(0, 0, 0)]
    if "observed" not in item:
        raise ValueError(f"scene {scene}: the store under {cfg.store_root} has no pairs for it")
    coords, inverse, gt = item["coords"], item["inverse"], item["point_labels"]
    labelled = (gt >= 0) & (gt < num_classes)
    voxel_gt = majority_label(inverse[labelled], gt[labelled], len(coords), num_classes)
    paired = np.bincount(inverse[item["observed"]], minlength=len(coords)) > 0
    set_id = store.open_scene(cfg.store_root, "geosets", scene)["set_id"][...][item["unique"]]
    chosen = sample_by_set(set_id, paired & (voxel_gt >= 0), num_samples,
                           np.random.default_rng(seed))
    return {"coords": coords, "feats": item["feats"], "sample": chosen, "label": voxel_gt[chosen]}


def correlation_features(checkpoint_path: Path, samples: Sequence[dict[str, np.ndarray]]
                         ) -> dict[str, list[np.ndarray]]:
    """Per scene the sampled voxels' features: the 3D model's f_m (`3d`) and, where the model has
    them, the intra-scene transformer's output (`intra`, Eq. 3) and the inter-scene transformer's
    output over both scenes' samples together (`inter`, Eq. 7, fed the intra output), computed
    as in training."""
    import torch

    from trainer.data import collate
    from trainer.terms import TermInputs

    models, cfg = load_models(checkpoint_path)
    batch = collate([{"scene": str(i), "coords": s["coords"], "feats": s["feats"],
                      "sample_voxel": s["sample"], "sample_label": s["label"]}
                     for i, s in enumerate(samples)])
    with torch.no_grad():
        inputs = TermInputs(models.text, models.encoder(batch.coords, batch.feats), batch, models.correlation)
        out = {"3d": inputs.sampled, **inputs.aggregated}
    counts = [len(s["sample"]) for s in samples]
    return {k: [part.numpy() for part in torch.split(v, counts)] for k, v in out.items()}


def demo_figures(run_dir: Path, samples_per_scene: int = 512, seed: int = 0) -> list[Path]:
    """Fig. 3, 4, 6 and 7 of the demo run folder (`baseline/`, `full/`, maskclip3d.json)."""
    from pipeline import store
    from trainer.data import read_text, resolve_scenes
    from trainer.schedule import phase_starts

    baseline, full = run_dir / "baseline" / "last.pt", run_dir / "full" / "last.pt"
    cfg = run_config(full)
    _, names = read_text(cfg.store_root, cfg.text_stage)
    scenes = resolve_scenes(cfg.val_split, cfg.store_root, "scenes", "val_split")
    scene = scenes[0]
    arrays = store.open_scene(cfg.store_root, "scenes", scene)
    points, gt = arrays["points"][...], arrays["labels"][...].astype(np.int64)
    written = [plot_label_views(
        run_dir / "fig3_refinement.png", points,
        {"pseudo-labels (voted onto points)": voted_labels(cfg.store_root, "pseudo", scene, len(points), len(names)),
         "refined labels (intra-set vote)": voted_labels(cfg.store_root, "refine", scene, len(points), len(names)),
         "ground truth": gt},
        names, f"Fig. 3: intra-set label refinement, {scene} (top-down; grey: no pair / ignore)")]
    written.append(plot_label_views(
        run_dir / "fig4_predictions.png", points,
        {"baseline (row I)": predict_scene(baseline, scene), "full method (row V)": predict_scene(full, scene),
         "ground truth": gt},
        names, f"Fig. 4: predictions on validation room {scene} (grey: ignore label)",
        views=("top-down", "oblique")))
    references = {}
    if (run_dir / "maskclip3d.json").is_file():
        references["MaskCLIP-3D"] = json.loads((run_dir / "maskclip3d.json").read_text())["miou"]
    written.append(plot_miou_curves(
        run_dir / "fig6_epochs.png",
        {"baseline (row I)": epoch_curve(run_dir / "baseline"), "full method (row V)": epoch_curve(run_dir / "full")},
        f"Fig. 6: validation mIoU per epoch ({len(scenes)} validation rooms)", references, phase_starts(cfg)))
    pair = scenes[:2]
    if len(pair) < 2:
        raise ValueError(f"Fig. 7 needs two validation scenes, {cfg.val_split} has {len(pair)}")
    samples = [scene_samples(cfg, s, len(names), samples_per_scene, seed) for s in pair]
    base_feats = correlation_features(baseline, samples)["3d"]
    full_feats = correlation_features(full, samples)
    columns = {"baseline: 3D model (row I)": base_feats,
               "full: 3D model": full_feats["3d"],
               "full: intra-scene transformer": full_feats["intra"],
               "full: inter-scene transformer": full_feats["inter"]}
    grid = tsne_grid(columns, [s["label"] for s in samples], seed)
    written.append(plot_feature_maps(
        run_dir / "fig7_tsne.png", grid, [*pair, "both scenes"],
        list(columns), names, "Fig. 7: t-SNE of sampled voxel features, coloured by ground truth",
        scene_names=pair))
    return written


def main(run_dir: Annotated[Path, typer.Argument(help="The demo's run folder (holds baseline/ and full/).")],
         samples: Annotated[int, typer.Option(help="Voxels sampled per scene for the t-SNE maps.")] = 512) -> None:
    """Write the demo's figures into its run folder and name them."""
    for run in ("baseline", "full"):
        for name in ("last.pt", "metrics.jsonl"):
            if not (run_dir / run / name).is_file():
                raise typer.BadParameter(f"{run_dir / run / name} is missing: the folder must hold the "
                                         "baseline/ and full/ runs of `make demo`", param_hint="RUN_DIR")
    paths = demo_figures(run_dir, samples)
    print("figures written:\n" + "\n".join(f"  {path}" for path in paths))


if __name__ == "__main__":
    typer.run(main)
