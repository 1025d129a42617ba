"""A simulated VLM: structured noisy pseudo-labels from ground truth, for quality benchmarks.

It replaces the features + pseudo stages with noise shaped like MaskCLIP's errors, applied in
this order to each pair's ground-truth class (ignore-labelled points get a random class):
scene-level look-alike confusions (a class read as a look-alike in the whole scene), view-level
flips (one object-ish region, a class within a voxel cell, mislabelled in one frame),
patch-sized blobs (16x16 px squares of one frame given one random class) and per-pixel errors.
Randomness is a hash of (seed, a digest of the scene's points and frame ids, the element's key),
so the output is deterministic per scene and independent of scheduling. Never a default source
for real data.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.classes import read_class_names
from pipeline.errors import SceneError

# Look-alikes among the ScanNet 20 classes (data/classes/scannet20.txt ids): (a, b) means
# "a is read as b". Wall and floor, which a VLM rarely misses as a whole, have none.
SCANNET_LOOKALIKES: tuple[tuple[int, int], ...] = (
    (6, 12), (12, 6),    # table - desk
    (2, 19), (19, 2),    # cabinet - otherfurniture
    (13, 8), (8, 13),    # curtain - window
    (5, 4), (4, 5),      # sofa - chair
    (7, 0),              # door -> wall
    (10, 0),             # picture -> wall
    (11, 6),             # counter -> table
    (15, 13),            # shower curtain -> curtain
    (9, 2),              # bookshelf -> cabinet
    (14, 2),             # refrigerator -> cabinet
    (3, 5),              # bed -> sofa
    (17, 11),            # sink -> counter
    (18, 16), (16, 17),  # bathtub -> toilet, toilet -> sink
)
# Look-alikes among the nuScenes 16 classes (data/classes/nuscenes16.txt ids).
NUSCENES_LOOKALIKES: tuple[tuple[int, int], ...] = (
    (1, 5), (5, 1),      # bicycle - motorcycle
    (3, 9), (9, 3),      # car - truck
    (2, 9), (8, 9),      # bus -> truck, trailer -> truck
    (4, 9),              # construction vehicle -> truck
    (7, 0),              # traffic cone -> barrier
    (0, 14),             # barrier -> manmade
    (11, 10), (12, 10),  # other flat -> driveable surface, sidewalk -> driveable surface
    (10, 12),            # driveable surface -> sidewalk
    (13, 15), (15, 13),  # terrain - vegetation
)
# A class set's look-alikes by its size, unless given explicitly (other sizes: none).
LOOKALIKES_BY_CLASS_COUNT = {20: SCANNET_LOOKALIKES, 16: NUSCENES_LOOKALIKES}

_SALT_IGNORE, _SALT_SCENE, _SALT_VIEW, _SALT_BLOB, _SALT_OFFSET, _SALT_PIXEL = range(1, 7)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective scramble of u64 values."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_keys(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """u64 hash of a seed and integer keys (broadcast), each key folded in after a scramble."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray([seed], dtype=np.uint64))
        for key in keys:
            h = _mix(h ^ np.asarray(key, dtype=np.int64).astype(np.uint64))
    return h


def uniform(h: np.ndarray) -> np.ndarray:
    """f64 in [0, 1) from the top 53 bits of a u64 hash."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def scene_seed(seed: int, points: np.ndarray, frame_ids: np.ndarray | None) -> int:
    """Per-scene seed: the user seed mixed with a digest of the scene's points and frame ids."""
    digest = hashlib.blake2b(np.ascontiguousarray(points).tobytes(), digest_size=8)
    if frame_ids is not None:
        digest.update(np.ascontiguousarray(frame_ids).tobytes())
    value = int.from_bytes(digest.digest(), "little") ^ (int(seed) & 0xFFFFFFFFFFFFFFFF)
    return value & 0x7FFFFFFFFFFFFFFF


