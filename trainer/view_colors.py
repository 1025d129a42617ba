"""Per-point colours and legends of the viewer's layers: plain arrays in, u8 RGB and HTML out."""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps

from pipeline.metrics import confusion_matrix, iou_per_class, unlabelled
from trainer.plots import SCANNET20_COLORS, UNLABELLED, class_colors

CORRECT = np.array([60, 170, 75], dtype=np.uint8)
WRONG = np.array([215, 45, 45], dtype=np.uint8)
NO_LABEL = (UNLABELLED * 255).round().astype(np.uint8)
SCORE_MAP = "viridis"


def label_colors(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """u8[N, 3]: the class colour of each point (the figures' palette), grey for no label."""
    return (class_colors(labels, num_classes) * 255).round().astype(np.uint8)


def set_colors(set_id: np.ndarray) -> np.ndarray:
    """u8[N, 3]: one seeded random colour per geometric set, so that neighbouring sets differ."""
    palette = np.random.default_rng(0).integers(40, 236, (int(set_id.max()) + 1, 3), dtype=np.uint8)
    return palette[np.asarray(set_id, np.int64)]


def error_colors(labels: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """u8[N, 3]: green where a label equals ground truth, red where not, grey where either is missing."""
    colors = np.tile(NO_LABEL, (len(labels), 1))
    scored = (gt >= 0) & (labels >= 0)
    colors[scored & (labels == gt)] = CORRECT
    colors[scored & (labels != gt)] = WRONG
    return colors


def score_colors(scores: np.ndarray) -> np.ndarray:
    """u8[N, 3]: scores stretched over the scene's range and mapped through viridis (bright = high)."""
    low, high = float(scores.min()), float(scores.max())
    unit = (scores - low) / (high - low) if high > low else np.zeros_like(scores)
    return (colormaps[SCORE_MAP](unit)[:, :3] * 255).round().astype(np.uint8)


def intensity_colors(intensity: np.ndarray) -> np.ndarray:
    """u8[N, 3]: LiDAR return intensity as grey levels, stretched to its 1st-99th percentile."""
    low, high = np.percentile(intensity, [1, 99]) if len(intensity) else (0.0, 1.0)
    unit = np.clip((intensity - low) / max(high - low, 1e-6), 0, 1)
    return np.repeat((60 + 195 * unit).round().astype(np.uint8)[:, None], 3, axis=1)


def _swatch(rgb: Sequence[int]) -> str:
    r, g, b = (int(v) for v in rgb)
    return (f'<span style="display:inline-block;width:0.9em;height:0.9em;margin-right:0.4em;'
            f'background:rgb({r},{g},{b});vertical-align:middle"></span>')


def labels_legend(labels: np.ndarray, gt: np.ndarray | None, class_names: Sequence[str]) -> str:
    """HTML table of the classes a layer or ground truth holds: colour, name, points and this
    scene's IoU against ground truth (none for ground truth itself), mIoU last."""
    num = len(class_names)
    counts = np.bincount(labels[(labels >= 0) & (labels < num)].astype(np.int64), minlength=num)
    scoring = gt is not None and gt is not labels
    rows, iou = [], np.full(num, np.nan)
    if scoring:
        iou = iou_per_class(confusion_matrix(labels, gt, num), unlabelled(labels, gt, num))
        present = np.flatnonzero((counts > 0) | np.isfinite(iou))
    else:
        present = np.flatnonzero(counts > 0)
    palette = SCANNET20_COLORS[np.arange(num) % len(SCANNET20_COLORS)]
    for c in present:
        score = f"{100 * iou[c]:.1f}" if np.isfinite(iou[c]) else "-"
        rows.append(f"<tr><td>{_swatch(palette[c])}{html.escape(class_names[c])}</td>"
                    f"<td style='text-align:right'>{counts[c]:,}</td>"
                    + (f"<td style='text-align:right'>{score}</td>" if scoring else "") + "</tr>")
    head = "<tr><th>class</th><th>points</th>" + ("<th>IoU</th>" if scoring else "") + "</tr>"
    foot = ""
    if scoring and np.isfinite(iou).any():
        foot = (f"<tr><td><b>mIoU (this scene)</b></td><td></td>"
                f"<td style='text-align:right'><b>{100 * np.nanmean(iou):.1f}</b></td></tr>")
    return _table(head + "".join(rows) + foot)


def errors_legend(labels: np.ndarray, gt: np.ndarray) -> str:
    """HTML legend of an errors layer: right, wrong and unscored points, and the accuracy."""
    scored = (gt >= 0) & (labels >= 0)
    right = int((scored & (labels == gt)).sum())
    wrong = int(scored.sum()) - right
    accuracy = f"{100 * right / max(right + wrong, 1):.1f}%"
    rows = [(CORRECT, "equals ground truth", right), (WRONG, "differs", wrong),
            (NO_LABEL, "no label or ignored", len(labels) - right - wrong)]
    body = "".join(f"<tr><td>{_swatch(rgb)}{name}</td><td style='text-align:right'>{n:,}</td></tr>"
                   for rgb, name, n in rows)
    return _table(body + f"<tr><td><b>accuracy</b></td><td style='text-align:right'><b>{accuracy}</b></td></tr>")


def score_legend(title: str, scores: np.ndarray) -> str:
    """HTML colour bar of a similarity layer, from the scene's lowest to its highest score."""
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in
                      (np.asarray(colormaps[SCORE_MAP](np.linspace(0, 1, 6)))[:, :3] * 255).round().astype(int))
    return (f"<div style='font-size:0.85em'>{html.escape(title)}</div>"
            f"<div style='height:0.8em;background:linear-gradient(to right, {stops})'></div>"
            f"<div style='display:flex;justify-content:space-between;font-size:0.8em'>"
            f"<span>{scores.min():.3f}</span><span>cosine similarity</span><span>{scores.max():.3f}</span></div>")


def note_legend(text: str) -> str:
    """HTML of a one-line note under the layer picker."""
    return f"<div style='font-size:0.85em'>{html.escape(text)}</div>"


def _table(rows: str) -> str:
    return f"<table style='font-size:0.8em;width:92%;margin-left:0.5em'>{rows}</table>"
