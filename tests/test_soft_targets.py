"""Beyond the paper, in the trainer: soft per-set targets (each set's distribution of the pair
labels over the scene) for Eq. 1 and Eq. 4, summed per voxel for Eq. 1."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline import store
from trainer.config import from_dict
from trainer.data import SceneDataset, collate
from trainer.losses import correlation_ce, correlation_soft_ce, cross_modal_ce, cross_modal_soft_ce
from trainer.targets import set_distributions, voxel_target_mass


def test_set_distributions_count_each_sets_labels_and_isolate_points_outside_sets():
    pair_set = np.array([4, 4, 4, 9, -1, -1])
    label = np.array([0, 0, 2, 1, 1, 2])
    local, dist = set_distributions(pair_set, label, 3)
    assert local[0] == local[1] == local[2] and local[4] != local[5]
    assert np.allclose(dist[local[0]], [2 / 3, 0, 1 / 3])
    assert np.allclose(dist[local[3]], [0, 1, 0])
    assert np.allclose(dist[local[4]], [0, 1, 0]) and np.allclose(dist[local[5]], [0, 0, 1])


def test_voxel_mass_sums_the_pairs_set_distributions():
    rng = np.random.default_rng(0)
    voxel, sets, label = rng.integers(0, 30, 400), rng.integers(-1, 6, 400), rng.integers(0, 4, 400)
    mass = voxel_target_mass(voxel, sets, label, 32, 4)
    local, dist = set_distributions(sets, label, 4)
    expected = np.zeros((32, 4))
    np.add.at(expected, voxel, dist[local])
    assert np.allclose(mass, expected, atol=1e-5)
    assert np.allclose(mass.sum(1), np.bincount(voxel, minlength=32))


def test_soft_losses_are_the_mean_per_pair_soft_ce_and_the_hard_ones_on_one_hot_targets():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    features, text, weights = torch.randn(10, 8), torch.randn(4, 8), torch.tensor([0.5, 2.0, 1.0, 1.5])
    voxel, sets, label = rng.integers(0, 10, 60), rng.integers(0, 5, 60), rng.integers(0, 4, 60)
    local, dist = set_distributions(sets, label, 4)
    log_p = F.log_softmax(features @ text.t(), 1)[torch.from_numpy(voxel)]
    per_pair = -(torch.from_numpy(dist[local]) * weights * log_p).sum(1).mean()
    mass = torch.from_numpy(voxel_target_mass(voxel, sets, label, 10, 4))
    assert float(cross_modal_soft_ce(features, text, mass, weights)) == pytest.approx(float(per_pair), rel=1e-5)
    one_hot = torch.zeros(10, 4)
    one_hot.index_put_((torch.from_numpy(voxel), torch.from_numpy(label)), torch.ones(60), accumulate=True)
    v, lab = torch.from_numpy(voxel), torch.from_numpy(label)
    assert float(cross_modal_soft_ce(features, text, one_hot, weights)) == pytest.approx(
        float(cross_modal_ce(features, text, v, lab, weights)), rel=1e-5)
    agg, sample = torch.randn(5, 8), torch.tensor([0, 3, 3, 1, 2])
    assert float(correlation_soft_ce(agg, text, F.one_hot(sample, 4).float(), weights)) == pytest.approx(
        float(correlation_ce(agg, text, sample, weights)), rel=1e-5)


def test_items_carry_the_sets_label_distributions(beyond_store):
    root, scenes = beyond_store
    cfg = from_dict({"store_root": str(root), "label_source": "pseudo", "soft_targets": True,
                     "num_workers": 0, "voxel_size": 0.2, "samples_per_scene": 16, "augment": False})
    item = SceneDataset(cfg, scenes, 5, train=True)[(1, 0, 0)]
    pairs = np.bincount(item["pair_voxel"], minlength=len(item["coords"]))
    assert np.allclose(item["voxel_target"].sum(1), pairs, atol=1e-4)
    assert np.allclose(item["sample_target"].sum(1), 1.0, atol=1e-5)
    point = store.read_arrays(str(root), "pairs", scenes[0], ["point"])["point"]
    set_id = store.read_arrays(str(root), "geosets", scenes[0], ["set_id"])["set_id"][point]
    label = store.read_arrays(str(root), "pseudo", scenes[0], ["label"])["label"]
    keep = (label >= 0) & (label < 5)
    assert len(np.unique(set_id[keep])) > 1
    first = set_id[keep][0]  # every pair of one set carries its set's distribution
    expected = np.bincount(label[keep][set_id[keep] == first], minlength=5)
    voxels = np.unique(item["pair_voxel"][set_id[keep] == first])
    only = [v for v in voxels if set(set_id[keep][item["pair_voxel"] == v]) == {first}]
    assert only, "some voxel holds pairs of one set only"
    row = item["voxel_target"][only[0]]
    assert np.allclose(row / row.sum(), expected / expected.sum(), atol=1e-5)
    batch = collate([item, item])
    assert batch.voxel_target.shape == (2 * len(item["coords"]), 5)
    assert batch.sample_target.shape == (2 * len(item["sample_voxel"]), 5)

