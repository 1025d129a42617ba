"""The long-schedule study's report: when each run passes the labels it learns from, its rows
beside the paper's, per class, and (with the fit report) what the students copy from their labels.

No training. Reads a bench_quality.py table, the metrics of its runs (validation every N
epochs), the table's store (the labels voted onto the validation points, per class) and, when
given, fit_report.py's JSON of the same table. A run "passes" a label set at the first evaluation
whose validation mIoU is above the labels' (the voted pseudo-labels, and the refined labels);
`stays_above_from` is the first epoch from which every later evaluation is above (None when the
last one is not). The teacher of a row is the label set it trains on (pseudo for row I, refined
for the others).

Run: .venv/bin/python benchmarks/study_report.py benchmarks/results/table2-e120.json \\
         --fit benchmarks/results/table2-e120-fit.json [--root CHECKOUT]
     -> benchmarks/results/table2-e120-report.json, and its tables in Markdown on stdout
`--root`: the checkout whose data/ holds the table's runs and store (default: this one).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bench_labels import class_names, empty_totals, label_confusions, label_summary  # noqa: E402
from world import REPO  # noqa: E402

from pipeline import store  # noqa: E402
from trainer import provenance  # noqa: E402
from trainer.runlog import epoch_records  # noqa: E402

LABEL_SETS = {"pseudo": "voted pseudo-labels", "refine": "refined labels"}
PAPER_TEACHER = 14.2  # MaskCLIP-3D on ScanNet val (%), what the paper's rows learn from


def curve(run_dir: Path) -> list[tuple[int, float]]:
    """(epoch, validation mIoU %) of every evaluation in a run's metrics, in epoch order."""
    return [(e, 100 * r["miou"]) for e, r in sorted(epoch_records(run_dir).items()) if "miou" in r]


def passes(points: Sequence[tuple[int, float]], threshold: float) -> dict[str, Any]:
    """When a curve passes `threshold`: the first epoch above it, the first epoch from which it
    stays above (None when the last evaluation is not), and how many evaluations are above."""
    above = [m > threshold for _, m in points]
    stays = None
    for i in range(len(points) - 1, -1, -1):
        if not above[i]:
            break
        stays = points[i][0]
    return {"first_epoch": next((e for (e, _), a in zip(points, above, strict=True) if a), None),
            "stays_above_from": stays, "evaluations_above": sum(above), "evaluations": len(points)}


def run_summary(points: Sequence[tuple[int, float]], labels: Mapping[str, float]) -> dict[str, Any]:
    """A run's last and best evaluation and when it passes each label set (mIoU in %)."""
    best = max(points, key=lambda p: p[1])
    return {"last": {"epoch": points[-1][0], "miou": round(points[-1][1], 2)},
            "best": {"epoch": best[0], "miou": round(best[1], 2)},
            "passes": {name: passes(points, value) for name, value in labels.items()}}


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample std (0 for one value), rounded to 0.01, and the count."""
    return {"mean": round(statistics.fmean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0, "n": len(values)}


def paired_delta(runs: Mapping[str, Mapping[int, float]], a: str, b: str) -> dict[str, Any] | None:
    """`a` − `b` over the seeds both rows ran (None when they share none)."""
    seeds = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
    if not seeds:
        return None
    return {**mean_std([runs[a][s] - runs[b][s] for s in seeds]), "seeds": seeds}


def labels_per_class(store_root: str, scenes: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Pseudo and refined labels voted onto the validation points: mIoU over `classes` and IoU
    per class (%), bench_labels.py's score."""
    names = class_names(Path(store_root))
    k = len(names)
    totals = {s: empty_totals(k) for s in LABEL_SETS}
    for scene in scenes:
        gt = store.read_arrays(store_root, "scenes", scene, ["labels"])["labels"].astype(np.int64)
        point = store.read_arrays(store_root, "pairs", scene, ["point"])["point"].astype(np.int64)
        for stage in LABEL_SETS:
            label = store.read_arrays(store_root, stage, scene, ["label"])["label"]
            for key, value in label_confusions(label, point, gt, k).items():
                totals[stage][key] += value
    return {stage: label_summary(totals[stage], names, classes) for stage in LABEL_SETS}


