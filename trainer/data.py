"""Streams scenes from the stage stores, voxelises, augments and collates batches for ME.

One item is one scene, read array by array from lazy Zarr handles opened in the worker that
reads it (no store is read whole; at most one scene per item is in memory). Training items
carry the pairs mapped to voxels (each pair's point -> its voxel, keeping the pair's label)
and the voxels sampled for the correlation transformers; evaluation items carry the
point -> voxel inverse map and ground truth for full-resolution metrics. With `soft_targets`
(beyond the paper) training items also carry each voxel's summed soft per-set targets
(trainer/targets.py) and the sampled voxels' normalised ones.

A sampled voxel's label is the majority label of its pairs (ties -> lowest class id); voxels
without pairs have no label and are never sampled. A voxel's set id is its representative
point's (the one ME's quantisation keeps). Determinism: item randomness (augmentation,
sampling) comes from `default_rng([seed, epoch, position, index])` and the scene order of an epoch
from `seed + epoch`, so any epoch can be replayed exactly, e.g. after `--resume`.

Evaluation items also mark the points that have at least one pair (`observed`), when the store
holds the scene's pairs, so that metrics can be restricted to what some frame saw.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline import contract, store
from pipeline.errors import PipelineError
from pipeline.labelsets import read_eval_labels, text_class_set
from trainer.channels import point_features
from trainer.config import ConfigError, TrainConfig
from trainer.me_compat import ME
from trainer.sampling import sample_by_set
from trainer.targets import voxel_target_mass
from trainer.transforms import apply, augmentations


def read_text(store_root: str, stage: str) -> tuple[np.ndarray, list[str]]:
    """Text embeddings f32[C, D] and class names of a global text stage."""
    embeddings = np.asarray(store.open_global(store_root, stage)["embeddings"][...], np.float32)
    names = store.stage_attrs(store_root, stage, store.GLOBAL).get("class_names")
    names = list(names) if names else [f"class{c}" for c in range(len(embeddings))]
    if len(names) != len(embeddings):
        raise ConfigError(f"classes: stage '{stage}' has {len(embeddings)} embeddings "
                          f"but {len(names)} class names")
    return embeddings, names


def resolve_scenes(split: str | list[str], store_root: str, stage: str, key: str) -> list[str]:
    """Scene ids of a split: explicit list, split file, or 'all' done scenes of `stage`."""
    if isinstance(split, list):
        scenes = list(split)
    elif split == "all":
        scenes = store.done_scenes(store_root, stage)
    else:
        path = Path(split)
        if not path.is_file():
            raise ConfigError(f"{key}: '{split}' is neither 'all', a list of scenes nor a file")
        lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
        scenes = [line for line in lines if line]
    if not scenes:
        raise ConfigError(f"{key}: no scenes (stage '{stage}' under {store_root})")
    return scenes


def training_scenes(cfg: TrainConfig) -> list[str]:
    """The scenes a run trains on: its train_split, where 'all' means the scenes its labels cover."""
    stage = "scenes" if cfg.label_stage == "gt" else cfg.label_stage
    return resolve_scenes(cfg.train_split, cfg.store_root, stage, "train_split")


def check_scenes(store_root: str, scenes: list[str]) -> list[str]:
    """`scenes` when the store holds each finished (its done list read once); else a one-line
    PipelineError naming the first missing one and a few it does hold."""
    done = store.done_scenes(store_root, "scenes")
    held = set(done)
    for scene in scenes:
        if scene not in held:
            some = ", ".join(done[:5]) + (", ..." if len(done) > 5 else "")
            raise PipelineError(f"scene {scene!r} is not in the store {store_root} "
                                f"({len(done)} scenes{': ' + some if done else ''})")
    return scenes


def voxelize(points: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel coords i32[V,3], representative point per voxel i64[V], point -> voxel i64[N]."""
    coords, unique, inverse = ME.utils.sparse_quantize(
        np.ascontiguousarray(points, dtype=np.float32), quantization_size=voxel_size,
        return_index=True, return_inverse=True)
    return coords.numpy().astype(np.int32), unique.numpy().astype(np.int64), inverse.numpy().astype(np.int64)


