"""Benchmark: Table 2's ablation rows I-V on synthetic ScanNet rooms, over seeds, and Fig. 6.

One preprocessing (16 generated rooms, 12 train / 4 val, the simulated VLM with the noise
parameters that stages.yaml declares as defaults) feeds every run; rows differ only in the
trainer's switches (the `ablation-I` ... `ablation-V` presets: row I trains on raw pseudo-labels,
rows II-V on intra-set refined ones) and runs of one row only in the seed (model init, data
order, augmentation, sampling). The schedule is the `synthetic-scannet` preset's (batch 4,
SGD 0.05, 256 samples per scene, phase boundaries scaled from 120 epochs) with 20 epochs of one
pass over the 12 training rooms (60 steps) and 0.15 m voxels instead of the preset's 0.1 m:
2.2x fewer voxels per room, so that 15 runs of 60 steps fit into about 45 minutes on 2 cores. (At
0.1 m the same budget allows 10 epochs, 30 steps, after which the baseline predicts little more
than wall and floor: 7.8% mIoU on the validation rooms, measured.) Every run is scored at its last epoch
on the 4 validation rooms at point resolution (no checkpoint selection); rows I and V are also
scored after every epoch for the Fig. 6 curves. mIoU is reported in percent, as the mean and
the sample standard deviation (ddof=1) over seeds.

Resumable: each (row, seed) writes `<root>/runs/<row>-s<seed>/result.json` when it finishes and
is skipped when that file exists; an interrupted run resumes from its last epoch checkpoint.

Run: .venv/bin/python benchmarks/bench_quality.py [--jobs 2]
     -> benchmarks/results/table2.json, benchmarks/results/fig6-epochs.png
     .venv/bin/python benchmarks/bench_quality.py --quick   (8 rooms, 1 seed, 2 epochs; a smoke
     run, results under data/runs/bench-quality-quick/)
     .venv/bin/python benchmarks/bench_quality.py --epochs 80 --rows I,II,V   (the same rooms and
     stores, a longer schedule: -> benchmarks/results/table2-e80-rows-I-II-V.json and
     fig6-epochs-e80-rows-I-II-V.png; curve rows are then scored every epochs/20 epochs)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline import store
from pipeline.labels.simulated import SCANNET_LOOKALIKES
from pipeline.stages import load_graph
from trainer.config import load_config
from trainer.figures import Curve, plot_miou_curves
from trainer.runlog import epoch_records
from trainer.schedule import phase_starts

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ROWS = ("I", "II", "III", "IV", "V")
CURVE_ROWS = ("I", "V")
SWITCHES = ("intra_set", "intra_scene", "inter_scene", "feedback")
PAPER_TABLE2 = {"I": 28.8, "II": 31.1, "III": 32.1, "IV": 36.1, "V": 36.6}  # ScanNet val mIoU (%)
SCHEDULE_KEYS = ("batch_size", "lr_3d", "samples_per_scene", "phase_reference_epochs",
                 "num_workers", "device")


@dataclass(frozen=True)
class Plan:
    """What one invocation runs: rooms, seeds, epochs, and where everything goes."""

    name: str
    rooms: int
    seeds: tuple[int, ...]
    epochs: int
    root: Path       # runs, logs and per-run results
    out_json: Path
    out_png: Path

    @property
    def raw(self) -> Path:
        """Generated rooms (ScanNet layout)."""
        return REPO / "data" / "raw" / self.name

    @property
    def stores(self) -> Path:
        """Stage stores of the rooms."""
        return REPO / "data" / "stores" / self.name


VOXEL_SIZE = 0.15
FULL = Plan("bench-quality", 16, (0, 1, 2), 20, REPO / "data" / "runs" / "bench-quality",
            REPO / "benchmarks" / "results" / "table2.json",
            REPO / "benchmarks" / "results" / "fig6-epochs.png")
QUICK = Plan("bench-quality-quick", 8, (0,), 2, REPO / "data" / "runs" / "bench-quality-quick",
             REPO / "data" / "runs" / "bench-quality-quick" / "table2.json",
             REPO / "data" / "runs" / "bench-quality-quick" / "fig6-epochs.png")


# ---- aggregation (pure) ----

def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def aggregate(per_seed: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per row: mIoU mean, std and per-seed values (percent), mean per-class IoU, and the mean
    and std of the per-seed differences to row I and to the previous row (same seeds).

    `per_seed[row]` lists that row's run results sorted by seed, each with `seed`, `miou` in
    [0, 1] and `iou` (class -> IoU in [0, 1] or None).
    """
    rows: dict[str, dict[str, Any]] = {}
    order = [r for r in ROWS if r in per_seed] + [r for r in per_seed if r not in ROWS]
    for i, row in enumerate(order):
        runs = per_seed[row]
        miou = [100 * r["miou"] for r in runs]
        mean, std = mean_std(miou)
        classes = list(runs[0]["iou"])
        iou_mean = {}
        for c in classes:
            values = [100 * r["iou"][c] for r in runs if r["iou"].get(c) is not None]
            iou_mean[c] = _round(statistics.fmean(values)) if values else None
        entry: dict[str, Any] = {"miou_mean": _round(mean), "miou_std": _round(std),
                                 "per_seed": [_round(v) for v in miou],
                                 "seeds": [r["seed"] for r in runs], "iou_mean": iou_mean}
        for key, other in (("delta_vs_I", order[0]), ("delta_vs_previous", order[i - 1] if i else None)):
            if other is None or other == row:
                continue
            by_seed = {r["seed"]: 100 * r["miou"] for r in per_seed[other]}
            diffs = [100 * r["miou"] - by_seed[r["seed"]] for r in runs if r["seed"] in by_seed]
            if diffs:
                d_mean, d_std = mean_std(diffs)
                entry[key] = {"vs": other, "mean": _round(d_mean), "std": _round(d_std),
                              "per_seed": [_round(d) for d in diffs]}
        rows[row] = entry
    return rows