def top_confusions(confusion: Sequence[Sequence[int]], names: Sequence[str], count: int = 5) -> list[dict[str, Any]]:
    """The largest off-diagonal cells of a point confusion (rows: ground truth), each as a share
    (%) of its ground-truth class."""
    cm = np.asarray(confusion, dtype=np.int64)
    rows = np.maximum(cm.sum(1, keepdims=True), 1)
    share = np.where(np.eye(len(cm), dtype=bool), 0, cm) / rows
    order = np.argsort(share, axis=None)[::-1][:count]
    return [{"truth": names[i], "predicted": names[j], "share_of_truth": round(100 * float(share[i, j]), 1)}
            for i, j in (np.unravel_index(o, cm.shape) for o in order) if share[i, j] > 0]


def report(table: Mapping[str, Any], root: Path, fit: Mapping[str, Any] | None) -> dict[str, Any]:
    """The study's numbers (see the module docstring)."""
    classes = table["fixed_classes"]
    labels = {s: table["labels_val"][s]["point_miou"] for s in LABEL_SETS}
    teacher_of = table["schedule"]["label_source"]
    runs, finals = [], {}
    for run in table["runs"]:
        summary = run_summary(curve(root / run["run_dir"]), labels)
        final = round(100 * run["miou_fixed_classes"], 2)
        teacher = labels[teacher_of[run["row"]]]
        runs.append({"row": run["row"], "seed": run["seed"], "final": final, "teacher": teacher_of[run["row"]],
                     "final_over_teacher": round(final / teacher, 2), **summary,
                     "commits": run["provenance"]["commits"]})
        finals.setdefault(run["row"], {})[run["seed"]] = final
    paper = table["paper_table2_scannet_val"]
    rows = {}
    for row, by_seed in finals.items():
        mean = statistics.fmean(by_seed.values())
        rows[row] = {**mean_std(list(by_seed.values())), "teacher": teacher_of[row],
                     "over_teacher": round(mean / labels[teacher_of[row]], 2),
                     "over_pseudo": round(mean / labels["pseudo"], 2), "paper": paper.get(row),
                     "paper_over_teacher": round(paper[row] / PAPER_TEACHER, 2) if row in paper else None,
                     "iou_mean": table["rows"][row]["iou_mean"]}
    val_labels = labels_per_class(str(root / table["world"]["stores"]), table["dataset"]["val_scenes"], classes)
    result: dict[str, Any] = {
        "table": table.get("command"), "labels_val": labels, "labels_val_iou": {s: v["iou"] for s, v in val_labels.items()},
        "labels_val_miou_recomputed": {s: v["miou"] for s, v in val_labels.items()},
        "rows": rows, "runs": runs,
        "deltas": {"V-I": paired_delta(finals, "V", "I"), "II-I": paired_delta(finals, "II", "I"),
                   "V-II": paired_delta(finals, "V", "II"), "plus-V": paired_delta(finals, "plus", "V"),
                   "paper_V-I": round(paper["V"] - paper["I"], 1)},
        "zero_in_every_row": [c for c in classes if all((rows[r]["iou_mean"].get(c) or 0) == 0 for r in rows)],
    }
    if fit is not None:
        names = list(fit["runs"][0]["iou"]["student_vs_gt"]) if fit["runs"] else []
        result["fit"] = [{k: r[k] for k in ("row", "seed", "epoch", "student_vs_gt", "student_vs_labels",
                                            "student_pair_agreement", "labels_vs_gt")}
                         | {"val_miou": r["val_miou_at_epoch"]}
                         | {"shares": {c: {src: r["shares"][src][c] for src in ("predictions", "labels_on_points",
                                                                              "ground_truth")}
                                       for c in majority(r["shares"]["ground_truth"])},
                            "top_confusions": [t | {"labels_share_of_truth": cell_share(r["labels_confusion"], names, t)}
                                               for t in top_confusions(r["confusion"], names)]}
                         for r in fit["runs"]]
    return result


def cell_share(confusion: Sequence[Sequence[int]], names: Sequence[str], cell: Mapping[str, Any]) -> float:
    """The share (%) of a confusion's ground-truth class that lands on `cell`'s predicted class."""
    cm = np.asarray(confusion, dtype=np.int64)
    i, j = names.index(cell["truth"]), names.index(cell["predicted"])
    return round(100 * float(cm[i, j]) / max(int(cm[i].sum()), 1), 1)


def majority(shares: Mapping[str, float], count: int = 3) -> list[str]:
    """The `count` classes with the largest shares."""
    return sorted(shares, key=lambda c: -shares[c])[:count]


def spread(value: Mapping[str, Any], sign: str = "") -> str:
    """'mean ± std' of a `mean_std` record, the mean alone for one value."""
    mean = format(value["mean"], f"{sign}.2f")
    return mean if value["n"] < 2 else f"{mean} ± {value['std']:.2f}"