def majority_label(pair_voxel: np.ndarray, pair_label: np.ndarray, num_voxels: int,
                   num_classes: int) -> np.ndarray:
    """i64[V]: most frequent pair label per voxel (lowest id on ties), -1 without pairs."""
    counts = np.bincount(pair_voxel * num_classes + pair_label,
                         minlength=num_voxels * num_classes).reshape(num_voxels, num_classes)
    return np.where(counts.any(1), counts.argmax(1), -1)


# The arrays the trainer reads, by stage (besides the dataset's channels): checked against the
# contract stages.yaml declares (pipeline.contract) when a dataset is built, so an array renamed
# or dropped there fails here in one line, not in a loader worker.
STORE_READS: dict[str, tuple[str, ...]] = {
    "scenes": ("points",), "pairs": ("point",), "pseudo": ("label",), "refine": ("label",),
    "vote": ("label",), "geosets": ("set_id",)}


def check_store_reads(dataset: str, channels: Sequence[str]) -> None:
    """ConfigError naming the first array the trainer reads that the stages file does not declare."""
    try:
        for stage, names in STORE_READS.items():
            source = stage == "scenes"
            for name in (*names, *channels) if source else names:
                contract.output_field(stage, name, dataset if source else None)
    except PipelineError as exc:
        raise ConfigError(f"store contract: {exc}") from exc