def aggregate_curves(curves: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, Any]:
    """Mean and std (percent) per epoch over seeds of {"epochs": [...], "miou": [...]} curves
    (epochs present in every curve only)."""
    common = sorted(set.intersection(*(set(c["epochs"]) for c in curves)))
    table = [{e: 100 * m for e, m in zip(c["epochs"], c["miou"], strict=True)} for c in curves]
    stats = [mean_std([t[e] for t in table]) for e in common]
    return {"epochs": common, "miou_mean": [_round(m) for m, _ in stats],
            "miou_std": [_round(s) for _, s in stats],
            "per_seed": [[_round(t[e]) for e in common] for t in table]}


def curve_for_plot(summary: Mapping[str, Any]) -> Curve:
    """A Fig. 6 curve (fractions) from an `aggregate_curves` summary (percent)."""
    spread = None if any(s is None for s in summary["miou_std"]) else [s / 100 for s in summary["miou_std"]]
    return Curve(list(summary["epochs"]), [m / 100 for m in summary["miou_mean"]], spread)


# ---- running ----

def noise_params() -> dict[str, Any]:
    """The simulated VLM's noise parameters: the defaults stages.yaml declares."""
    variant = load_graph().stages["pseudo"].variants["simulated"]
    return {name: param.default for name, param in variant.params.items()}


