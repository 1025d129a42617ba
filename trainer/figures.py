"""The paper's figures for a baseline and a full-method checkpoint (`hicl-train figures`): what
they show, loaded from stores, checkpoints and the runs' logs.

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
from typing import TYPE_CHECKING

import numpy as np

from trainer.config import ConfigError, TrainConfig, from_dict
from trainer.plots import Curve, plot_feature_maps, plot_label_views, plot_miou_curves, tsne_grid
from trainer.runlog import epoch_records

if TYPE_CHECKING:
    from trainer.engine import Models


def epoch_curve(run_dir: Path) -> Curve:
    """Validation mIoU per evaluated epoch from `<run>/metrics.jsonl` (a resumed epoch: last)."""
    records = epoch_records(run_dir)
    epochs = sorted(e for e, r in records.items() if "miou" in r)
    return Curve(epochs, [float(records[e]["miou"]) for e in epochs])


def load_models(checkpoint_path: Path) -> tuple[Models, TrainConfig]:
    """A checkpoint's 3D model and transformers on the CPU, in eval mode, and its config."""
    import torch

    from trainer.checkpoint import load
    from trainer.engine import build_models, load_encoder

    state = load(checkpoint_path)
    cfg = dataclasses.replace(from_dict(state["config"]), num_workers=0, device="cpu", progress=False)
    models = build_models(cfg, torch.device("cpu"))
    load_encoder(models, checkpoint_path, state)
    models.correlation.load_state_dict(state["correlation"])
    models.train(False)
    return models, cfg


def predict_scene(models: Models, cfg: TrainConfig, scene: str) -> np.ndarray:
    """i64[N] predicted class per point of `scene` by loaded models (`load_models`)."""
    import torch

    from trainer.engine import eval_loader, predict_points

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


def correlation_features(models: Models, samples: Sequence[dict[str, np.ndarray]]
                         ) -> dict[str, list[np.ndarray]]:
    """Per scene the sampled voxels' features of loaded models (`load_models`): the 3D model's f_m
    (`3d`) and, where the model has
    them, the intra-scene transformer's output (`intra`, Eq. 3) and the inter-scene transformer's
    output over both scenes' samples together (`inter`, Eq. 7, fed the intra output), computed
    as in training."""
    import torch

    from trainer.data import collate
    from trainer.terms import TermInputs

    batch = collate([{"scene": str(i), "coords": s["coords"], "feats": s["feats"],
                      "sample_voxel": s["sample"], "sample_label": s["label"]}
                     for i, s in enumerate(samples)])
    with torch.no_grad():
        inputs = TermInputs(models.text, models.encoder(batch.coords, batch.feats), batch, models.correlation)
        out = {"3d": inputs.sampled, **inputs.aggregated}
    counts = [len(s["sample"]) for s in samples]
    return {k: [part.numpy() for part in torch.split(v, counts)] for k, v in out.items()}


LABELS = ("baseline (row I)", "full method (row V)")


def check_runs(baseline: Path, full: Path) -> None:
    """One line for what the figures cannot be drawn without: a checkpoint, its run's metrics."""
    for path in (baseline, full):
        if not path.is_file():
            raise ConfigError(f"checkpoint {path} does not exist")
    for path in (baseline, full):
        if not (path.parent / "metrics.jsonl").is_file():
            raise ConfigError(f"{path.parent / 'metrics.jsonl'} is missing: Fig. 6 reads the run's "
                              "validation mIoU per epoch next to its checkpoint")


def paper_figures(baseline: Path, full: Path, out_dir: Path, reference: Path | None = None,
                  samples_per_scene: int = 512, seed: int = 0, labels: Sequence[str] = LABELS
                  ) -> list[Path]:
    """Fig. 3, 4, 6 and 7 of a baseline and a full-method checkpoint into `out_dir`, on the full
    run's store and validation scenes (Fig. 3 and 4: the first one; Fig. 7: the first two).
    `reference` is an `hicl-pipeline eval` JSON whose mIoU Fig. 6 draws as a line (MaskCLIP-3D)."""
    from pipeline import store
    from pipeline.labels.maskclip3d import voted_point_labels
    from trainer.data import resolve_scenes
    from trainer.schedule import phase_starts

    check_runs(baseline, full)
    (base_models, base_cfg), (full_models, cfg) = load_models(baseline), load_models(full)
    if not (cfg.intra_scene and cfg.inter_scene):
        raise ConfigError(f"{full} was trained without the intra- and inter-scene transformers; "
                          "--full takes a full-method checkpoint (Fig. 7 shows their features)")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = full_models.class_names
    scenes = resolve_scenes(cfg.val_split, cfg.store_root, "scenes", "val_split")
    if len(scenes) < 2:
        raise ConfigError(f"Fig. 7 needs two validation scenes, the full run's val_split has {len(scenes)}")
    scene = scenes[0]
    arrays = store.open_scene(cfg.store_root, "scenes", scene)
    points, gt = arrays["points"][...], arrays["labels"][...].astype(np.int64)
    base_label, full_label = labels
    written = [plot_label_views(
        out_dir / "fig3_refinement.png", points,
        {"pseudo-labels (voted onto points)": voted_point_labels(cfg.store_root, "pseudo", scene, len(points), len(names)),
         "refined labels (intra-set vote)": voted_point_labels(cfg.store_root, "refine", scene, len(points), len(names)),
         "ground truth": gt},
        names, f"Fig. 3: intra-set label refinement, {scene} (top-down; grey: no pair / ignore)")]
    written.append(plot_label_views(
        out_dir / "fig4_predictions.png", points,
        {base_label: predict_scene(base_models, base_cfg, scene), full_label: predict_scene(full_models, cfg, scene),
         "ground truth": gt},
        names, f"Fig. 4: predictions on validation room {scene} (grey: ignore label)",
        views=("top-down", "oblique")))
    references = {"MaskCLIP-3D": json.loads(reference.read_text())["miou"]} if reference else {}
    written.append(plot_miou_curves(
        out_dir / "fig6_epochs.png",
        {base_label: epoch_curve(baseline.parent), full_label: epoch_curve(full.parent)},
        f"Fig. 6: validation mIoU per epoch ({len(scenes)} validation rooms)", references, phase_starts(cfg)))
    pair = scenes[:2]
    samples = [scene_samples(cfg, s, len(names), samples_per_scene, seed) for s in pair]
    base_feats = correlation_features(base_models, samples)["3d"]
    full_feats = correlation_features(full_models, samples)
    short = base_label.split(" (")[0], full_label.split(" (")[0]
    columns = {f"{short[0]}: 3D model": base_feats,
               f"{short[1]}: 3D model": full_feats["3d"],
               f"{short[1]}: intra-scene transformer": full_feats["intra"],
               f"{short[1]}: inter-scene transformer": full_feats["inter"]}
    grid = tsne_grid(columns, [s["label"] for s in samples], seed)
    written.append(plot_feature_maps(
        out_dir / "fig7_tsne.png", grid, [*pair, "both scenes"],
        list(columns), names, "Fig. 7: t-SNE of sampled voxel features, coloured by ground truth",
        scene_names=pair))
    return written
