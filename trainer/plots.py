"""Drawing the paper's figures as PNG files (matplotlib figures, no pyplot): plain arrays in.

- Fig. 3 and 4: point clouds coloured by class, top-down and oblique (`plot_label_views`);
- Fig. 6: validation mIoU against training epoch, with a spread over seeds (`plot_miou_curves`);
- Fig. 7: t-SNE maps of point features of two scenes and of both together (`plot_feature_maps`,
  fed by `tsne_grid`).

What they draw is loaded in trainer/figures.py.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

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
                     phase_starts: Sequence[int] = (), legend_below: bool = False) -> Path:
    """Validation mIoU (%) against epoch (Fig. 6), with reference levels and phase boundaries;
    `legend_below` puts the legend under the axes (many or long names: it covers no curve)."""
    fig = Figure(figsize=(7.0, 4.5 + (0.25 * len(curves) if legend_below else 0.0)))
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
    for row, (epoch, names) in enumerate(starts.items()):  # above the axes, one line each: never on a curve
        ax.axvline(epoch - 0.5, linestyle=":", color="0.6", linewidth=1)
        ax.text(epoch - 0.5, 1.01 + 0.05 * row, f"{', '.join(names)} from here", transform=ax.get_xaxis_transform(),
                fontsize=8, color="0.4", ha="left", va="bottom")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation mIoU (%)")
    ax.set_title(title, fontsize=11, pad=6 + 16 * len(starts))
    ax.grid(alpha=0.3)
    if legend_below:
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    else:
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