def run(cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
    """Run a command with output appended to `log`; raise with the log's tail if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.run(list(cmd), cwd=REPO, env={**os.environ, **(env or {})}, stdout=out,
                              stderr=subprocess.STDOUT).returncode
    if code:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise RuntimeError(f"{cmd[0]} failed with exit code {code}; see {log}:\n{tail}")


def preprocess(plan: Plan) -> dict[str, Any]:
    """Generate and preprocess the rooms once (cached stages are skipped); score the labels."""
    common = ["--dataset", "synthetic-scannet", "--data-root", str(plan.raw), "--store-root", str(plan.stores)]
    log = plan.root / "preprocess.log"
    run([str(BIN / "hicl-pipeline"), "run", *common, "--generate", str(plan.rooms),
         "--stages", "text,refine", "--workers", "2"], log)
    used = store.stage_attrs(str(plan.stores), "pseudo")["params"]
    declared = noise_params()
    if used != declared:
        raise RuntimeError(f"{plan.stores} was built with pseudo params {used}, not the stages.yaml "
                           f"defaults {declared}: delete it or use another store")
    labels = {}
    for stage in ("pseudo", "refine"):
        out = plan.root / f"labels-{stage}-val.json"
        if not out.is_file():
            run([str(BIN / "hicl-pipeline"), "eval", *common, "--stage", stage, "--split", "val",
                 "--output", str(out)], log)
        labels[stage] = json.loads(out.read_text())
    return labels


def schedule(plan: Plan) -> dict[str, Any]:
    """Trainer keys shared by every run: the synthetic-scannet preset's, VOXEL_SIZE voxels,
    `plan.epochs` x 1 pass."""
    preset = load_config("synthetic-scannet").to_dict()
    return {**{k: preset[k] for k in SCHEDULE_KEYS}, "voxel_size": VOXEL_SIZE, "epochs": plan.epochs,
            "loop": 1, "progress": False}


def with_schedule(plan: Plan, epochs: int | None, seeds: Sequence[int] | None,
                  rows: Sequence[str] = ROWS) -> Plan:
    """`plan` with another epoch count, seeds or rows: the same rooms and stores; runs of other
    epochs or seeds in their own folder; outputs named after every change, so that a partial
    table never replaces the full one."""
    epochs = plan.epochs if epochs is None else epochs
    seeds = plan.seeds if seeds is None else tuple(seeds)
    run_tag = ("" if epochs == plan.epochs else f"-e{epochs}") + (
        "" if seeds == plan.seeds else "-s" + "".join(map(str, seeds)))
    out_tag = run_tag + ("" if tuple(rows) == ROWS else "-rows-" + "-".join(rows))
    if not out_tag:
        return plan
    return Plan(plan.name, plan.rooms, seeds, epochs, plan.root.with_name(plan.root.name + run_tag),
                plan.out_json.with_name(f"{plan.out_json.stem}{out_tag}.json"),
                plan.out_png.with_name(f"{plan.out_png.stem}{out_tag}.png"))


def overrides(plan: Plan, row: str, seed: int) -> list[str]:
    """`key=value` trainer overrides of one run (rows I and V are validated every
    max(1, epochs // 20) epochs, i.e. after every epoch at the default 20)."""
    values = {
        **schedule(plan), "name": f"{row}-s{seed}", "seed": seed, "runs_root": str(plan.root / "runs"),
        "store_root": str(plan.stores), "train_split": str(plan.raw / "scannetv2_train.txt"),
        "val_split": str(plan.raw / "scannetv2_val.txt"),
        "eval_every": max(1, plan.epochs // 20) if row in CURVE_ROWS else plan.epochs}
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items()]


def train_one(plan: Plan, row: str, seed: int, threads: int) -> dict[str, Any]:
    """Train (or resume) one (row, seed) and write its result.json; skipped when it exists."""
    run_dir = plan.root / "runs" / f"{row}-s{seed}"
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return {**json.loads(result_path.read_text()), "skipped": True}
    resume = (run_dir / "last.pt").is_file()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # killed before its first checkpoint: start over
    start = time.perf_counter()
    sets = [arg for kv in overrides(plan, row, seed) for arg in ("--set", kv)]
    run([str(BIN / "hicl-train"), "fit", "--config", f"ablation-{row}", *sets,
         *(["--resume"] if resume else [])], plan.root / "logs" / f"{row}-s{seed}.log",
         env={"OMP_NUM_THREADS": str(threads), "COLUMNS": "200", "NO_COLOR": "1"})
    epochs = epoch_records(run_dir)
    last = epochs[plan.epochs]
    scored = sorted(e for e, r in epochs.items() if "miou" in r)
    result = {"row": row, "seed": seed, "miou": last["miou"], "iou": last["iou"],
              "curve": {"epochs": scored, "miou": [epochs[e]["miou"] for e in scored]},
              "steps": last["step"], "train_seconds": round(sum(r["seconds"] for r in epochs.values()), 1),
              "wall_seconds": round(time.perf_counter() - start, 1), "resumed": resume}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, result_path)
    return {**result, "skipped": False}


class LoadSampler:
    """Samples the 1-minute load average every `period` seconds in a background thread."""

    def __init__(self, period: float = 30.0):
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(period,), daemon=True)
        self._thread.start()

    def _loop(self, period: float) -> None:
        while not self._stop.wait(period):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        """Stop sampling; mean and max of the samples."""
        self._stop.set()
        return {"mean": round(statistics.fmean(self.samples), 2), "max": round(max(self.samples), 2)}


def print_table(rows: Mapping[str, Mapping[str, Any]], title: str) -> None:
    """Rows with mean +- std, per-seed values and the paper's number."""
    table = Table(title=title)
    for col in ("row", "set", "scene", "inter", "FB", "mIoU mean +- std", "per seed", "vs prev", "paper"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for row, entry in rows.items():
        std = "" if entry["miou_std"] is None else f" +- {entry['miou_std']:.2f}"
        prev = entry.get("delta_vs_previous")
        switches = load_config(f"ablation-{row}").to_dict()
        table.add_row(row, *("x" if switches[s] else "-" for s in SWITCHES),
                      f"{entry['miou_mean']:.2f}{std}", ", ".join(f"{v:.2f}" for v in entry["per_seed"]),
                      "" if prev is None else f"{prev['mean']:+.2f}", f"{PAPER_TABLE2[row]:.1f}")
    Console().print(table)


def main() -> None:
    """Preprocess once, train every (row, seed) not yet done, aggregate, write JSON and Fig. 6."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 rooms, 1 seed, 2 epochs (a smoke run)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at once (default 2)")
    parser.add_argument("--epochs", type=int, help=f"epochs per run (default {FULL.epochs})")
    parser.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")],
                        help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--rows", type=lambda v: v.split(","), default=list(ROWS),
                        help="comma-separated Table 2 rows (default I,II,III,IV,V)")
    args = parser.parse_args()
    if unknown := sorted(set(args.rows) - set(ROWS)):
        parser.error(f"--rows: unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs: must be at least 1")
    rows_run = [r for r in ROWS if r in args.rows]
    curve_rows = [r for r in CURVE_ROWS if r in rows_run]
    plan = with_schedule(QUICK if args.quick else FULL, args.epochs, args.seeds, rows_run)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    load = LoadSampler()
    start = time.perf_counter()
    plan.root.mkdir(parents=True, exist_ok=True)
    labels = preprocess(plan)
    preprocess_s = time.perf_counter() - start
    tasks = [(row, seed) for seed in plan.seeds for row in rows_run]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda t: train_one(plan, t[0], t[1], threads), tasks))
    per_seed = {row: sorted((r for r in done if r["row"] == row), key=lambda r: r["seed"]) for row in rows_run}
    rows = aggregate(per_seed)
    curves = {row: aggregate_curves([r["curve"] for r in per_seed[row]]) for row in curve_rows}
    cfg = load_config("ablation-V", overrides(plan, "V", plan.seeds[0]))
    train_scenes = (plan.raw / "scannetv2_train.txt").read_text().split()
    val_scenes = (plan.raw / "scannetv2_val.txt").read_text().split()
    if curve_rows:
        plot_miou_curves(
            plan.out_png, {f"row {r} ({'baseline' if r == 'I' else 'full method'}), mean +- std over "
                           f"{len(plan.seeds)} seed(s)": curve_for_plot(curves[r]) for r in curve_rows},
            f"Fig. 6 on synthetic ScanNet: validation mIoU per epoch ({len(val_scenes)} rooms)",
            {"pseudo-labels voted onto points": labels["pseudo"]["miou"],
             "refined labels voted onto points": labels["refine"]["miou"]}, phase_starts(cfg))
    steps_per_epoch = -(-len(train_scenes) // cfg.batch_size)
    result = {
        "benchmark": "Table 2 ablation rows I-V on synthetic ScanNet (simulated VLM), mean and "
                     "sample std over seeds of the last-epoch validation mIoU (%)",
        "command": " ".join([".venv/bin/python", "benchmarks/bench_quality.py", *sys.argv[1:]]),
        "quick": args.quick,
        "rows": rows,
        "paper_table2_scannet_val": PAPER_TABLE2,
        "switches": {row: {s: load_config(f"ablation-{row}").to_dict()[s] for s in SWITCHES} for row in rows_run},
        "curves": curves,
        "noise": noise_params(),
        "noise_lookalikes": [list(pair) for pair in SCANNET_LOOKALIKES],
        "labels_val": {stage: {"point_miou": round(100 * v["miou"], 3),
                               "pair_accuracy": round(100 * v["pair_accuracy"], 3)}
                       for stage, v in labels.items()},
        "schedule": {**schedule(plan), "curve_rows": curve_rows,
                     "curve_every_epochs": max(1, plan.epochs // 20),
                     "steps_per_epoch": steps_per_epoch, "steps_per_run": steps_per_epoch * plan.epochs,
                     "phase_starts": list(phase_starts(cfg)), "label_source": "pseudo for row I, refine for II-V",
                     "score": "last epoch, full point resolution, validation split", "seeds": list(plan.seeds)},
        "dataset": {"generator": "pipeline.datasets.synthetic:generate_scannet (seed 0)",
                    "rooms": plan.rooms, "train_scenes": train_scenes, "val_scenes": val_scenes,
                    "raw": str(plan.raw.relative_to(REPO)), "store": str(plan.stores.relative_to(REPO)),
                    "frames_per_room": 30},
        "runs": [{k: v for k, v in r.items() if k not in ("iou", "curve")} for r in done],
        "jobs": args.jobs, "threads_per_job": threads,
        "wall_s": round(time.perf_counter() - start, 1), "preprocess_s": round(preprocess_s, 1),
        "run_wall_s_sum": round(sum(r["wall_seconds"] for r in done), 1),
        "note_wall": "wall_s covers this invocation only; runs marked skipped were done by an "
                     "earlier one (their wall_seconds are from then)",
        "load_average_1m": load.stop(),
        "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
    }
    plan.out_json.parent.mkdir(parents=True, exist_ok=True)
    plan.out_json.write_text(json.dumps(result, indent=1) + "\n")
    print_table(rows, f"Table 2 on synthetic ScanNet ({len(plan.seeds)} seed(s), {plan.epochs} epochs)")
    print(f"wrote {plan.out_json}{f' and {plan.out_png}' if curve_rows else ''} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
