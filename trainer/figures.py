"""The paper's figures on the synthetic benchmark, as PNG files (matplotlib figures, no pyplot).

- Fig. 3: pair labels voted onto points (pseudo, refined) next to ground truth, top-down;
- Fig. 4: predictions of two models next to ground truth, top-down and oblique point views;
- Fig. 6: validation mIoU against training epoch (mean and spread over seeds when given);
- Fig. 7: t-SNE maps of point features for two scenes and their concatenation.

The `plot_*` functions take plain arrays and write one PNG each; the functions after them
gather those arrays from stores, checkpoints and run logs, and `main` writes a run's figures.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from trainer.config import TrainConfig
from trainer.runlog import epoch_records

if TYPE_CHECKING:
    from trainer.engine import Models

# ScanNet's benchmark colours of its 20 classes (data/classes/scannet20.txt order), RGB.
SCANNET20_COLORS = np.array([
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
    (196, 156, 148), (23, 190, 207), (247, 182, 210), (219, 219, 141), (255, 127, 14),
    (158, 218, 229), (44, 160, 44), (112, 128, 144), (227, 119, 194), (82, 84, 163),
], dtype=np.uint8)
UNLABELLED = np.array([0.85, 0.85, 0.85])  # points without a label (ignore, or seen in no frame)
DPI = 100


def class_colors(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """f32[N, 3] in [0, 1]: the class colour per label, light grey for -1 (or out of range)."""
    labels = np.asarray(labels, dtype=np.int64)
    palette = SCANNET20_COLORS[np.arange(num_classes) % len(SCANNET20_COLORS)] / 255.0
    valid = (labels >= 0) & (labels < num_classes)
    colors = np.tile(UNLABELLED, (len(labels), 1))
    colors[valid] = palette[labels[valid]]
    return colors.astype(np.float32)


def room_axes(points: np.ndarray) -> np.ndarray:
    """f64[N, 3]: points centred and turned about z so that their xy bounding box is smallest
    (for a room: its walls along x and y); angles searched in steps of half a degree."""
    centred = np.asarray(points, np.float64) - np.asarray(points, np.float64).mean(0)
    xy = centred[:: max(1, len(centred) // 5000), :2]
    angles = np.radians(np.arange(0.0, 90.0, 0.5))
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    x, y = c * xy[:, 0] - s * xy[:, 1], s * xy[:, 0] + c * xy[:, 1]
    best = angles[np.argmin(np.ptp(x, axis=1) * np.ptp(y, axis=1))]
    c, s = np.cos(best), np.sin(best)
    turned = centred.copy()
    turned[:, 0], turned[:, 1] = c * centred[:, 0] - s * centred[:, 1], s * centred[:, 0] + c * centred[:, 1]
    return turned


def project(points: np.ndarray, view: str, cut: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """2D screen coordinates f64[N, 2] and the indices of the points to draw, back to front.

    "top-down" looks straight down (higher points drawn last); "oblique" looks from 45 degrees
    of azimuth and 35 degrees above the horizon (nearer points drawn last) and leaves out the
    points within `cut` metres of the two bounding-box sides nearest to the eye (the near
    walls, which would hide the room). The room is first centred and turned to its axes.
    """
    turned = room_axes(points)
    if view == "top-down":
        return turned[:, :2], np.argsort(turned[:, 2], kind="stable")
    if view != "oblique":
        raise ValueError(f"unknown view {view!r} (top-down, oblique)")
    azimuth, elevation = np.radians(45.0), np.radians(35.0)  # the eye's direction from the room
    eye = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                    np.sin(elevation)])
    right = np.cross([0.0, 0.0, 1.0], eye)
    right /= np.linalg.norm(right)
    up = np.cross(eye, right)
    near = (turned[:, 0] > turned[:, 0].max() - cut) | (turned[:, 1] > turned[:, 1].max() - cut)
    kept = np.flatnonzero(~near)
    return np.stack([turned @ right, turned @ up], axis=1), kept[np.argsort(turned[kept] @ eye, kind="stable")]


def class_legend(fig: Figure, class_ids: Sequence[int], class_names: Sequence[str],
                 extra: Sequence[Line2D] = ()) -> None:
    """A legend of coloured markers for `class_ids` below the panels."""
    handles = [Line2D([], [], marker="o", linestyle="", markersize=8,
                      markerfacecolor=class_colors(np.array([c]), len(class_names))[0],
                      markeredgecolor="none", label=class_names[c]) for c in class_ids]
    handles += list(extra)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, 0.0))


def present_classes(label_maps: Mapping[str, np.ndarray], num_classes: int) -> list[int]:
    """Sorted class ids that occur in any of the label maps."""
    found = set()
    for labels in label_maps.values():
        labels = np.asarray(labels)
        found.update(int(c) for c in np.unique(labels[(labels >= 0) & (labels < num_classes)]))
    return sorted(found)


def plot_label_views(path: Path, points: np.ndarray, label_maps: Mapping[str, np.ndarray],
                     class_names: Sequence[str], title: str,
                     views: Sequence[str] = ("top-down",), point_size: float = 3.0,
                     panel_inches: float = 4.0) -> Path:
    """One panel per (view, label map): the scene's points coloured by class (Fig. 3, Fig. 4)."""
    num_classes = len(class_names)
    projected = {view: project(points, view) for view in views}
    rows, cols = len(views), len(label_maps)
    classes = present_classes(label_maps, num_classes)
    legend_rows = -(-len(classes) // 7)
    fig = Figure(figsize=(panel_inches * cols, panel_inches * rows + 0.6 + 0.3 * legend_rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, (name, labels) in enumerate(label_maps.items()):
        colors = class_colors(labels, num_classes)
        for r, view in enumerate(views):
            xy, order = projected[view]
            ax = axes[r, c]
            ax.scatter(xy[order, 0], xy[order, 1], c=colors[order], s=point_size, marker="o",
                       linewidths=0, rasterized=True)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if r == 0:
                ax.set_title(name, fontsize=11)
            if c == 0 and rows > 1:
                ax.set_ylabel(view, fontsize=11)
    fig.suptitle(title, fontsize=12)
    class_legend(fig, classes, class_names)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * legend_rows, 1, 0.97))
    return save(fig, path)


def plot_feature_maps(path: Path, grid: Sequence[Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]],
                      row_titles: Sequence[str], col_titles: Sequence[str],
                      class_names: Sequence[str], title: str, scene_names: Sequence[str] = (),
                      panel_inches: float = 3.2) -> Path:
    """t-SNE panels (Fig. 7): grid[row][col] = (xy f[N,2], class i64[N], scene index i64[N]).

    Points are coloured by class; scene index 0 is drawn as dots, 1 as triangles, so the
    concatenated row shows whether both scenes' features of a class fall together.
    """
    num_classes = len(class_names)
    markers = ("o", "^", "s", "D")
    rows, cols = len(grid), len(grid[0])
    fig = Figure(figsize=(panel_inches * cols, panel_inches * rows + 1.2))
    axes = fig.subplots(rows, cols, squeeze=False)
    classes: set[int] = set()
    for r, row in enumerate(grid):
        for c, (xy, labels, scene) in enumerate(row):
            ax = axes[r, c]
            colors = class_colors(labels, num_classes)
            for s in np.unique(scene):
                keep = scene == s
                ax.scatter(xy[keep, 0], xy[keep, 1], c=colors[keep], s=7,
                           marker=markers[int(s) % len(markers)], linewidths=0)
            classes.update(int(v) for v in np.unique(labels[labels >= 0]))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=10)
    extra = [Line2D([], [], marker=markers[i], linestyle="", color="0.3", label=name)
             for i, name in enumerate(scene_names)]
    fig.suptitle(title, fontsize=12)
    class_legend(fig, sorted(classes), class_names, extra)
    legend_rows = -(-(len(classes) + len(extra)) // 7)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * legend_rows, 1, 0.97))
    return save(fig, path)


@dataclasses.dataclass
class Curve:
    """mIoU (in [0, 1]) per epoch; `spread` is a standard deviation over seeds when known."""

    epochs: list[int]
    miou: list[float]
    spread: list[float] | None = None


def plot_miou_curves(path: Path, curves: Mapping[str, Curve], title: str,
                     references: Mapping[str, float] | None = None,
                     phase_starts: Sequence[int] = ()) -> Path:
    """Validation mIoU (%) against epoch (Fig. 6), with reference levels and phase boundaries."""
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.subplots()
    for name, curve in curves.items():
        epochs, miou = np.asarray(curve.epochs), 100 * np.asarray(curve.miou)
        (line,) = ax.plot(epochs, miou, marker="o", markersize=4, label=name)
        if curve.spread is not None:
            spread = 100 * np.asarray(curve.spread)
            ax.fill_between(epochs, miou - spread, miou + spread, color=line.get_color(), alpha=0.2)
    for name, value in (references or {}).items():
        ax.axhline(100 * value, linestyle="--", color="0.4", linewidth=1)
        ax.text(0.01, 100 * value, f"{name}: {100 * value:.1f}", transform=ax.get_yaxis_transform(),
                fontsize=8, color="0.3", va="bottom")
    starts: dict[int, list[str]] = {}
    for epoch, name in zip(phase_starts, ("Eq. 4", "Eq. 8"), strict=False):
        starts.setdefault(epoch, []).append(name)
    for epoch, names in starts.items():
        ax.axvline(epoch - 0.5, linestyle=":", color="0.6", linewidth=1)
        ax.text(epoch - 0.5, 0.02, f" {', '.join(names)} from here", transform=ax.get_xaxis_transform(),
                rotation=90, fontsize=8, color="0.4", va="bottom")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation mIoU (%)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return save(fig, path)


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """f64[N, 2] t-SNE map of L2-normalised features (perplexity 30, PCA initialisation).

    One thread: a few thousand points take seconds, and OpenMP threads that wait for busy
    cores on a shared machine spin far longer than that.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    perplexity = min(30.0, (len(unit) - 1) / 3)
    with threadpool_limits(limits=1):
        return TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto",
                    random_state=seed).fit_transform(unit.astype(np.float32))


# ---- gathering arrays from stores, checkpoints and run logs ----

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
    from trainer.config import from_dict

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
    """Voxels of a scene (no augmentation) and up to `num_samples` of them drawn per set as in
    training, among voxels with a pair and a ground-truth label; their ground-truth class."""
    from pipeline import store
    from trainer.data import majority_label, point_features, voxelize
    from trainer.sampling import sample_by_set

    arrays = store.open_scene(cfg.store_root, "scenes", scene)
    points = arrays["points"][...].astype(np.float32)
    gt = arrays["labels"][...].astype(np.int64)
    coords, unique, inverse = voxelize(points, cfg.voxel_size)
    labelled = (gt >= 0) & (gt < num_classes)
    voxel_gt = majority_label(inverse[labelled], gt[labelled], len(coords), num_classes)
    paired = np.zeros(len(coords), bool)
    paired[inverse[store.open_scene(cfg.store_root, "pairs", scene)["point"][...]]] = True
    set_id = store.open_scene(cfg.store_root, "geosets", scene)["set_id"][...][unique]
    chosen = sample_by_set(set_id, paired & (voxel_gt >= 0), num_samples,
                           np.random.default_rng(seed))
    feats = point_features({"colors": arrays["colors"][...]}, lidar=False)[unique]
    return {"coords": coords, "feats": feats, "sample": chosen, "label": voxel_gt[chosen]}


def correlation_features(checkpoint_path: Path, samples: Sequence[dict[str, np.ndarray]]
                         ) -> dict[str, list[np.ndarray]]:
    """Per scene the sampled voxels' features: the 3D model's f_m, and, where the model has
    them, the intra-scene transformer's output (Eq. 3) and the inter-scene transformer's
    output over both scenes' samples together (Eq. 7, fed the intra output as in training)."""
    import torch

    from trainer.data import collate
    from trainer.models.correlation import inter_scene, intra_scene

    models, _ = load_models(checkpoint_path)
    batch = collate([{"scene": str(i), "coords": s["coords"], "feats": s["feats"]}
                     for i, s in enumerate(samples)])
    counts = [len(s["sample"]) for s in samples]
    index = torch.cat([torch.from_numpy(s["sample"]) + batch.offsets[i] for i, s in enumerate(samples)])
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.int64)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        aggregated = out["3d"] = models.encoder(batch.coords, batch.feats)[index]
        if models.correlation.intra is not None:
            aggregated = out["intra"] = intra_scene(models.correlation.intra, aggregated, offsets)
        if models.correlation.inter is not None:
            out["inter"] = inter_scene(models.correlation.inter, aggregated)
    return {k: [part.numpy() for part in torch.split(v, counts)] for k, v in out.items()}


def tsne_grid(columns: Mapping[str, Sequence[np.ndarray]], labels: Sequence[np.ndarray],
              seed: int = 0) -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Rows: scene 1, scene 2, both concatenated; columns: the feature kinds of `columns`."""
    rows: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    scene_of = [np.full(len(lab), i) for i, lab in enumerate(labels)]
    for i in range(len(labels)):
        rows.append([(tsne_2d(f[i], seed), labels[i], scene_of[i]) for f in columns.values()])
    both = np.concatenate(labels)
    rows.append([(tsne_2d(np.concatenate(f), seed), both,
                  np.concatenate(scene_of)) for f in columns.values()])
    return rows


def demo_figures(run_dir: Path, samples_per_scene: int = 512, seed: int = 0) -> list[Path]:
    """Fig. 3, 4, 6 and 7 of the demo run folder (`baseline/`, `full/`, maskclip3d.json)."""
    from pipeline import store
    from trainer.data import read_text, resolve_scenes
    from trainer.schedule import phase_starts

    baseline, full = run_dir / "baseline" / "last.pt", run_dir / "full" / "last.pt"
    cfg = run_config(full)
    _, names = read_text(cfg.store_root, cfg.classes)
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
