"""Fit against generalisation: the runs of a Table 2 JSON scored on the rooms they trained on.

No training. For each run's last checkpoint (`--checkpoint best`: the one of its best validation
epoch), on its training rooms at point resolution:
- `student_vs_gt`: its predictions against ground truth (beside `val_miou`, the table's score on
  the validation rooms, and `val_miou_at_epoch`, the run's validation mIoU at the checkpoint's epoch);
- `student_vs_labels`: at every training pair, its prediction at the pair's point against the
  pair's label, the label it was trained on (pseudo for row I, refined for rows II-V and plus);
- `labels_vs_gt`: those labels voted onto points against ground truth (bench_labels.py's score,
  here on the training rooms): the teacher the student is measured against.
A student that copies its teacher scores high against its labels and about the teacher's score
against ground truth; one that corrects it ends above `labels_vs_gt`. `shares` puts each class's
share of the predictions beside its share of the labels (of the pairs, and voted onto the points
they reach) and of the ground truth (a student that drifts to the majority classes predicts them
more often than its labels name them); `confusion` is the student's point confusion on the
training rooms and `labels_confusion` that of its labels voted onto points (rows: ground truth). mIoU is
over the table's fixed class list (the classes present in the validation ground truth).

The report reads runs, it trains none: it records its own commit beside the commits of the runs.

Run: .venv/bin/python benchmarks/fit_report.py benchmarks/results/table2-e120.json [--root CHECKOUT]
     -> benchmarks/results/table2-e120-fit.json
`--root`: the checkout whose data/ holds the table's runs (default: this one).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bench_labels import empty_totals, label_confusions, label_summary  # noqa: E402
from world import REPO  # noqa: E402

from pipeline import store  # noqa: E402
from pipeline.metrics import confusion_matrix, iou_per_class  # noqa: E402
from trainer import provenance  # noqa: E402
from trainer.checkpoint import load  # noqa: E402
from trainer.config import load_config  # noqa: E402
from trainer.data import training_scenes  # noqa: E402
from trainer.engine import build_models, eval_loader, load_encoder, predict_points  # noqa: E402
from trainer.runlog import epoch_records  # noqa: E402


def fixed_miou(confusion: np.ndarray, names: Sequence[str], classes: Sequence[str]) -> float:
    """Mean IoU (%) over the fixed class list (a class without an IoU counts 0)."""
    iou = dict(zip(names, iou_per_class(confusion), strict=True))
    return 100 * statistics.fmean(0.0 if np.isnan(iou[c]) else float(iou[c]) for c in classes)


def shares(counts: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Each class's share (%) of `counts`."""
    total = max(int(counts.sum()), 1)
    return {n: round(100 * float(c) / total, 2) for n, c in zip(names, counts, strict=True)}


def student_confusions(pred: np.ndarray, gt: np.ndarray, pair_point: np.ndarray, pair_label: np.ndarray,
                       num_classes: int) -> dict[str, np.ndarray]:
    """One room: the student's point confusion against ground truth, and its prediction at each
    pair's point against the pair's label (rows: the label)."""
    return {"points": confusion_matrix(pred, gt, num_classes),
            "pairs": confusion_matrix(pred[pair_point], pair_label, num_classes)}