class SceneDataset(Dataset):
    """Voxelised scenes indexed by (epoch, position in epoch, scene index): reproducible draws."""

    def __init__(self, cfg: TrainConfig, scenes: Sequence[str], num_classes: int, train: bool):
        self.cfg, self.scenes, self.num_classes, self.train = cfg, list(scenes), num_classes, train
        self.channels = cfg.channels  # read once here: workers need not read stages.yaml
        check_store_reads(cfg.dataset, self.channels)
        self.class_set = text_class_set(cfg.store_root, cfg.text_stage)  # ground truth's class set, read once
        self.transforms = augmentations(cfg) if train else []
        self._handles: dict[tuple[str, str], dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.scenes)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": {}}  # each worker opens its own handles

    def _read(self, stage: str, scene: str, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The named arrays of one scene, opened lazily and read one by one."""
        key = (stage, scene)
        if key not in self._handles:
            self._handles[key] = store.open_scene(self.cfg.store_root, stage, scene)
        handles = self._handles[key]
        missing = [n for n in names if n not in handles]
        if missing:
            raise KeyError(f"scene {scene}: stage '{stage}' has no array {missing}")
        return {n: handles[n][...] for n in names}

    def _pairs(self, scene: str, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Point index and label of each supervising pair with a valid label."""
        if self.cfg.label_stage == "gt":
            point = np.flatnonzero(labels >= 0)
            label = labels[point].astype(np.int64)
        else:
            point = self._read("pairs", scene, ["point"])["point"].astype(np.int64)
            label = self._read(self.cfg.label_stage, scene, ["label"])["label"].astype(np.int64)
            if len(label) != len(point):
                raise ValueError(f"scene {scene}: {len(label)} labels for {len(point)} pairs")
        keep = (label >= 0) & (label < self.num_classes)
        return point[keep], label[keep]

    def label_counts(self) -> np.ndarray:
        """i64[C]: the supervising pair labels of every scene, counted per class (class balance)."""
        counts = np.zeros(self.num_classes, np.int64)
        for scene in self.scenes:
            labels = None
            if self.cfg.label_stage == "gt":
                labels = read_eval_labels(self.cfg.store_root, scene, self.class_set)
            counts += np.bincount(self._pairs(scene, labels)[1], minlength=self.num_classes)
        self._handles.clear()
        return counts

    def _observed(self, scene: str, num_points: int) -> np.ndarray | None:
        """bool[N]: points with at least one pair; None when the store has no pairs for the scene."""
        try:
            point = self._read("pairs", scene, ["point"])["point"]
        except PipelineError:
            return None
        return np.bincount(point.astype(np.int64), minlength=num_points) > 0

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        epoch, position, index = key
        cfg, scene = self.cfg, self.scenes[index]
        names = ["points", *self.channels]
        arrays = self._read("scenes", scene, names)
        if not self.train or cfg.label_stage == "gt":  # ground truth in the text stage's class set
            arrays["labels"] = read_eval_labels(cfg.store_root, scene, self.class_set)
        rng = np.random.default_rng([cfg.seed, epoch, position, index])
        points = arrays["points"].astype(np.float32)
        points = apply(points, self.transforms, rng)
        coords, unique, inverse = voxelize(points, cfg.voxel_size)
        item: dict[str, Any] = {
            "scene": scene, "coords": coords, "feats": point_features(arrays, self.channels)[unique]}
        if not self.train:
            item["inverse"] = inverse
            item["unique"] = unique  # each voxel's representative point (its set id in figures)
            item["point_labels"] = arrays["labels"].astype(np.int64)
            observed = self._observed(scene, len(points))
            if observed is not None:
                item["observed"] = observed
            return item
        point, label = self._pairs(scene, arrays.get("labels"))
        item["pair_voxel"], item["pair_label"] = inverse[point], label
        samples = cfg.uses_samples
        if not (samples or cfg.soft_targets):
            return item
        set_id = self._read("geosets", scene, ["set_id"])["set_id"]
        mass = None
        if cfg.soft_targets:
            mass = voxel_target_mass(inverse[point], set_id[point], label, len(coords), self.num_classes)
            item["voxel_target"] = mass
        if samples:
            voxel_label = majority_label(inverse[point], label, len(coords), self.num_classes)
            chosen = sample_by_set(set_id[unique], voxel_label >= 0, cfg.samples_per_scene, rng)
            item["sample_voxel"], item["sample_label"] = chosen, voxel_label[chosen]
            if mass is not None:
                chosen_mass = mass[chosen]
                item["sample_target"] = chosen_mass / chosen_mass.sum(1, keepdims=True)
        return item


class EpochBatchSampler(Sampler):
    """Batches of (epoch, position, scene index); set `epoch` before iterating. Order = f(seed, epoch).

    With `world` > 1 processes it yields rank `rank`'s share of each global batch of
    `batch_size` scenes (scene k of the batch goes to rank k mod world, with the position one
    process would give it), so the ranks together see exactly one process's batches.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, seed: int, loop: int = 1,
                 rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.shuffle, self.seed, self.loop = size, batch_size, shuffle, seed, loop
        self.rank, self.world = rank, world
        self.epoch = 1

    def order(self) -> np.ndarray:
        """Scene indices of the current epoch (`loop` passes, each shuffled if training)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        passes = [rng.permutation(self.size) if self.shuffle else np.arange(self.size)
                  for _ in range(self.loop)]
        return np.concatenate(passes)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order()
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            yield [(self.epoch, start + k, int(i)) for k, i in enumerate(chunk)][self.rank::self.world]

    def __len__(self) -> int:
        return -(-self.size * self.loop // self.batch_size)


# Every key an item may carry and how collate joins the scenes' arrays (Pointcept's offsets
# convention): "list" one entry per scene, "coords" ME's batched coordinates, "cat" concatenated,
# "voxel"/"point" concatenated and shifted by the scene's first voxel/point (indices into the
# batch). A new array is one entry here and one line in `SceneDataset.__getitem__`.
ITEM_KEYS: dict[str, str] = {
    "scene": "list",                  # scene id
    "coords": "coords",               # i32[V, 3] -> i32[V, 4]: batch index, x, y, z
    "feats": "cat",                   # f32[V, F]
    "pair_voxel": "voxel",            # i64[P] training: each pair's voxel
    "pair_label": "cat",              # i64[P]
    "sample_voxel": "voxel",          # i64[S] training: the voxels sampled for the transformers
    "sample_label": "cat",            # i64[S]
    "voxel_target": "cat",            # f32[V, C] summed soft targets of each voxel's pairs
    "sample_target": "cat",           # f32[S, C] soft target of each sampled voxel
    "inverse": "voxel",               # i64[N] evaluation: point -> voxel
    "unique": "point",                # i64[V] evaluation: each voxel's representative point
    "point_labels": "cat",            # i64[N]
    "observed": "cat",                # bool[N] point has a pair (absent: unknown for some scene)
}
# Offsets vectors i64[B+1] a batch carries, each counting the rows of one item key per scene.
OFFSETS: dict[str, str] = {"offsets": "coords", "sample_offsets": "sample_voxel", "point_offsets": "inverse"}


class Batch(dict):
    """B scenes concatenated by offsets (no padding): the items' keys (ITEM_KEYS) and the offsets
    of OFFSETS; keys read as attributes too, a declared key the scenes did not all carry as None,
    an undeclared one (a misspelt name) as an AttributeError naming it."""

    def __getattr__(self, key: str) -> Any:
        if key in ITEM_KEYS or key in OFFSETS:
            return self.get(key)
        close = difflib.get_close_matches(key, [*ITEM_KEYS, *OFFSETS], n=1)
        raise AttributeError(f"a batch has no key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")
                             + "; the keys it may hold are declared in trainer/data.py: ITEM_KEYS, OFFSETS")

    @property
    def scenes(self) -> list[str]:
        """The scene ids, in batch order (the items' `scene`)."""
        return self["scene"]

    def to(self, device: torch.device) -> Batch:
        """Tensors moved to `device`."""
        return Batch({k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                      for k, v in self.items()})


def _offsets(sizes: Sequence[int]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))


