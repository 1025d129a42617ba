"""Batches are dicts collated by offsets: one generic collate over declared keys (an index key
shifted into the batch, an offsets vector per counted key), a new array declared once; the
augmentations are a list of transforms giving the points the old single matrix gave."""
from __future__ import annotations

import numpy as np
import pytest

from trainer import data
from trainer.config import TrainConfig
from trainer.data import collate
from trainer.transforms import apply, augmentations


def item(scene: str, voxels: int, points: int, **extra) -> dict:
    """An evaluation-like item of `voxels` voxels and `points` points."""
    rng = np.random.default_rng(len(scene) + voxels)
    return {"scene": scene, "coords": rng.integers(0, 9, (voxels, 3)).astype(np.int32),
            "feats": rng.random((voxels, 2), dtype=np.float32),
            "inverse": rng.integers(0, voxels, points), "point_labels": np.zeros(points, np.int64), **extra}


def test_index_keys_are_shifted_and_offsets_counted():
    batch = collate([item("a", 3, 5), item("bb", 2, 4)])
    assert batch.scenes == ["a", "bb"] and batch.coords.shape == (5, 4)
    assert batch.offsets.tolist() == [0, 3, 5] and batch.point_offsets.tolist() == [0, 5, 9]
    assert (batch.inverse[5:] >= 3).all() and batch.sample_voxel is None
    assert batch.observed is None  # carried by no scene


def test_a_key_some_scene_lacks_is_left_out():
    seen = np.ones(5, bool)
    assert "observed" not in collate([item("a", 3, 5, observed=seen), item("bb", 2, 4)])
    assert collate([item("a", 3, 5, observed=seen), item("bb", 2, 4, observed=seen[:4])]).observed.shape == (9,)


def test_a_new_array_is_declared_once(monkeypatch):
    monkeypatch.setitem(data.ITEM_KEYS, "voxel_weight", "cat")
    batch = collate([item("a", 3, 5, voxel_weight=np.ones(3, np.float32)),
                     item("bb", 2, 4, voxel_weight=np.zeros(2, np.float32))])
    assert batch.voxel_weight.tolist() == [1, 1, 1, 0, 0]
    monkeypatch.delitem(data.ITEM_KEYS, "voxel_weight")
    with pytest.raises(KeyError, match="voxel_weight"):
        collate([item("a", 3, 5, voxel_weight=np.ones(3, np.float32))])


def test_the_transform_chain_gives_the_single_matrix_it_replaced():
    cfg = TrainConfig(scale_range=[0.8, 1.2])
    points = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    rng, old = np.random.default_rng([0, 1, 2, 3]), np.random.default_rng([0, 1, 2, 3])
    theta = old.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(theta), np.sin(theta)
    flips = np.where(old.random(3) < 0.5, -1.0, 1.0)
    flips[2] = 1.0
    matrix = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) * flips[None, :] * old.uniform(0.8, 1.2)
    assert np.array_equal(apply(points, augmentations(cfg), rng), (points @ matrix.T).astype(np.float32))
    assert rng.random() == old.random()  # the same draws, in the same order
    assert augmentations(TrainConfig(augment=False)) == [] and apply(points, [], rng) is points


def test_augment_names_the_chain_in_order_and_old_booleans_still_read():
    from trainer.config import ConfigError, from_dict, load_config

    cfg = TrainConfig(scale_range=[0.8, 1.2])
    assert from_dict({"augment": True}).augment is True
    assert len(augmentations(from_dict({"augment": True}))) == len(augmentations(cfg)) == 3
    points = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    only_scale = load_config(None, ["augment=[scale]", "scale_range=[2, 2]"])
    assert np.array_equal(apply(points, augmentations(only_scale), np.random.default_rng(0)), points * 2)
    flip_first = load_config(None, ["augment=[flip_xy, rotate_z]"])
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    flips, theta = np.diag(np.where(a.random(3) < 0.5, -1.0, 1.0) * [1, 1, 0] + [0, 0, 1]), a.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    assert np.array_equal(apply(points, augmentations(flip_first), b), (points @ (flips @ rotation).T).astype(np.float32))
    with pytest.raises(ConfigError, match=r"^augment: unknown transform 'jitter' \(known: rotate_z, flip_xy, scale\)$"):
        load_config(None, ["augment=[rotate_z, jitter]"])


def test_a_misspelt_batch_key_is_an_error_naming_it_and_a_declared_absent_one_is_none():
    batch = collate([item("a", 3, 5)])
    assert batch.sample_target is None  # declared in ITEM_KEYS, not carried by this item
    with pytest.raises(AttributeError, match=r"^a batch has no key 'sample_lable' \(did you mean 'sample_label'\?\)"):
        batch.sample_lable  # noqa: B018
