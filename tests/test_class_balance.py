"""Beyond the paper, in the trainer: class-balanced Eq. 1 / Eq. 4 (weights from the training pair
labels, mean 1 over them), Eq. 1's weight in the step loss, the `vote` stage as a label source,
and the hicl-plus preset training end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline import store
from trainer.config import ConfigError, from_dict, load_config
from trainer.data import SceneDataset
from trainer.distributed import Context
from trainer.engine import fit, step_loss
from trainer.losses import class_weights, correlation_ce, cross_modal_ce, logit_adjustment
from trainer.terms import term_weights


def test_class_weights_grow_for_rare_classes_and_average_one_over_the_labels():
    counts = torch.tensor([900, 100, 0, 25])
    w = class_weights(counts, 0.5)
    share = counts / counts.sum()
    assert float((share * w).sum()) == pytest.approx(1.0)
    assert w[2] == 0 and w[3] > w[1] > w[0]
    assert float(w[3] / w[0]) == pytest.approx(math.sqrt(900 / 25), rel=1e-5)
    assert torch.equal(class_weights(counts, 0.0), torch.tensor([1.0, 1.0, 0.0, 1.0]))


def test_weighted_losses_are_the_weighted_mean_and_unweighted_at_uniform_weights():
    torch.manual_seed(0)
    features, text = torch.randn(6, 8), torch.randn(3, 8)
    index, labels = torch.tensor([0, 1, 1, 4, 5]), torch.tensor([0, 2, 2, 1, 0])
    weights = torch.tensor([0.5, 2.0, 1.0])
    nll = -F.log_softmax(features @ text.t(), 1)[index, labels]
    assert float(cross_modal_ce(features, text, index, labels, weights)) == pytest.approx(
        float((nll * weights[labels]).mean()))
    assert float(cross_modal_ce(features, text, index, labels, torch.ones(3))) == pytest.approx(
        float(cross_modal_ce(features, text, index, labels)))
    agg = torch.randn(4, 8)
    sample = torch.tensor([2, 0, 1, 1])
    assert float(correlation_ce(agg, text, sample, torch.ones(3))) == pytest.approx(
        float(F.cross_entropy(agg @ text.t(), sample)))


def test_term_weights_scale_only_their_term_in_the_step_loss():
    losses = {"cross_modal": torch.tensor(2.0), "intra_scene": torch.tensor(4.0)}
    counts = {"cross_modal": 10, "intra_scene": 5}
    one = Context(0, 1, torch.device("cpu"))
    plain, values = step_loss(one, losses, counts)
    weighted, weighted_values = step_loss(one, losses, counts, {"cross_modal": 3.0})
    assert float(plain) == pytest.approx(3.0) and float(weighted) == pytest.approx(5.0)
    assert values == weighted_values  # the logged terms stay unweighted
    assert term_weights(from_dict({"cross_modal_weight": 3.0})) == {"cross_modal": 3.0}  # the table's row


def test_config_checks_the_new_keys():
    assert from_dict({"label_source": "vote"}).label_stage == "vote"
    with pytest.raises(ConfigError, match="class_balance"):
        from_dict({"class_balance": 1.5})
    with pytest.raises(ConfigError, match="cross_modal_weight"):
        from_dict({"cross_modal_weight": 0})
    plus = load_config("hicl-plus")
    paper = load_config("scannet")
    assert (plus.label_stage, plus.logit_adjustment) == ("refine", 0.5)
    differ = {k for k, v in plus.to_dict().items() if paper.to_dict()[k] != v}
    assert differ == {"name", "logit_adjustment"}


def test_label_counts_are_the_supervising_pair_labels(beyond_store):
    root, scenes = beyond_store
    cfg = from_dict({"store_root": str(root), "label_source": "vote", "num_workers": 0})
    counts = SceneDataset(cfg, scenes, 5, train=True).label_counts()
    expected = sum(np.bincount(store.read_arrays(str(root), "vote", s, ["label"])["label"], minlength=5)
                   for s in scenes)
    assert counts.tolist() == expected.tolist()


@pytest.mark.parametrize("keys", [
    ["class_balance=0.25", "cross_modal_weight=2.0", "label_source=vote"],
    ["soft_targets=true", "label_source=pseudo"]])
def test_hicl_plus_and_every_new_key_train_end_to_end(beyond_store, tmp_path, keys):
    root, scenes = beyond_store
    cfg = load_config("hicl-plus", [
        f"store_root={root}", f"runs_root={tmp_path}", "dataset=scannet", f"train_split={json.dumps(scenes)}",
        f"val_split={json.dumps(scenes)}", "voxel_size=0.2", "epochs=3", "phase_epochs=[2, 3]",
        "samples_per_scene=32", "transformer_depth=1", "num_workers=0", "device=cpu", "progress=false",
        "batch_size=2", *keys])
    summary = fit(cfg)
    records = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r["kind"] == "train"][-1]
    assert set(last) >= {"cross_modal", "intra_scene", "inter_scene", "feedback"}
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    assert 0.0 <= summary["best_miou"] <= 1.0

def test_logit_adjustment_offsets_training_logits_by_the_label_shares():
    counts = torch.tensor([900, 100, 0, 25])
    offset = logit_adjustment(counts, 0.5)
    share = counts / counts.sum()
    assert torch.allclose(offset[[0, 1, 3]], 0.5 * torch.log(share[[0, 1, 3]]))
    assert offset[2] == 0  # unlabelled: not raised at inference
    assert torch.equal(logit_adjustment(counts, 0.0), torch.zeros(4))
    torch.manual_seed(1)
    features, text = torch.randn(6, 8), torch.randn(4, 8)
    index, labels = torch.tensor([0, 1, 2, 5]), torch.tensor([0, 3, 1, 1])
    expected = F.cross_entropy((features @ text.t() + offset)[index], labels)
    assert float(cross_modal_ce(features, text, index, labels, None, offset)) == pytest.approx(float(expected))
    assert float(correlation_ce(features[index], text, labels, None, offset)) == pytest.approx(float(expected))
    with pytest.raises(ConfigError, match="logit_adjustment"):
        from_dict({"logit_adjustment": -1})