def _join(items: Sequence[dict[str, Any]], key: str, offsets: dict[str, torch.Tensor]) -> Any:
    """One key of every item joined by its rule in ITEM_KEYS."""
    rule = ITEM_KEYS[key]
    if rule == "list":
        return [item[key] for item in items]
    parts = [torch.from_numpy(item[key]) for item in items]
    if rule == "coords":
        return ME.utils.batched_coordinates(parts, dtype=torch.int32)
    if rule in ("voxel", "point"):
        shift = offsets["offsets" if rule == "voxel" else "point_offsets"]
        parts = [p + shift[b] for b, p in enumerate(parts)]
    return torch.cat(parts)


def collate(items: Sequence[dict[str, Any]]) -> Batch | None:
    """Concatenate scenes: every key all of them carry, joined by its ITEM_KEYS rule, and the
    offsets of OFFSETS. None for no scenes: a rank's empty share of a last batch smaller than the
    world size."""
    if not items:
        return None
    keys = [key for key in items[0] if all(key in item for item in items)]
    if unknown := set().union(*items) - ITEM_KEYS.keys():
        raise KeyError(f"collate: item keys {sorted(unknown)} are not declared in ITEM_KEYS")
    offsets = {name: _offsets([len(item[key]) for item in items])
               for name, key in OFFSETS.items() if key in keys}
    return Batch({**{key: _join(items, key, offsets) for key in keys}, **offsets})


def make_loader(cfg: TrainConfig, dataset: SceneDataset, shuffle: bool, loop: int = 1,
                rank: int = 0, world: int = 1) -> tuple[DataLoader, EpochBatchSampler]:
    """A DataLoader over `dataset` with worker prefetching, and its epoch-aware batch sampler."""
    sampler = EpochBatchSampler(len(dataset), cfg.batch_size, shuffle, cfg.seed, loop, rank, world)
    workers = cfg.num_workers
    loader = DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        prefetch_factor=cfg.prefetch_factor if workers else None, persistent_workers=workers > 0)
    return loader, sampler
