"""benchmarks/study_report.py: when a run passes its labels, deltas over shared seeds, confusions."""
from __future__ import annotations

import json

from benchmark_module import load_benchmark


def test_a_curve_passes_at_its_first_evaluation_above_and_stays_above_from_its_last_dip():
    study = load_benchmark("study_report")
    points = [(5, 10.0), (10, 16.0), (15, 14.0), (20, 16.5), (25, 17.0)]
    assert study.passes(points, 15.1) == {"first_epoch": 10, "stays_above_from": 20,
                                          "evaluations_above": 3, "evaluations": 5}
    assert study.passes(points, 16.0)["first_epoch"] == 20  # equal is not above
    ends_below = study.passes([*points, (30, 15.0)], 15.1)
    assert ends_below["stays_above_from"] is None and ends_below["first_epoch"] == 10
    assert study.passes(points, 5.0)["stays_above_from"] == 5
    assert study.passes(points, 20.0) == {"first_epoch": None, "stays_above_from": None,
                                          "evaluations_above": 0, "evaluations": 5}


def test_a_runs_curve_is_read_from_its_validation_records(tmp_path):
    study = load_benchmark("study_report")
    records = [{"kind": "train", "epoch": 1, "loss": 2.0}, {"kind": "epoch", "epoch": 1, "train_loss": 2.0},
               {"kind": "epoch", "epoch": 10, "miou": 0.25}, {"kind": "epoch", "epoch": 5, "miou": 0.125}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    points = study.curve(tmp_path)
    assert points == [(5, 12.5), (10, 25.0)]
    summary = study.run_summary(points, {"pseudo": 15.0})
    assert summary["best"] == {"epoch": 10, "miou": 25.0} and summary["last"]["epoch"] == 10
    assert summary["passes"]["pseudo"]["first_epoch"] == 10


def test_deltas_pair_the_seeds_both_rows_ran():
    study = load_benchmark("study_report")
    finals = {"I": {0: 20.0, 1: 18.0, 2: 19.0}, "V": {0: 30.0, 1: 26.0}, "plus": {0: 29.0}}
    v_i = study.paired_delta(finals, "V", "I")
    assert (v_i["mean"], v_i["seeds"], v_i["n"]) == (9.0, [0, 1], 2) and v_i["std"] > 0
    assert study.paired_delta(finals, "plus", "V") == {"mean": -1.0, "std": 0.0, "n": 1, "seeds": [0]}
    assert study.paired_delta(finals, "II", "I") is None


def test_top_confusions_are_shares_of_the_true_class_off_the_diagonal():
    study = load_benchmark("study_report")
    confusion = [[90, 10, 0], [50, 50, 0], [0, 0, 0]]  # rows: ground truth
    top = study.top_confusions(confusion, ["wall", "floor", "bed"])
    assert top == [{"truth": "floor", "predicted": "wall", "share_of_truth": 50.0},
                   {"truth": "wall", "predicted": "floor", "share_of_truth": 10.0}]
    labels = [[60, 40, 0], [10, 90, 0], [0, 0, 0]]
    assert study.cell_share(labels, ["wall", "floor", "bed"], top[0]) == 10.0  # the labels' floor->wall


def test_one_seed_is_shown_without_a_spread():
    study = load_benchmark("study_report")
    assert study.spread(study.mean_std([20.0])) == "20.00"
    assert study.spread(study.mean_std([1.0, 3.0]), "+") == "+2.00 ± 1.41"