def markdown(result: Mapping[str, Any], classes: Sequence[str]) -> str:
    """The report's tables in Markdown."""
    labels = result["labels_val"]
    out = [f"labels on the validation rooms: voted pseudo-labels {labels['pseudo']:.2f}, refined {labels['refine']:.2f}",
           "", "| row | seeds | last-epoch mIoU | / its labels | paper | paper / 14.2 |", "|---|---|---|---|---|---|"]
    for row, r in result["rows"].items():
        paper = "" if r["paper"] is None else f"{r['paper']:.1f} | {r['paper_over_teacher']:.2f}x"
        out.append(f"| {row} | {r['n']} | {spread(r)} | {r['over_teacher']:.2f}x "
                   f"({r['teacher']}) | {paper or ' | '} |")
    out += ["", "| run | last | best (epoch) | passes pseudo at | stays above from | passes refined at | "
            "stays above from |", "|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        p, q = r["passes"]["pseudo"], r["passes"]["refine"]
        out.append(f"| {r['row']}-s{r['seed']} | {r['last']['miou']:.2f} | {r['best']['miou']:.2f} ({r['best']['epoch']}) "
                   f"| {p['first_epoch']} | {p['stays_above_from']} | {q['first_epoch']} | {q['stays_above_from']} |")
    out += ["", "deltas: " + ", ".join(f"{k} {spread(v, '+')} (seeds {v['seeds']})"
                                       for k, v in result["deltas"].items() if isinstance(v, dict))
            + f"; paper V-I {result['deltas']['paper_V-I']:+.1f}", ""]
    rows = list(result["rows"])
    out += ["| class | pseudo | refined | " + " | ".join(rows) + " |", "|---" * (3 + len(rows)) + "|"]
    for c in classes:
        cells = [result["labels_val_iou"][s].get(c) for s in LABEL_SETS] + [result["rows"][r]["iou_mean"].get(c) for r in rows]
        out.append(f"| {c} | " + " | ".join("" if v is None else f"{v:.1f}" for v in cells) + " |")
    if "fit" in result:
        out += ["", "| run | epoch | val | train vs gt | train vs its labels | pair agreement | labels vs gt (train) |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {f['row']}-s{f['seed']} | {f['epoch']} | {f['val_miou']:.2f} | {f['student_vs_gt']:.2f} | {f['student_vs_labels']:.2f} "
                f"| {f['student_pair_agreement']:.2f} | {f['labels_vs_gt']:.2f} |" for f in result["fit"]]
        out += ["", "on the training rooms: shares of the majority classes (% of points: predictions / labels "
                "voted onto points / ground truth) and the student's largest confusions (% of the true class: "
                "the student's / its labels')"]
        for f in result["fit"]:
            share = ", ".join(f"{c} {v['predictions']:.1f}/{v['labels_on_points']:.1f}/{v['ground_truth']:.1f}"
                              for c, v in f["shares"].items())
            confused = ", ".join(f"{t['truth']}->{t['predicted']} {t['share_of_truth']:.0f}/{t['labels_share_of_truth']:.0f}"
                                 for t in f["top_confusions"])
            out.append(f"- {f['row']}-s{f['seed']}: {share}; {confused}")
    return "\n".join(out)


def main() -> None:
    """Write `<table>-report.json` and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="a bench_quality.py JSON run with --eval-every")
    parser.add_argument("--fit", type=Path, help="fit_report.py's JSON of the same table")
    parser.add_argument("--root", type=Path, default=REPO, help="checkout whose data/ holds the runs and store")
    parser.add_argument("--out", type=Path, help="output JSON (default: <table>-report.json beside it)")
    args = parser.parse_args()
    table = json.loads(args.table.read_text())
    fit = json.loads(args.fit.read_text()) if args.fit else None
    missing = [r["run_dir"] for r in table["runs"] if not (args.root / r["run_dir"] / "metrics.jsonl").is_file()]
    if missing:
        raise SystemExit(f"error: no metrics.jsonl under {args.root} for {len(missing)} run(s), e.g. {missing[0]} "
                         f"(give --root: the checkout that trained them)")
    result = {"benchmark": "the long-schedule study's report: passes, rows against the paper, per class, fit",
              "command": " ".join([".venv/bin/python", "benchmarks/study_report.py", *sys.argv[1:]]),
              **report(table, args.root, fit), "report_code": provenance.code_state()}
    out = args.out or args.table.with_name(f"{args.table.stem}-report.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result, table["fixed_classes"]))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
