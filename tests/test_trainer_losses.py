"""Losses (Eq. 1, 4, 8) against hand computations; sampler counts; IoU on a known confusion."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.metrics import confusion_matrix, iou_per_class, mean_iou
from trainer.losses import correlation_ce, cross_modal_ce, feedback_kl
from trainer.sampling import allocate_counts, sample_by_set

FEATS = [[1.0, 0.0], [0.5, -1.0], [2.0, 1.0]]
TEXT = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]


def _logits(f, t):
    return [[sum(a * b for a, b in zip(row, c, strict=True)) for c in t] for row in f]


def _log_softmax(row, tau=1.0):
    z = [v / tau for v in row]
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def test_cross_modal_ce_is_eq1_mean_over_pairs():
    pair_point, pair_label = [0, 0, 2, 1], [0, 2, 1, 1]  # point 0 is paired twice
    logits = _logits(FEATS, TEXT)
    expected = -sum(_log_softmax(logits[p])[c] for p, c in zip(pair_point, pair_label, strict=True)) / 4
    got = cross_modal_ce(torch.tensor(FEATS), torch.tensor(TEXT), torch.tensor(pair_point),
                         torch.tensor(pair_label))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_correlation_ce_is_eq4_on_aggregated_features():
    labels = [2, 0, 1]
    logits = _logits(FEATS, TEXT)
    expected = -sum(_log_softmax(logits[m])[c] for m, c in enumerate(labels)) / 3
    got = correlation_ce(torch.tensor(FEATS), torch.tensor(TEXT), torch.tensor(labels))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_feedback_kl_is_eq8_teacher_to_student_and_detaches_teacher():
    teacher_rows = [[0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]]
    tau = 0.5
    s_logits, t_logits = _logits(FEATS, TEXT), _logits(teacher_rows, TEXT)
    expected = 0.0
    for s_row, t_row in zip(s_logits, t_logits, strict=True):
        ls, lt = _log_softmax(s_row, tau), _log_softmax(t_row, tau)
        expected += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt, strict=True))
    expected /= 3
    student = torch.tensor(FEATS, requires_grad=True)
    teacher = torch.tensor(teacher_rows, requires_grad=True)
    got = feedback_kl(student, teacher, torch.tensor(TEXT), tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    got.backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0
    same = feedback_kl(student, student.detach().clone(), torch.tensor(TEXT), tau)
    assert same.item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("sizes, total, expected", [
    ([50, 30, 20], 10, [5, 3, 2]),         # exact quotas
    ([5, 3, 3], 10, [4, 3, 3]),            # quotas 4.55, 2.73, 2.73 -> largest remainders
    ([1, 1, 1, 1], 2, [1, 1, 0, 0]),       # ties -> lower index; zero-count sets skipped
    ([7, 1], 4, [4, 0]),                   # 3.5 vs 0.5: tie in remainder -> larger set first
    ([3, 2], 10, [3, 2]),                  # fewer eligible than M: take everything
])
def test_allocate_counts_largest_remainder(sizes, total, expected):
    assert allocate_counts(np.array(sizes), total).tolist() == expected


def test_allocate_counts_properties_on_random_sizes():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(1, 500, size=rng.integers(1, 60))
        total = int(rng.integers(1, 3000))
        counts = allocate_counts(sizes, total)
        assert counts.sum() == min(total, sizes.sum())
        assert (counts <= sizes).all()
        if sizes.sum() > total:
            assert np.abs(counts - total * sizes / sizes.sum()).max() < 1.0


def test_sample_by_set_draws_allotted_counts_per_set_without_replacement():
    rng = np.random.default_rng(1)
    set_ids = np.repeat([4, -1, 7, 2], [600, 100, 250, 50])
    eligible = np.ones(len(set_ids), bool)
    eligible[:100] = False  # set 4 has 500 eligible items
    chosen = sample_by_set(set_ids, eligible, 100, rng)
    assert len(chosen) == 100 == len(np.unique(chosen)) and eligible[chosen].all()
    per_set = {s: int((set_ids[chosen] == s).sum()) for s in (-1, 2, 4, 7)}
    # eligible sizes -1:100, 2:50, 4:500, 7:250 of 900 -> quotas 11.1, 5.56, 55.56, 27.8:
    # floors 11, 5, 55, 27; the 2 left go to 7 (.78) and, on the .56 tie, to the larger set 4
    assert per_set == {-1: 11, 2: 5, 4: 56, 7: 28}
    again = sample_by_set(set_ids, eligible, 100, np.random.default_rng(1))
    assert np.array_equal(chosen, again)


def test_iou_on_known_confusion_matrix():
    conf = np.array([[5, 1, 0, 0], [2, 3, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]])
    iou = iou_per_class(conf)
    assert iou[0] == pytest.approx(5 / 8) and iou[1] == pytest.approx(3 / 6)
    assert iou[3] == 0.0 and iou[2] == 0.0  # class 2 predicted once, never right
    assert mean_iou(conf) == pytest.approx((5 / 8 + 0.5) / 4)
    absent = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    assert np.isnan(iou_per_class(absent)[2])
    assert mean_iou(absent) == pytest.approx((5 / 8 + 0.5) / 2)  # absent class left out


def test_confusion_matrix_ignores_minus_one():
    gt = np.array([0, 0, 1, 1, -1, 2, -1])
    pred = np.array([0, 1, 1, 1, 2, 0, 0])
    conf = confusion_matrix(pred, gt, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