def room_pairs(store_root: str, stage: str, scene: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A room's training pairs: point index and label of `stage` (labels outside the classes dropped)."""
    point = store.read_arrays(store_root, "pairs", scene, ["point"])["point"].astype(np.int64)
    label = store.read_arrays(store_root, stage, scene, ["label"])["label"].astype(np.int64)
    keep = (label >= 0) & (label < num_classes)
    return point[keep], label[keep]


def score_run(run_dir: Path, classes: Sequence[str], checkpoint: str = "last.pt") -> dict[str, Any]:
    """A run's checkpoint (its last by default) on its training rooms (see the module docstring)."""
    state = load(run_dir / checkpoint)
    cfg = load_config(None, ["device=cpu", "num_workers=0", "progress=false"], base=state["config"])
    device = torch.device("cpu")
    models = build_models(cfg, device)
    load_encoder(models, run_dir / checkpoint, state)
    names, num_classes = models.class_names, len(models.class_names)
    scenes = training_scenes(cfg)
    models.train(False)
    total = {k: np.zeros((num_classes, num_classes), np.int64) for k in ("points", "pairs")}
    teacher = empty_totals(num_classes)
    label_counts = np.zeros(num_classes, np.int64)
    for batch in eval_loader(cfg, scenes, num_classes):
        pred_all = predict_points(models, batch.to(device)).numpy()
        gt_all, offsets = batch.point_labels.numpy(), batch.point_offsets.numpy()
        for b, scene in enumerate(batch.scenes):
            pred, gt = pred_all[offsets[b]:offsets[b + 1]], gt_all[offsets[b]:offsets[b + 1]]
            point, label = room_pairs(cfg.store_root, cfg.label_stage, scene, num_classes)
            for key, cm in student_confusions(pred, gt, point, label, num_classes).items():
                total[key] += cm
            for key, value in label_confusions(label, point, gt, num_classes).items():
                teacher[key] += value
            label_counts += np.bincount(label, minlength=num_classes)
    labels = label_summary(teacher, names, classes)
    pairs = total["pairs"]
    return {
        "steps": state["step"], "epoch": state["epoch"], "label_stage": cfg.label_stage,
        "train_rooms": len(scenes),
        "val_miou_at_epoch": validation_miou(run_dir, state["epoch"]),
        "student_vs_gt": round(fixed_miou(total["points"], names, classes), 2),
        "student_vs_labels": round(fixed_miou(pairs, names, classes), 2),
        "student_pair_agreement": round(100 * float(np.trace(pairs)) / max(int(pairs.sum()), 1), 2),
        "labels_vs_gt": labels["miou"],
        "iou": {"student_vs_gt": per_class(total["points"], names),
                "student_vs_labels": per_class(pairs, names), "labels_vs_gt": labels["iou"]},
        "shares": {"predictions": shares(total["points"].sum(0), names), "labels": shares(label_counts, names),
                   "labels_on_points": shares(teacher["points"].sum(0), names),
                   "ground_truth": shares(total["points"].sum(1), names)},
        "confusion": total["points"].tolist(),
        "labels_confusion": teacher["points"].tolist(),
        "provenance": provenance.read(run_dir),
    }


def validation_miou(run_dir: Path, epoch: int) -> float | None:
    """The run's validation mIoU (%) recorded at `epoch` (None where it was not evaluated)."""
    record = epoch_records(run_dir).get(epoch, {})
    return round(100 * record["miou"], 2) if "miou" in record else None


def per_class(confusion: np.ndarray, names: Sequence[str]) -> dict[str, float | None]:
    """IoU (%) of every class, None where undefined."""
    return {n: None if np.isnan(v) else round(100 * float(v), 2)
            for n, v in zip(names, iou_per_class(confusion), strict=True)}


def main() -> None:
    """Score every run of a table on its training rooms and write `<table>-fit.json`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="a bench_quality.py JSON (its runs must still be on disk)")
    parser.add_argument("--root", type=Path, default=REPO, help="checkout whose data/ holds the runs")
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last",
                        help="each run's last checkpoint (the table's score) or its best validation epoch's")
    parser.add_argument("--out", type=Path, help="output JSON (default: <table>-fit[-best].json beside it)")
    args = parser.parse_args()
    table = json.loads(args.table.read_text())
    classes = table["fixed_classes"]
    checkpoint = f"{args.checkpoint}.pt"
    out = args.out or args.table.with_name(f"{args.table.stem}-fit{'' if args.checkpoint == 'last' else '-best'}.json")
    start = time.perf_counter()
    runs = []
    for run in table["runs"]:
        folder = args.root / run["run_dir"]
        if not (folder / checkpoint).is_file():
            raise SystemExit(f"error: run {run['row']}-s{run['seed']}: no checkpoint at {folder / checkpoint}")
        scored = score_run(folder, classes, checkpoint)
        runs.append({"row": run["row"], "seed": run["seed"], "val_miou": round(100 * run["miou_fixed_classes"], 2),
                     **scored})
        print(f"{run['row']}-s{run['seed']} epoch {scored['epoch']}: val {scored['val_miou_at_epoch']}, "
              f"train vs gt {scored['student_vs_gt']:.2f}, "
              f"vs labels {scored['student_vs_labels']:.2f}, labels vs gt {scored['labels_vs_gt']:.2f}", flush=True)
    result = {
        "benchmark": f"fit against generalisation: each run's {args.checkpoint} checkpoint on its training rooms",
        "command": " ".join([".venv/bin/python", "benchmarks/fit_report.py", *sys.argv[1:]]),
        "table": str(args.table), "checkpoint": checkpoint, "fixed_classes": classes, "runs": runs,
        "report_code": provenance.code_state(),
        "run_commits": sorted({str(c) for r in runs for c in provenance.commits(r["provenance"] or {})}),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
