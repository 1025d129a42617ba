"""The label benchmark's metrics on hand-made arrays whose answers are known, and the world's names.

benchmarks/ is not a package: the scripts are loaded by path (bench_labels puts its folder on
sys.path for world.py). Nothing here generates or preprocesses rooms.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from benchmark_module import load_benchmark

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("bench_labels")


@pytest.fixture(scope="module")
def world(bench) -> ModuleType:
    return sys.modules["world"]


def test_set_purity_counts_points_agreeing_with_their_sets_majority(bench):
    # set 0: classes 0, 0, 1 (majority 0); set 1: 1, 1; a point without a set and an unlabelled
    # point are not counted.
    set_id = np.array([0, 0, 0, 1, 1, -1, 2])
    gt = np.array([0, 0, 1, 1, 1, 0, -1])
    agree, counted = bench.set_agreement(set_id, gt, 3)
    assert agree.tolist() == [2, 2, 0] and counted.tolist() == [2, 3, 0]
    summary = bench.set_summary(agree, counted, np.zeros(3, int), np.zeros(3, int), ["a", "b", "c"])
    assert summary["purity"] == 80.0
    assert summary["purity_per_class"] == {"a": 100.0, "b": 66.67, "c": None}
    assert summary["boundary_recall"] is None


def test_door_points_inside_the_walls_set_count_against_door_purity(bench):
    wall, door = 0, 1
    gt = np.array([wall] * 8 + [door] * 2 + [door] * 3)
    set_id = np.array([0] * 10 + [1] * 3)  # two door points in the wall's set, three on their own
    agree, counted = bench.set_agreement(set_id, gt, 2)
    assert agree.tolist() == [8, 3] and counted.tolist() == [8, 5]
    tie = bench.set_agreement(np.array([0, 0]), np.array([1, 0]), 2)  # a tie goes to the lowest class
    assert tie[0].tolist() == [1, 0]


def test_mesh_edges_are_undirected_and_unique(bench):
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    assert bench.mesh_edges(faces).tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]
    assert bench.mesh_edges(np.zeros((0, 3), np.int32)).shape == (0, 2)


def test_boundary_recall_is_the_share_of_class_boundary_edges_the_sets_cut(bench):
    faces = np.array([[0, 1, 2], [2, 1, 3]])  # edges 0-1, 0-2, 1-2, 1-3, 2-3
    gt = np.array([0, 0, 1, 1])  # boundary edges: 0-2, 1-2, 1-3
    names = ["a", "b"]

    def recall(set_id: list[int]) -> dict:
        cut, boundary = bench.boundary_counts(faces, gt, np.array(set_id), 2)
        return bench.set_summary(np.zeros(2, int), np.zeros(2, int), cut, boundary, names)

    assert recall([0, 0, 1, 1])["boundary_recall"] == 100.0
    assert recall([0, 0, 0, 0])["boundary_recall"] == 0.0
    one = recall([0, 0, 0, 1])
    assert one["boundary_recall"] == 33.33 and one["boundary_recall_per_class"] == {"a": 33.33, "b": 33.33}
    assert one["boundary_edges"] == 3
    assert recall([0, 0, -1, -1])["boundary_recall"] == 100.0  # a point without a set is its own set
    cut, boundary = bench.boundary_counts(faces, np.array([0, 0, -1, 1]), np.array([0, 0, 0, 0]), 2)
    assert boundary.tolist() == [1, 1] and cut.tolist() == [0, 0]  # only 1-3 joins two labelled classes


def test_the_fixed_class_list_comes_from_ground_truth_alone(bench):
    counts = bench.class_counts(np.array([0, 0, 2, -1, 5]), 4)
    assert counts.tolist() == [2, 0, 1, 0]
    assert bench.present_classes(counts, ["a", "b", "c", "d"]) == ["a", "c"]


def test_label_scores_vote_pairs_onto_points_and_average_over_the_fixed_classes(bench):
    gt = np.array([0, 0, 1, 1, 0])  # point 4 has no pair: a miss of class a
    point = np.array([0, 0, 1, 2, 3])
    labels = np.array([0, 0, 2, 1, 1])  # votes: 0, 2, 1, 1, none
    confusions = bench.label_confusions(labels, point, gt, 3)
    result = bench.label_summary(confusions, ["a", "b", "c"], ["a", "b"])
    assert result["iou"] == {"a": 33.33, "b": 100.0, "c": 0.0}  # c is predicted but absent: not in the mean
    assert result["miou"] == pytest.approx(66.67)
    assert result["pair_accuracy"] == 80.0
    assert result["pair_accuracy_per_class"] == {"a": 66.67, "b": 100.0}


def test_output_names_follow_the_world(bench, world):
    results = BENCHMARKS / "results"
    assert bench.default_out(world.World()) == results / "labels.json"
    assert bench.default_out(world.World(1, 1.5)) == results / "labels-s1-n1.5.json"
    assert bench.default_out(world.World(0, 2.0)) == results / "labels-s0-n2.json"
    assert bench.default_out(world.World(0, 1.0, 4, 2)) == results / "labels-s0-n1-r4+2.json"
    assert [world.format_noise(v) for v in (1.0, 1.5, 0.25, 10.0, 0.0)] == ["1", "1.5", "0.25", "10", "0"]


def test_rooms_flag_takes_two_positive_counts(bench):
    assert bench.parse_rooms("96,32") == (96, 32)
    for bad in ("96", "0,2", "4,x", "1,2,3"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_rooms(bad)


def test_world_folders_commands_and_description(world):
    w = world.World(2, 0.5, 8, 4)
    assert w.raw.name == "world-s2-8+4" and w.stores.name == "world-s2-8+4-n0.5" and w.name == w.stores.name
    assert w.generator_args() == ["-m", "pipeline.datasets.synthetic", "scannet", "--out",
                                         "data/raw/world-s2-8+4", "--scenes", "12", "--val", "4", "--seed", "2", "--jobs", "2"]
    assert w.pipeline_overrides() == ["--set", "features.noise_scale=0.5"]
    assert world.World().pipeline_overrides() == []
    assert "--set" not in world.World().pipeline_command()
    described = json.loads(json.dumps(w.describe()))
    assert {k: described[k] for k in ("seed", "train_rooms", "val_rooms", "vlm_noise", "raw", "stores")} == {
        "seed": 2, "train_rooms": 8, "val_rooms": 4, "vlm_noise": 0.5, "raw": "data/raw/world-s2-8+4",
        "stores": "data/stores/world-s2-8+4-n0.5"}
    assert described["generator"]["code_digest"] == world.generator_digest()


def test_rooms_are_complete_only_when_both_splits_list_existing_rooms(world, tmp_path):
    for scene in ("a", "b", "c"):
        (tmp_path / "scans" / scene).mkdir(parents=True)
    (tmp_path / "scannetv2_train.txt").write_text("a\nb\n")
    assert world.split_complete(tmp_path, "train", 2)
    assert not world.split_complete(tmp_path, "train", 3)
    assert not world.split_complete(tmp_path, "val", 1)  # no list yet: the generator writes them last
    (tmp_path / "scannetv2_val.txt").write_text("d\n")
    assert not world.split_complete(tmp_path, "val", 1)  # listed but missing


def test_quality_benchmark_names_runs_and_outputs_after_the_world(world):
    quality = load_benchmark("bench_quality")
    full = quality.plan_for(world.World())
    assert full.out_json.name == "table2.json" and full.root.parent.name == "world-s0-96+32-n1"
    other = quality.with_schedule(quality.plan_for(world.World(1, 1.5)), 80, None, ["I", "V"])
    assert other.out_json.name == "table2-s1-n1.5-e80-rows-I-V.json"
    assert other.root.parent.name == "world-s1-96+32-n1.5" and other.root.name == "bench-quality-e80"
    quick = quality.plan_for(world.World(), quick=True)
    assert quick.world == world.World(0, 1.0, 8, 4) and quick.seeds == (0,) and quick.epochs == 2
    assert quick.out_json.parent == quick.root and quick.root.parent.name == "world-s0-8+4-n1"
    out = quality.with_out(full, Path("/tmp/t2.json"))
    assert out.out_png == Path("/tmp/t2-fig6.png")
    gpu = quality.with_schedule(full, 84, (0,), ["I", "II", "V"], 0.05, 8, "cuda")
    assert gpu.root.name == "bench-quality-e84-v0.05-b8-cuda"  # seeds share the run folder
    assert gpu.out_json.name == "table2-e84-s0-v0.05-b8-cuda-rows-I-II-V.json"
    keys = quality.schedule(gpu)
    assert (keys["voxel_size"], keys["batch_size"], keys["device"]) == (0.05, 8, "cuda")
    assert quality.schedule(full)["batch_size"] == 4 and quality.schedule(full)["voxel_size"] == 0.15


def test_quality_rows_get_fixed_class_and_observed_miou(world):
    quality = load_benchmark("bench_quality")
    runs = [{"row": "I", "seed": s, "miou": m, "iou": {"a": m, "b": 0.5, "c": None}, "miou_observed": m + 0.1}
            for s, m in enumerate((0.2, 0.4))]
    row = quality.aggregate({"I": runs}, ["a", "b", "c"])["I"]
    assert row["miou_fixed_classes"]["per_seed"] == pytest.approx([70 / 3, 30.0], abs=1e-3)  # c counts 0
    assert row["miou_observed"]["mean"] == pytest.approx(40.0)
    assert "miou_fixed_classes" not in quality.aggregate({"I": runs})["I"]


def test_vote_options_change_only_their_option_and_paper_is_the_refine_rule(bench):
    from pipeline.labels.refine import refine_labels

    rng = np.random.default_rng(4)
    n, pairs = 60, 300
    scene = {"points": rng.random((n, 3)).astype(np.float32),
             "normals": np.tile([0.0, 0.0, 1.0], (n, 1)).astype(np.float32),
             "world_to_camera": np.stack([np.eye(4)] * 3), "faces": np.zeros((0, 3), np.int32),
             "colors": np.zeros((n, 3), np.uint8)}
    set_id = rng.integers(0, 6, n)
    point = rng.integers(0, n, pairs)
    offsets = np.array([0, 100, 200, 300])
    label = rng.integers(0, 4, pairs).astype(np.uint8)
    conf = rng.random(pairs).astype(np.float32)
    options = {k: bench.VOTE_OPTIONS[k] for k in ("paper", "scene scope", "confidence weight")}
    out = bench.option_labels(scene, set_id, label, conf, point, offsets, options)
    frames = np.repeat(np.arange(3), 100)
    assert np.array_equal(out["paper"], refine_labels(label, set_id[point], frames))
    assert np.array_equal(out["scene scope"], refine_labels(label, set_id[point], np.zeros(pairs, np.int64)))
    assert not np.array_equal(out["confidence weight"], out["paper"])
