"""Benchmark: the labels the trainer learns from, scored on the benchmark world's validation rooms.

No training: it measures what every Table 2 row starts from, in minutes. Three pair-label sets
are voted onto points (MaskCLIP-3D: the majority label of a point's pairs; points seen in no
frame count as misses) and scored per class against ground truth: the simulated VLM's `pseudo`
labels, the stored `refine` labels (the paper's per-frame vote within each geometric set) and a
scene-scope refinement computed here from the same pseudo-labels, pairs and sets (one vote per
set over all frames). The geometric sets themselves are scored without any label: set purity
(how often a point's ground truth is its set's majority ground truth), per class (door and window
inside the wall's set lower theirs) and boundary recall (how many mesh edges between two
ground-truth classes the sets cut). Coverage is the share of points with at least one pair.

`options` scores, the same way, every option of the `vote` stage (beyond the paper):
each a set of vote params (scope, pair weight, abstention, colour term, set-size cap) applied to
the same stored pseudo-labels, confidences, pairs and sets; `paper` is the refine stage's rule
(per frame, every pair counted) through the same code, so the rows differ only in the option.

mIoU is the mean over a class list fixed by the ground truth alone (the classes present in the
validation rooms), so that a method predicting an absent class somewhere is not rewarded or
punished for it; the per-class IoU of every class is written too. Percentages are rounded to
0.01.

Run: .venv/bin/python benchmarks/bench_labels.py [--world-seed 0] [--vlm-noise 1.0] [--rooms 96,32]
     [--no-options] [--out PATH]   -> benchmarks/results/labels.json (labels-s<seed>-n<noise>.json for another world)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:  # world.py sits beside this script, also when it is loaded by path
    sys.path.insert(0, str(BENCHMARKS))

from world import REPO, World  # noqa: E402

from pipeline import store  # noqa: E402
from pipeline.labels.maskclip3d import point_majority  # noqa: E402
from pipeline.labels.refine import refine_labels  # noqa: E402
from pipeline.labels.vote import vote_stage  # noqa: E402
from pipeline.metrics import confusion_matrix, iou_per_class, unlabelled  # noqa: E402
from pipeline.stages import stage_params  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SOURCES = ("pseudo", "refine", "refine_scene")
SOURCE_STAGES = ("features", "pseudo")  # the stages whose params shape the pseudo-labels
# The vote options scored at the label level: name -> vote params over the paper's rule.
PAPER_VOTE = {**stage_params("vote"), "scope": "frame", "weight": "count", "min_confidence": 0.0,
              "color_weight": 0.0, "max_set_extent": None}
VOTE_OPTIONS: dict[str, dict[str, Any]] = {
    "paper": {},
    "scene scope": {"scope": "scene"},
    "confidence weight": {"weight": "confidence"},
    "abstain below 0.5": {"weight": "count", "min_confidence": 0.5},
    "view weight": {"weight": "view"},
    "colour term 0.05": {"color_weight": 0.05},
    "colour term 0.2": {"color_weight": 0.2},
    "set cap 2 m": {"max_set_extent": 2.0},
    "set cap 1 m": {"max_set_extent": 1.0},
    "scene scope, confidence weight": {"scope": "scene", "weight": "confidence"},
    "scene scope, confidence x view weight": {"scope": "scene", "weight": "confidence_view"},
    "scene scope, abstain below 0.5": {"scope": "scene", "min_confidence": 0.5},
}


# ---- metrics (pure) ----

def class_counts(gt: np.ndarray, num_classes: int) -> np.ndarray:
    """i64[C]: points per ground-truth class (labels outside 0..C-1 ignored)."""
    gt = np.asarray(gt, dtype=np.int64)
    return np.bincount(gt[(gt >= 0) & (gt < num_classes)], minlength=num_classes)


def present_classes(counts: np.ndarray, names: Sequence[str]) -> list[str]:
    """The classes with at least one ground-truth point, in class order: the fixed mIoU list."""
    return [name for name, count in zip(names, counts, strict=True) if count > 0]


def label_confusions(labels: np.ndarray, point: np.ndarray, gt: np.ndarray,
                     num_classes: int) -> dict[str, np.ndarray]:
    """Point confusion of the pairs' majority vote, ground-truth points left without a vote per
    class, and the pair confusion (each pair's label against its point's ground truth)."""
    gt = np.asarray(gt, dtype=np.int64)
    point = np.asarray(point, dtype=np.int64)
    voted = point_majority(labels, point, len(gt), num_classes)
    return {"points": confusion_matrix(voted, gt, num_classes), "missed": unlabelled(voted, gt, num_classes),
            "pairs": confusion_matrix(np.asarray(labels, dtype=np.int64), gt[point], num_classes)}


def empty_totals(num_classes: int) -> dict[str, np.ndarray]:
    """Zeroed accumulators of `label_confusions` (point and pair confusions, missed points)."""
    return {"points": np.zeros((num_classes, num_classes), np.int64), "missed": np.zeros(num_classes, np.int64),
            "pairs": np.zeros((num_classes, num_classes), np.int64)}


def label_summary(confusions: Mapping[str, np.ndarray], names: Sequence[str],
                  classes: Sequence[str]) -> dict[str, Any]:
    """mIoU over `classes`, IoU of every class (None where undefined) and pair accuracy, in %."""
    iou = iou_per_class(confusions["points"], confusions["missed"])
    by_name = dict(zip(names, iou, strict=True))
    pairs = confusions["pairs"]
    per_class = np.diag(pairs) / np.maximum(pairs.sum(1), 1)
    return {"miou": percent(float(np.mean([by_name[c] for c in classes])) if classes else None),
            "iou": {n: None if np.isnan(v) else percent(float(v)) for n, v in by_name.items()},
            "pair_accuracy": percent(ratio(np.trace(pairs), pairs.sum())),
            "pair_accuracy_per_class": {n: percent(float(a)) for n, a, t in zip(names, per_class, pairs.sum(1),
                                                                               strict=True) if t}}


def set_agreement(set_id: np.ndarray, gt: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per ground-truth class: points whose set's majority ground truth is their own, and points
    counted (labelled and in a set; set id -1 = none). Ties go to the lowest class."""
    set_id = np.asarray(set_id, dtype=np.int64)
    gt = np.asarray(gt, dtype=np.int64)
    keep = (gt >= 0) & (gt < num_classes) & (set_id >= 0)
    sets, labels = set_id[keep], gt[keep]
    if not len(sets):
        return np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    votes = np.bincount(sets * num_classes + labels, minlength=(sets.max() + 1) * num_classes)
    majority = votes.reshape(-1, num_classes).argmax(1)
    agree = majority[sets] == labels
    return np.bincount(labels[agree], minlength=num_classes), np.bincount(labels, minlength=num_classes)


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """i64[E, 2]: the undirected edges of a triangle mesh, each once, lower vertex first."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    width = int(faces.max()) + 1 if len(faces) else 1
    keys = np.unique(edges[:, 0] * width + edges[:, 1])
    return np.stack([keys // width, keys % width], axis=1)


def boundary_counts(faces: np.ndarray, gt: np.ndarray, set_id: np.ndarray,
                    num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: ground-truth boundary edges touching it that the sets cut, and all of them.

    A boundary edge joins two labelled points of different classes and counts for both; the sets
    cut it when its ends lie in different sets (a point without a set, id -1, is a set of its
    own, as in the refinement). Summed over classes, each edge counts twice.
    """
    edges = mesh_edges(faces)
    gt = np.asarray(gt, dtype=np.int64)
    set_id = np.asarray(set_id, dtype=np.int64)
    a, b = gt[edges[:, 0]], gt[edges[:, 1]]
    boundary = (a >= 0) & (a < num_classes) & (b >= 0) & (b < num_classes) & (a != b)
    sa, sb = set_id[edges[boundary, 0]], set_id[edges[boundary, 1]]
    cut = (sa != sb) | (sa < 0)
    a, b = a[boundary], b[boundary]
    both = np.concatenate([a, b])
    return (np.bincount(both[np.concatenate([cut, cut])], minlength=num_classes),
            np.bincount(both, minlength=num_classes))


