"""Open-vocabulary prediction: labels per point for any class list, plus coloured PLY files.

Only the 3D model is used (Sec. 3.4). A new class list gets its text embeddings from CLIP
through `pipeline.clip` (imported only then); without one, the checkpoint's classes are used.
"""
from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np
from plyfile import PlyData, PlyElement

from pipeline import store
from trainer.checkpoint import load
from trainer.config import ConfigError, TrainConfig
from trainer.engine import build_models, eval_loader, load_encoder, pick_device, predict_points


def parse_classes(classes: str) -> list[str]:
    """Class names from a file (one per line) or a comma-separated list."""
    path = Path(classes)
    text = path.read_text() if path.is_file() else classes.replace(",", "\n")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ConfigError(f"classes: no class names in {classes!r}")
    return names


def clip_text_embeddings(names: list[str], model_name: str, pretrained: str,
                         clip_checkpoint: str | None) -> np.ndarray:
    """Prompt-ensembled CLIP text embeddings f32[C, D] of `names`."""
    from pipeline.clip.model import load_clip
    from pipeline.clip.templates import PROMPT_TEMPLATES
    from pipeline.clip.text import text_embeddings

    model, tokenizer = load_clip(model_name, pretrained, clip_checkpoint, device="cpu")
    return text_embeddings(model, tokenizer, names, list(PROMPT_TEMPLATES))


def palette(num_classes: int) -> np.ndarray:
    """u8[C, 3] well-separated colours (golden-ratio hues)."""
    rgb = [colorsys.hsv_to_rgb((0.61803398875 * c) % 1.0, 0.65, 0.95) for c in range(num_classes)]
    return (np.asarray(rgb) * 255).round().astype(np.uint8).reshape(num_classes, 3)


def write_ply(path: Path, points: np.ndarray, labels: np.ndarray, colors: np.ndarray) -> None:
    """Binary PLY with x, y, z, red, green, blue and label per vertex."""
    vertex = np.empty(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"),
                                           ("green", "u1"), ("blue", "u1"), ("label", "i2")])
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    vertex["label"] = labels
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))


def predict(cfg: TrainConfig, checkpoint_path: Path, out_dir: Path, scenes: list[str],
            classes: str | None = None, clip_model: str = "ViT-B-16", clip_pretrained: str = "openai",
            clip_checkpoint: str | None = None) -> dict[str, Any]:
    """Write `<scene>.labels.npy` (i16 per point) and `<scene>.ply` per scene, and classes.txt."""
    saved = load(checkpoint_path)
    if classes is None:
        names, text = list(saved["class_names"]), saved["text"].numpy()
    else:
        names = parse_classes(classes)
        text = clip_text_embeddings(names, clip_model, clip_pretrained, clip_checkpoint)
    width = saved["signature"]["embed_dim"]
    if text.shape[1] != width:
        raise ConfigError(f"classes: CLIP {clip_model} gives {text.shape[1]}-d text embeddings but "
                          f"the 3D model outputs {width}-d features; use the CLIP it was trained with")
    device = pick_device(cfg.device)
    models = build_models(cfg, device, text, names)
    load_encoder(models, checkpoint_path, saved)
    models.train(False)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "classes.txt").write_text("\n".join(names) + "\n")
    colours = palette(len(names))
    counts = np.zeros(len(names), dtype=np.int64)
    for batch in eval_loader(cfg, scenes, len(names)):
        labels = predict_points(models, batch.to(device)).cpu().numpy().astype(np.int16)
        for b, scene in enumerate(batch.scenes):
            lo, hi = batch.point_offsets[b].item(), batch.point_offsets[b + 1].item()
            scene_labels = labels[lo:hi]
            np.save(out_dir / f"{scene}.labels.npy", scene_labels)
            points = store.open_scene(cfg.store_root, "scenes", scene)["points"][...]
            write_ply(out_dir / f"{scene}.ply", points, scene_labels, colours[scene_labels])
            counts += np.bincount(scene_labels, minlength=len(names))
    return {"out_dir": str(out_dir), "scenes": len(scenes), "classes": names,
            "points_per_class": dict(zip(names, counts.tolist(), strict=True))}
