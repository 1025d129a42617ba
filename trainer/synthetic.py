"""Procedural rooms written straight into the stage stores the trainer reads (tests, benchmarks).

Each room is a point cloud sampled on the floor, four walls and a few box-shaped objects; the
colours depend on the class, every point is paired once (pairs = every point), pseudo- and
refined labels are the ground truth with an optional fraction of random labels, geometric sets
are 0.5 m patches of each planar face, and the text embeddings are random orthonormal vectors.
This bypasses the preprocessing pipeline, which has its own synthetic dataset, but not its
contract: every write is checked against ScanNet's declared record and stage outputs, so a room
holds what a preprocessed ScanNet scene holds (one blank frame, no faces: a point cloud).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import contract, store

CLASS_NAMES = ("wall", "floor", "table", "chair", "cabinet")
BASE_COLORS = np.array([[200, 200, 185], [125, 85, 50], [60, 120, 200], [200, 60, 60],
                        [80, 170, 80]], dtype=np.float32)
FINGERPRINT = "synthetic-room"
PATCH = 0.5  # metres: geometric sets are PATCH x PATCH pieces of each face


def _sample_rect(rng: np.random.Generator, origin: np.ndarray, u: np.ndarray, v: np.ndarray,
                 density: float) -> tuple[np.ndarray, np.ndarray]:
    """Points uniformly on the parallelogram origin + a*u + b*v, and their patch index."""
    lu, lv = np.linalg.norm(u), np.linalg.norm(v)
    n = max(1, int(rng.poisson(density * lu * lv)))
    a, b = rng.random(n), rng.random(n)
    points = origin + a[:, None] * u + b[:, None] * v
    cols = max(1, int(np.ceil(lv / PATCH)))
    patch = (a * lu // PATCH).astype(np.int64) * cols + (b * lv // PATCH).astype(np.int64)
    return points.astype(np.float32), patch


def _box_faces(lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The five visible faces (no bottom) of an axis-aligned box as (origin, u, v)."""
    dx, dy, dz = np.diag(hi - lo)
    return [(np.array([lo[0], lo[1], hi[2]]), dx, dy),
            (lo, dx, dz), (lo + dy, dx, dz), (lo, dy, dz), (lo + dx, dy, dz)]


def room(rng: np.random.Generator, size: tuple[float, float, float] = (3.0, 3.0, 2.0),
         density: float = 400.0) -> dict[str, np.ndarray]:
    """One room: points f32[N,3], colors u8[N,3], normals f32[N,3], labels i16[N], set_id i32[N]."""
    w, length, h = size
    ex, ey, ez = np.eye(3)
    faces: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = [
        (1, np.zeros(3), ex * w, ey * length),
        (0, np.zeros(3), ex * w, ez * h), (0, ey * length, ex * w, ez * h),
        (0, np.zeros(3), ey * length, ez * h), (0, ex * w, ey * length, ez * h)]
    objects = {2: (1.2, 0.7, 0.75), 3: (0.45, 0.45, 0.5), 4: (0.5, 0.9, 1.3)}
    for label, extent in objects.items():
        extent = np.array(extent)
        lo = np.array([rng.uniform(0.1, w - extent[0] - 0.1), rng.uniform(0.1, length - extent[1] - 0.1), 0.0])
        faces += [(label, *face) for face in _box_faces(lo, lo + extent)]
    points, normals, labels, sets = [], [], [], []
    next_set = 0
    for label, origin, u, v in faces:
        p, patch = _sample_rect(rng, origin, u, v, density)
        points.append(p)
        normal = np.cross(u, v)
        normals.append(np.broadcast_to(normal / np.linalg.norm(normal), p.shape).astype(np.float32))
        labels.append(np.full(len(p), label, dtype=np.int16))
        sets.append(next_set + patch)
        next_set += int(patch.max()) + 1
    points_all = np.concatenate(points)
    labels_all = np.concatenate(labels)
    colors = BASE_COLORS[labels_all] + rng.normal(0.0, 12.0, size=(len(points_all), 3))
    _, set_id = np.unique(np.concatenate(sets), return_inverse=True)
    return {"points": points_all, "colors": np.clip(colors, 0, 255).astype(np.uint8),
            "normals": np.concatenate(normals), "labels": labels_all, "set_id": set_id.astype(np.int32)}


def blank_frames(hw: tuple[int, int] = (2, 2)) -> dict:
    """A scene record's frame part with one blank frame (the rooms are not rendered)."""
    return {"color": np.zeros((1, *hw, 3), np.uint8), "depth": np.zeros((1, *hw), np.float32),
            "world_to_camera": np.eye(4)[None], "intrinsics": np.eye(3)[None],
            "frame_ids": np.zeros(1, np.int32), "image_hw": list(hw), "skipped_frames": {}}


def orthonormal_text(num_classes: int, dim: int, seed: int) -> np.ndarray:
    """f32[C, D] random orthonormal rows (stand-in CLIP text embeddings)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, num_classes)))
    return q.T.astype(np.float32)


def write_synthetic_store(store_root: str | Path, num_scenes: int = 1, seed: int = 0,
                          embed_dim: int = 32, label_noise: float = 0.0,
                          size: tuple[float, float, float] = (3.0, 3.0, 2.0),
                          density: float = 400.0) -> list[str]:
    """Write scenes, pairs, pseudo, refine, vote, geosets and text stages; returns the scene ids."""
    stages = ("scenes", "pairs", "pseudo", "refine", "vote", "geosets", "text")
    for stage in stages:
        store.reset_stage(store_root, stage, {"fingerprint": FINGERPRINT})

    def write(stage: str, scene: str, outputs: dict) -> None:
        store.write_scene(store_root, stage, scene, outputs, FINGERPRINT,
                          declared=contract.declared(stage, "scannet"))

    write("text", store.GLOBAL, {"embeddings": orthonormal_text(len(CLASS_NAMES), embed_dim, seed),
                                 "class_names": list(CLASS_NAMES)})
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(num_scenes):
        scene = f"room{i:03d}"
        r = room(rng, size, density)
        n = len(r["points"])
        noisy = rng.random(n) < label_noise
        pseudo = np.where(noisy, rng.integers(0, len(CLASS_NAMES), n), r["labels"]).astype(np.uint8)
        outputs = {
            "scenes": {"points": r["points"], "colors": r["colors"], "normals": r["normals"],
                       "labels": r["labels"], "has_labels": True, "faces": np.zeros((0, 3), np.int32),
                       **blank_frames(), "raw_files": []},
            "pairs": {"point": np.arange(n, dtype=np.int32),
                      "pixel": np.zeros((n, 2), dtype=np.int16),
                      "frame_offsets": np.array([0, n], dtype=np.int64)},
            "pseudo": {"label": pseudo, "confidence": np.ones(n, dtype=np.float16)},
            "refine": {"label": pseudo.copy()},
            "vote": {"label": pseudo.copy()},
            "geosets": {"set_id": r["set_id"], "num_sets": int(r["set_id"].max()) + 1, "method": "patches"},
        }
        for stage, arrays in outputs.items():
            write(stage, scene, arrays)
        scenes.append(scene)
    return scenes