def ratio(num: float, den: float) -> float | None:
    """num / den, None for an empty denominator."""
    return float(num) / float(den) if den else None


def percent(value: float | None) -> float | None:
    """A share as a percentage rounded to 0.01 (None stays None)."""
    return None if value is None else round(100 * value, 2)


def set_summary(agree: np.ndarray, counted: np.ndarray, cut: np.ndarray, boundary: np.ndarray,
                names: Sequence[str]) -> dict[str, Any]:
    """Set purity and boundary recall, overall and per class, in % (None where a class has no point)."""
    return {"purity": percent(ratio(agree.sum(), counted.sum())),
            "purity_per_class": {n: percent(ratio(a, t)) for n, a, t in zip(names, agree, counted, strict=True)},
            "boundary_recall": percent(ratio(cut.sum(), boundary.sum())),
            "boundary_recall_per_class": {n: percent(ratio(c, t))
                                          for n, c, t in zip(names, cut, boundary, strict=True)},
            "boundary_edges": int(boundary.sum() // 2)}


def default_out(world: World) -> Path:
    """benchmarks/results/labels.json, with the world's suffix for any other world."""
    return RESULTS / f"labels{world.suffix}.json"


def parse_rooms(text: str) -> tuple[int, int]:
    """'TRAIN,VAL' -> (train, val), both at least 1."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"expected TRAIN,VAL with two counts >= 1, got {text!r}")
    return int(parts[0]), int(parts[1])


# ---- reading the world ----

def class_names(stores: Path) -> list[str]:
    """Class names of the stored `text` stage (the order is the label ids')."""
    return list(store.stage_attrs(str(stores), "text", store.GLOBAL)["class_names"])


def source_params(stores: Path) -> dict[str, Any]:
    """Variant and params, from the store attributes, of `pseudo` and of the source stages it reads."""
    pseudo = store.stage_attrs(str(stores), "pseudo")
    used = [s for s in SOURCE_STAGES if s == "pseudo" or s in pseudo.get("upstream", {})]
    attrs = {s: pseudo if s == "pseudo" else store.stage_attrs(str(stores), s) for s in used}
    return {s: {"variant": a.get("variant"), "params": a.get("params")} for s, a in attrs.items()}


def score_world(world: World) -> dict[str, Any]:
    """Every label and set metric on the validation rooms of a prepared world."""
    root = str(world.stores)
    names = class_names(world.stores)
    num_classes = len(names)
    totals = {source: empty_totals(num_classes) for source in SOURCES}
    gt_counts = np.zeros(num_classes, np.int64)
    agree, counted, cut, boundary = (np.zeros(num_classes, np.int64) for _ in range(4))
    points = covered = unassigned = sets = 0
    room_coverage: list[float] = []
    scenes = world.split("val")
    for scene in scenes:
        arrays = store.read_arrays(root, "scenes", scene, ["labels", "faces"])
        gt = arrays["labels"].astype(np.int64)
        point = store.read_arrays(root, "pairs", scene, ["point"])["point"].astype(np.int64)
        set_id = store.read_arrays(root, "geosets", scene, ["set_id"])["set_id"].astype(np.int64)
        pseudo = store.read_arrays(root, "pseudo", scene, ["label"])["label"]
        labels = {"pseudo": pseudo, "refine": store.read_arrays(root, "refine", scene, ["label"])["label"],
                  "refine_scene": refine_labels(pseudo, set_id[point], np.zeros(len(point), np.int64))}
        for source, values in labels.items():
            for key, value in label_confusions(values, point, gt, num_classes).items():
                totals[source][key] += value
        gt_counts += class_counts(gt, num_classes)
        points += len(gt)
        seen = int(np.count_nonzero(np.bincount(point, minlength=len(gt))))
        covered += seen
        room_coverage.append(seen / len(gt))
        scene_agree, scene_counted = set_agreement(set_id, gt, num_classes)
        scene_cut, scene_boundary = boundary_counts(arrays["faces"], gt, set_id, num_classes)
        agree, counted, cut, boundary = (agree + scene_agree, counted + scene_counted, cut + scene_cut,
                                         boundary + scene_boundary)
        unassigned += int(np.count_nonzero(set_id < 0))
        sets += len(np.unique(set_id[set_id >= 0]))
    classes = present_classes(gt_counts, names)
    return {
        **{source: label_summary(totals[source], names, classes) for source in SOURCES},
        "coverage": round(ratio(covered, points) or 0.0, 4),
        "coverage_per_room": {"min": round(min(room_coverage), 4), "median": round(float(np.median(room_coverage)), 4),
                              "max": round(max(room_coverage), 4)},
        "sets": {**set_summary(agree, counted, cut, boundary, names),
                 "unassigned": round(ratio(unassigned, points) or 0.0, 4),
                 "sets_per_room": round(sets / len(scenes), 1)},
        "classes": classes,
        "val_scenes": scenes, "points": points,
        "gt_points_per_class": dict(zip(names, gt_counts.tolist(), strict=True)),
        "params": source_params(world.stores),
    }


def option_labels(scene: Mapping[str, np.ndarray], set_id: np.ndarray, label: np.ndarray,
                  confidence: np.ndarray, point: np.ndarray, offsets: np.ndarray,
                  options: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per option: every pair's label from the vote stage run with that option's params over PAPER_VOTE."""
    inputs = {"scenes": scene, "pseudo": {"label": label, "confidence": confidence},
              "geosets": {"set_id": set_id}, "pairs": {"point": point, "frame_offsets": offsets}}
    return {name: vote_stage(inputs, {**PAPER_VOTE, **changes})["label"] for name, changes in options.items()}


def score_options(world: World, options: Mapping[str, Mapping[str, Any]] = VOTE_OPTIONS) -> dict[str, Any]:
    """Point mIoU, per-class IoU and pair accuracy of every vote option on the validation rooms."""
    root = str(world.stores)
    names = class_names(world.stores)
    num_classes = len(names)
    totals = {name: empty_totals(num_classes) for name in options}
    gt_counts = np.zeros(num_classes, np.int64)
    for scene_id in world.split("val"):
        scene = store.read_arrays(root, "scenes", scene_id,
                                  ["labels", "points", "normals", "colors", "faces", "world_to_camera"])
        gt = scene["labels"].astype(np.int64)
        pairs = store.read_arrays(root, "pairs", scene_id, ["point", "frame_offsets"])
        pseudo = store.read_arrays(root, "pseudo", scene_id, ["label", "confidence"])
        set_id = store.read_arrays(root, "geosets", scene_id, ["set_id"])["set_id"]
        point = pairs["point"].astype(np.int64)
        labels = option_labels(scene, set_id, pseudo["label"], pseudo["confidence"], point,
                               pairs["frame_offsets"], options)
        for name, values in labels.items():
            for key, value in label_confusions(values, point, gt, num_classes).items():
                totals[name][key] += value
        gt_counts += class_counts(gt, num_classes)
    classes = present_classes(gt_counts, names)
    return {name: {**label_summary(totals[name], names, classes), "params": {**PAPER_VOTE, **options[name]}}
            for name in options}


def print_options(options: Mapping[str, Any]) -> None:
    """One line per vote option: point mIoU and pair accuracy, and the change from the paper's rule."""
    table = Table(title="vote options (beyond the paper) on the validation rooms")
    for col in ("option", "point mIoU", "vs paper", "pair accuracy", "vs paper"):
        table.add_column(col, justify="left" if col == "option" else "right")
    paper = options["paper"]
    for name, entry in options.items():
        table.add_row(name, f"{entry['miou']:.2f}", f"{entry['miou'] - paper['miou']:+.2f}",
                      f"{entry['pair_accuracy']:.2f}", f"{entry['pair_accuracy'] - paper['pair_accuracy']:+.2f}")
    Console().print(table)


def print_table(result: Mapping[str, Any], title: str) -> None:
    """Per class: IoU of the three label sets, set purity and boundary recall; means last."""
    table = Table(title=title)
    for col in ("class", "IoU pseudo", "IoU refine", "IoU refine-scene", "set purity", "boundary recall"):
        table.add_column(col, justify="left" if col == "class" else "right")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    sets = result["sets"]
    for name in result["pseudo"]["iou"]:
        if name not in result["classes"]:
            continue
        table.add_row(name, *(cell(result[s]["iou"][name]) for s in SOURCES),
                      cell(sets["purity_per_class"][name]), cell(sets["boundary_recall_per_class"][name]))
    table.add_section()
    table.add_row("[bold]mean / all[/bold]", *(f"[bold]{cell(result[s]['miou'])}[/bold]" for s in SOURCES),
                  cell(sets["purity"]), cell(sets["boundary_recall"]))
    table.add_row("pair accuracy", *(cell(result[s]["pair_accuracy"]) for s in SOURCES), "", "")
    Console().print(table)


def main() -> None:
    """Prepare the world, score its validation labels and sets, write JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-seed", type=int, default=0, help="seed of the generated rooms (default 0)")
    parser.add_argument("--vlm-noise", type=float, default=1.0, help="simulated VLM noise scale (default 1.0)")
    parser.add_argument("--rooms", type=parse_rooms, default=(World().train_rooms, World().val_rooms),
                        help="TRAIN,VAL room counts (default 96,32)")
    parser.add_argument("--out", type=Path, help="output JSON (default benchmarks/results/labels[-<world>].json)")
    parser.add_argument("--no-options", action="store_true",
                        help="skip the vote options (beyond the paper; about 3 minutes on the 32 validation rooms)")
    args = parser.parse_args()
    if args.vlm_noise < 0:
        parser.error("--vlm-noise: must be >= 0")
    world = World(args.world_seed, args.vlm_noise, *args.rooms)
    out = args.out or default_out(world)
    start = time.perf_counter()
    world.prepare(REPO / "data" / "runs" / world.name / "prepare.log")
    prepare_s = time.perf_counter() - start
    scored = score_world(world)
    options = {} if args.no_options else score_options(world)
    result = {
        "benchmark": "labels before training on the benchmark world's validation rooms: pseudo, refined "
                     "(per frame, stored) and scene-scope refined labels voted onto points; geometric sets",
        "command": " ".join([".venv/bin/python", "benchmarks/bench_labels.py", *sys.argv[1:]]),
        **scored,
        **({"options": options} if options else {}),
        "raw_root": world.describe()["raw"],
        "world": world.describe(),
        "prepare_s": round(prepare_s, 1), "score_s": round(time.perf_counter() - start - prepare_s, 1),
        "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result, f"labels on {len(scored['val_scenes'])} validation rooms of {world.name} "
                        f"(coverage {100 * scored['coverage']:.1f}%)")
    if options:
        print_options(options)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