def partner_table(lookalikes: Sequence[Sequence[int]], num_classes: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per class the classes it is read as, padded (i64[C,m]), and how many (i64[C])."""
    partners: list[list[int]] = [[] for _ in range(num_classes)]
    for a, b in lookalikes:
        if not (0 <= a < num_classes and 0 <= b < num_classes) or a == b:
            raise ValueError(f"look-alike pair ({a}, {b}) is not two classes below {num_classes}")
        partners[a].append(b)
    width = max(1, max(len(p) for p in partners))
    table = np.zeros((num_classes, width), np.int64)
    for c, p in enumerate(partners):
        table[c, :len(p)] = p
    return table, np.array([len(p) for p in partners], np.int64)


def confuse(classes: np.ndarray, u: np.ndarray, table: np.ndarray, counts: np.ndarray,
            num_classes: int) -> np.ndarray:
    """A wrong class per element: a look-alike of its class when it has one, else any other."""
    n = counts[classes]
    lookalike = table[classes, np.minimum((u * np.maximum(n, 1)).astype(np.int64),
                                          np.maximum(n - 1, 0))]
    other = (classes + 1 + (u * (num_classes - 1)).astype(np.int64)) % num_classes
    return np.where(n > 0, lookalike, other)


def simulated_labels(gt: np.ndarray, pair_xyz: np.ndarray, frame: np.ndarray,
                     pixel: np.ndarray, point: np.ndarray, seed: int, params: Mapping[str, Any],
                     lookalikes: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Noisy labels i64[P] from ground truth i64[P] (-1 ignore) of pairs, see module docstring.

    ``params`` are the simulated-points variant's (stages.yaml); ``lookalikes`` (a, b) pairs
    default to LOOKALIKES_BY_CLASS_COUNT[num_classes].
    """
    c = int(params["num_classes"])
    if lookalikes is None:
        lookalikes = LOOKALIKES_BY_CLASS_COUNT.get(c, ())
    table, counts = partner_table(lookalikes, c)
    ignored = gt < 0
    label = np.where(ignored, (uniform(hash_keys(seed, _SALT_IGNORE, frame, point)) * c)
                     .astype(np.int64), gt)
    # scene level: class a read as one of its look-alikes throughout the scene
    classes = np.arange(c)
    h_scene = hash_keys(seed, _SALT_SCENE, classes)
    swapped = (uniform(h_scene) < params["scene_confusion_prob"]) & (counts > 0)
    scene_map = np.where(swapped, confuse(classes, uniform(_mix(h_scene)), table, counts, c),
                         classes)
    label = np.where(ignored, label, scene_map[label])
    # view level: a (frame, class, voxel cell) region flipped to a look-alike
    cell = np.floor(pair_xyz / float(params["region_size"])).astype(np.int64)
    h_view = hash_keys(seed, _SALT_VIEW, frame, gt, cell[:, 0], cell[:, 1], cell[:, 2])
    flip = uniform(h_view) < params["view_flip_prob"]
    label = np.where(flip, confuse(label, uniform(_mix(h_view)), table, counts, c), label)
    # blob level: a patch-sized square of one frame given one random class
    size = int(params["blob_size"])
    offset = (uniform(hash_keys(seed, _SALT_OFFSET, frame, np.arange(2)[:, None])) * size
              ).astype(np.int64)
    by = (pixel[:, 0] + offset[0]) // size
    bx = (pixel[:, 1] + offset[1]) // size
    h_blob = hash_keys(seed, _SALT_BLOB, frame, by, bx)
    blob = uniform(h_blob) < params["blob_prob"]
    label = np.where(blob, (uniform(_mix(h_blob)) * c).astype(np.int64), label)
    # pixel level: an independent wrong class
    h_pixel = hash_keys(seed, _SALT_PIXEL, frame, point)
    wrong = uniform(h_pixel) < params["pixel_error"]
    other = (label + 1 + (uniform(_mix(h_pixel)) * (c - 1)).astype(np.int64)) % c
    return np.where(wrong, other, label)


def simulated_pseudo_stage(inputs: Mapping[str, Mapping[str, np.ndarray]],
                           params: Mapping[str, Any]) -> dict[str, Any]:
    """Pseudo labels u8[P] of every pair simulated from ground truth; confidence is always 1."""
    scene, pairs = inputs["scenes"], inputs["pairs"]
    num_classes = int(params["num_classes"])
    if not 1 < num_classes <= 256:
        raise ValueError(f"num_classes must be in 2..256, got {num_classes}")
    points = np.asarray(scene["points"])
    labels = np.asarray(scene["labels"]).astype(np.int64)
    if labels.size and labels.max() >= num_classes:
        raise SceneError(f"ground truth has class {labels.max()} but num_classes={num_classes}")
    point = np.asarray(pairs["point"]).astype(np.int64)
    offsets = np.asarray(pairs["frame_offsets"])
    frame = np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64), np.diff(offsets))
    seed = scene_seed(params["seed"], points, scene.get("frame_ids"))
    label = simulated_labels(labels[point], points[point], frame,
                             np.asarray(pairs["pixel"]).astype(np.int64), point, seed, params)
    return {"label": label.astype(np.uint8),
            "confidence": np.ones(label.shape[0], np.float16)}


def simulated_text_stage(inputs: Mapping[str, Mapping[str, np.ndarray]],
                         params: Mapping[str, Any]) -> dict[str, Any]:
    """Class prototypes f32[C,D] of the simulated VLM: seeded Gaussian directions, L2-normalised.

    They stand in for CLIP text embeddings wherever the simulated pseudo-labels stand in for
    MaskCLIP's, so the benchmark measures the method and not the conditioning of an untrained
    text tower (a random tiny CLIP's class embeddings have a median cosine of about 0.9).
    """
    names = read_class_names(params["classes"])
    dim = int(params["dim"])
    if dim < len(names):
        raise ValueError(f"dim {dim} must be at least the number of classes {len(names)}")
    rng = np.random.default_rng(int(params["seed"]))
    prototypes = rng.standard_normal((len(names), dim))
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    return {"embeddings": prototypes.astype(np.float32), "class_names": names}
