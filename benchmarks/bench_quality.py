"""Benchmark: Table 2's ablation rows I-V on the benchmark world's synthetic rooms, over seeds, and Fig. 6.

The rooms and stores are the benchmark world's (benchmarks/world.py: by default 96 training and
32 validation rooms of world seed 0, preprocessed once with the simulated VLM at noise scale 1.0;
`--world-seed` and `--vlm-noise` choose another world). Rows differ only in the trainer's
switches (the `ablation-I` ... `ablation-V` presets: row I trains on raw pseudo-labels, rows
II-V on intra-set refined ones) and runs of one row only in the seed (model init, data order,
augmentation, sampling). The schedule is the `synthetic-scannet` preset's (batch 4, SGD 0.05, 256
samples per scene, phase boundaries scaled from 120 epochs) with 12 epochs of one pass over the
training rooms (288 steps) and 0.15 m voxels instead of the preset's 0.1 m (2.2x fewer voxels per
room); the 15 runs of rows I-V x 3 seeds took 2.9 hours of the 2 cores, two runs at a time.
Every run is scored at its last epoch on the validation rooms at point resolution (no checkpoint
selection); rows I, V and plus are also scored every max(1, epochs // 20) epochs for the Fig. 6
curves (`--eval-every N`: every row every N epochs). Row `plus` (not run by default) is the
`hicl-plus` preset, beyond the paper: row V with logit adjustment 0.5 in Eq. 1 and Eq. 4
(README: Beyond the paper).

Each row's mIoU is reported three ways, in percent, as the mean and the sample standard deviation
(ddof=1) over seeds: the trainer's (classes present in the ground truth or the predictions),
`miou_fixed_classes` (the classes present in the validation ground truth, a list fixed before any
prediction) and `miou_observed` (the trainer's, on the points that have at least one pair). The
labels the rows learn from are scored on the same validation rooms by bench_labels.py's code:
`maskclip3d_miou` is the pseudo-labels voted onto points, over the fixed class list.

Traceable: a table's runs are trained by its command at one commit, on its stores. Every run
records its commit(s), store fingerprints, preset and overrides (trainer/provenance.py), and the
JSON carries them per run and under `provenance`. A tree with uncommitted changes is refused
(`--allow-dirty`, recorded, allows it); a run folder holding a run of another commit or other
stores is refused in one line before anything trains (`--reuse-runs`, recorded per run, uses it).

Resumable: each (row, seed) writes `data/runs/<world>/bench-quality[-<schedule>]/runs/<row>-s<seed>/result.json`
when it finishes and is skipped when that file exists; an interrupted run resumes from its last
epoch checkpoint (the trainer refuses it if the code or the stores changed). Different worlds and
schedules never share runs; tables over other seeds or rows of one schedule do. Runs go seed by
seed: every row's first seed first (`--row-seeds plus=0` gives a row its own seeds).

Run: .venv/bin/python benchmarks/bench_quality.py [--jobs 2]
     -> benchmarks/results/table2.json, benchmarks/results/fig6-epochs.png
     .venv/bin/python benchmarks/bench_quality.py --quick   (a world of 8+4 rooms, 1 seed, 2 epochs;
     a smoke run, results under data/runs/world-s0-8+4-n1/bench-quality-quick/)
     .venv/bin/python benchmarks/bench_quality.py --epochs 120 --rows I,II,V,plus --row-seeds II=0
     --row-seeds plus=0 --eval-every 5 --out benchmarks/results/table2-e120.json   (the paper's 120
     epochs: seed 0 of every row, then seeds 1 and 2 of rows I and V)
     .venv/bin/python benchmarks/bench_quality.py --world-seed 1 --vlm-noise 1.5   (another world:
     -> benchmarks/results/table2-s1-n1.5.json; the world's suffix comes before the schedule's)
     .venv/bin/python benchmarks/bench_quality.py --rows V,plus --out benchmarks/results/table2-plus.json
     (row V against hicl-plus; V's runs are the default table's when trained at the same commit)
     .venv/bin/python benchmarks/bench_quality.py --replot benchmarks/results/table2-e120.json
     (redraws that table's Fig. 6 from its JSON; nothing is trained or read)
     benchmarks/gpu_protocol.sh   (rows I, II, V on one CUDA GPU: --voxel-size 0.05 --batch-size 8
     --device cuda --epochs 84 --jobs 3 -> benchmarks/results/table2-gpu.json)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
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

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:  # world.py sits beside this script, also when it is loaded by path
    sys.path.insert(0, str(BENCHMARKS))

from bench_labels import score_world  # noqa: E402
from world import BIN, REPO, World, run  # noqa: E402

from pipeline.labels.simulated import SCANNET_LOOKALIKES  # noqa: E402
from trainer import provenance  # noqa: E402
from trainer.config import load_config  # noqa: E402
from trainer.figures import Curve, plot_miou_curves  # noqa: E402
from trainer.runlog import epoch_records  # noqa: E402
from trainer.schedule import phase_starts  # noqa: E402
from trainer.terms import switches  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
ROWS = ("I", "II", "III", "IV", "V")  # Table 2's rows, the default
PRESETS = {**{row: f"ablation-{row}" for row in ROWS}, "plus": "hicl-plus"}  # every row: its trainer preset
CURVE_ROWS = ("I", "V", "plus")
SWITCHES = ("intra_set", *switches())  # Table 2's columns: intra-set labels, then the loss terms' switches
PAPER_TABLE2 = {"I": 28.8, "II": 31.1, "III": 32.1, "IV": 36.1, "V": 36.6}  # ScanNet val mIoU (%)
ROW_NAMES = {"I": "baseline", "V": "full method", "plus": "hicl-plus"}
BEYOND_PAPER = ("label_source", "class_balance", "logit_adjustment", "soft_targets",
                "cross_modal_weight")  # trainer keys the paper fixes
SCHEDULE_KEYS = ("batch_size", "lr_3d", "samples_per_scene", "phase_reference_epochs",
                 "num_workers", "device")


@dataclass(frozen=True)
class Plan:
    """What one invocation runs: the world, seeds, epochs, and where everything goes."""

    world: World
    seeds: tuple[int, ...]
    epochs: int
    root: Path       # runs, logs and per-run results
    out_json: Path
    out_png: Path
    voxel_size: float = 0.15          # metres (the preset's is 0.1)
    batch_size: int | None = None     # None: the preset's
    device: str | None = None         # None: the preset's (cpu)
    eval_every: int | None = None     # None: curve rows every max(1, epochs // 20), others at the end

    @property
    def raw(self) -> Path:
        """Generated rooms (ScanNet layout)."""
        return self.world.raw

    @property
    def stores(self) -> Path:
        """Stage stores of the rooms."""
        return self.world.stores


VOXEL_SIZE = Plan.voxel_size
QUICK_ROOMS = (8, 4)
# Epochs of the default schedule: 12 passes over the 96 training rooms (288 steps) is what fills
# about two hours of 2 CPU cores for rows I-V x 3 seeds, measured: an epoch takes about 45 s for
# rows I-II and 100 s for rows III-V, two runs at a time.
DEFAULT_EPOCHS = 12


def plan_for(world: World, quick: bool = False) -> Plan:
    """The default plan on `world`: 3 seeds x DEFAULT_EPOCHS, outputs in benchmarks/results/ named
    after the world; or, `quick`, a world of 8+4 rooms with the same seed and noise, 1 seed x 2
    epochs, outputs beside its runs."""
    if quick:
        small = World(world.seed, world.vlm_noise, *QUICK_ROOMS)
        root = REPO / "data" / "runs" / small.name / "bench-quality-quick"
        return Plan(small, (0,), 2, root, root / "table2.json", root / "fig6-epochs.png")
    return Plan(world, (0, 1, 2), DEFAULT_EPOCHS, REPO / "data" / "runs" / world.name / "bench-quality",
                RESULTS / f"table2{world.suffix}.json", RESULTS / f"fig6-epochs{world.suffix}.png")


FULL = plan_for(World())  # the default world and schedule


def fig6_beside(table: Path) -> Path:
    """Where a table written to `table` puts its Fig. 6: `<stem>-fig6.png` beside it."""
    return table.with_name(f"{table.stem}-fig6.png")


def with_out(plan: Plan, out: Path) -> Plan:
    """`plan` writing its table to `out` and Fig. 6 beside it (`fig6_beside`)."""
    return dataclasses.replace(plan, out_json=out, out_png=fig6_beside(out))


# ---- aggregation (pure) ----

def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def fixed_miou(iou: Mapping[str, float | None], classes: Sequence[str]) -> float:
    """Mean IoU over a fixed class list (fractions; a class without an IoU counts 0)."""
    return statistics.fmean(iou.get(c) or 0.0 for c in classes)


def seed_stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std and per-seed values, rounded."""
    mean, std = mean_std(values)
    return {"mean": _round(mean), "std": _round(std), "per_seed": [_round(v) for v in values]}


def aggregate(per_seed: Mapping[str, Sequence[Mapping[str, Any]]],
              fixed_classes: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per row: mIoU mean, std and per-seed values (percent), mean per-class IoU, and the mean
    and std of the per-seed differences to row I (where row I was run) and to the previous row
    (same seeds); with
    `fixed_classes`, the same statistics of the mIoU over that fixed list (`miou_fixed_classes`), and of
    `miou_observed` where every run has it.

    `per_seed[row]` lists that row's run results sorted by seed, each with `seed`, `miou` in
    [0, 1] and `iou` (class -> IoU in [0, 1] or None), optionally `miou_observed` in [0, 1].
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
        if fixed_classes is not None:
            entry["miou_fixed_classes"] = seed_stats([100 * fixed_miou(r["iou"], fixed_classes) for r in runs])
        if all(r.get("miou_observed") is not None for r in runs):
            entry["miou_observed"] = seed_stats([100 * r["miou_observed"] for r in runs])
        for key, other in (("delta_vs_I", "I" if "I" in per_seed else None),
                           ("delta_vs_previous", order[i - 1] if i else None)):
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


def draw_fig6(result: Mapping[str, Any], path: Path) -> Path:
    """Fig. 6 of a table: each curve row's validation mIoU per epoch (mean +- std over its seeds),
    the labels voted onto the validation points as horizontal lines, the phase starts."""
    seeds = result["schedule"]["row_seeds"]
    curves = {f"row {r}{f' ({ROW_NAMES[r]})' if r in ROW_NAMES else ''}, mean +- std over "
              f"{len(seeds[r])} seed(s)": curve_for_plot(result["curves"][r]) for r in result["schedule"]["curve_rows"]}
    labels = result["labels_val"]
    return plot_miou_curves(
        path, curves, f"Fig. 6 on synthetic ScanNet: validation mIoU per epoch "
                      f"({len(result['dataset']['val_scenes'])} rooms)",
        {"pseudo-labels voted onto points (classes in the ground truth)": labels["pseudo"]["point_miou"] / 100,
         "refined labels voted onto points (classes in the ground truth)": labels["refine"]["point_miou"] / 100},
        result["schedule"]["phase_starts"], legend_below=True)


# ---- running ----

def score_labels(plan: Plan) -> dict[str, Any]:
    """Prepare the world (rooms and stores, each made once) and score its validation labels."""
    plan.world.prepare(REPO / "data" / "runs" / plan.world.name / "prepare.log")
    return score_world(plan.world)


def schedule(plan: Plan) -> dict[str, Any]:
    """Trainer keys shared by every run: the synthetic-scannet preset's, the plan's voxel size
    (and batch size and device where it sets them), `plan.epochs` x 1 pass."""
    preset = load_config("synthetic-scannet").to_dict()
    chosen = {k: v for k, v in (("batch_size", plan.batch_size), ("device", plan.device)) if v is not None}
    return {**{k: preset[k] for k in SCHEDULE_KEYS}, **chosen, "voxel_size": plan.voxel_size,
            "epochs": plan.epochs, "loop": 1, "progress": False}


def with_schedule(plan: Plan, epochs: int | None, seeds: Sequence[int] | None,
                  rows: Sequence[str] = ROWS, voxel_size: float | None = None,
                  batch_size: int | None = None, device: str | None = None) -> Plan:
    """`plan` with another epoch count, seeds, rows, voxel size, batch size or device: the same
    world; runs of another schedule in their own folder (runs differ by row and seed within it, so
    tables over other seeds or rows of one schedule share its runs); outputs named after every
    change, so that a partial table never replaces the full one."""
    epochs = plan.epochs if epochs is None else epochs
    seeds = plan.seeds if seeds is None else tuple(seeds)
    voxel = plan.voxel_size if voxel_size is None else voxel_size
    batch = plan.batch_size if batch_size is None else batch_size
    dev = plan.device if device is None else device
    epoch_tag = "" if epochs == plan.epochs else f"-e{epochs}"
    seed_tag = "" if seeds == plan.seeds else "-s" + "".join(map(str, seeds))
    other_tag = "".join(("" if voxel == plan.voxel_size else f"-v{voxel:g}",
                         "" if batch == plan.batch_size else f"-b{batch}",
                         "" if dev == plan.device else f"-{dev}"))
    run_tag = epoch_tag + other_tag
    out_tag = epoch_tag + seed_tag + other_tag + ("" if tuple(rows) == ROWS else "-rows-" + "-".join(rows))
    if not out_tag:
        return plan
    return Plan(plan.world, seeds, epochs, plan.root.with_name(plan.root.name + run_tag),
                plan.out_json.with_name(f"{plan.out_json.stem}{out_tag}.json"),
                plan.out_png.with_name(f"{plan.out_png.stem}{out_tag}.png"), voxel, batch, dev)


def curve_rows(plan: Plan, rows: Sequence[str]) -> list[str]:
    """The rows scored during training (Fig. 6 curves): all of them with `plan.eval_every`, else
    rows I, V and plus."""
    return [r for r in rows if plan.eval_every is not None or r in CURVE_ROWS]


def eval_every(plan: Plan, row: str) -> int:
    """Epochs between a row's validations: the plan's, else max(1, epochs // 20) for the curve
    rows (after every epoch up to 20 epochs) and only the last epoch for the others."""
    if plan.eval_every is not None:
        return plan.eval_every
    return max(1, plan.epochs // 20) if row in CURVE_ROWS else plan.epochs


def overrides(plan: Plan, row: str, seed: int) -> list[str]:
    """`key=value` trainer overrides of one run."""
    values = {
        **schedule(plan), "name": f"{row}-s{seed}", "seed": seed, "runs_root": str(plan.root / "runs"),
        "store_root": str(plan.stores), "train_split": str(plan.raw / "scannetv2_train.txt"),
        "val_split": str(plan.raw / "scannetv2_val.txt"), "eval_every": eval_every(plan, row)}
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items()]


# ---- provenance: a table's runs are trained by its command at one commit, on its stores ----

def run_dir(plan: Plan, row: str, seed: int) -> Path:
    """The run folder of (row, seed)."""
    return plan.root / "runs" / f"{row}-s{seed}"


def store_digest(plan: Plan, row: str, seed: int, known: dict[tuple, str]) -> str:
    """The digest of the stores (stages read, over the world's scenes) a run of (row, seed) reads
    now, as the trainer records it (trainer/provenance.py); `known` keeps it per store root and
    stages read, so runs that read the same stages read their done marks once."""
    cfg = load_config(PRESETS[row], overrides(plan, row, seed))
    key = (cfg.store_root, tuple(provenance.stages_read(cfg)))
    if key not in known:
        scenes = sorted({*plan.world.split("train"), *plan.world.split("val")})
        known[key] = provenance.store_fingerprints(cfg, scenes)["digest"]
    return known[key]


def run_provenance(prov: Mapping[str, Any] | None, row: str) -> dict[str, Any]:
    """What the table keeps of a run's provenance.json: its commits, whether any part was trained
    from a tree with uncommitted changes, its stores' digest, preset and overrides."""
    if prov is None:
        return {"commits": [None], "store_digest": None, "preset": PRESETS[row], "recorded": False}
    states = [prov.get("code") or {}] + [r["code"] for r in prov["resumes"]]
    return {"commits": provenance.commits(prov), "dirty": any(bool(c.get("dirty")) for c in states),
            "diffs": sorted({c["diff"] for c in states if c.get("diff")}),
            "store_digest": prov["stores"]["digest"], "preset": prov["config"], "overrides": prov["overrides"],
            "resumed_at_epochs": [r["epoch"] for r in prov["resumes"]],
            "code_changed_on_resume": any(r["allow_code_change"] for r in prov["resumes"]), "recorded": True}


def reuse_problem(kept: Mapping[str, Any], code: Mapping[str, Any], digest: str) -> str | None:
    """Why a run (its `run_provenance`) was not trained by this table's code on its stores (None:
    it was)."""
    if not kept["recorded"]:
        return "it has no provenance record"
    if kept["commits"] != [code["commit"]] or kept["diffs"] != ([code["diff"]] if code.get("diff") else []):
        return f"it was trained by commit(s) {', '.join(str(c)[:7] for c in kept['commits'])}"
    if kept["store_digest"] != digest:
        return f"it read stores of digest {kept['store_digest']}, the stores are now {digest}"
    return None


def check_runs(plan: Plan, tasks: Sequence[tuple[str, int]], code: Mapping[str, Any],
               reuse: bool) -> dict[str, str]:
    """Every (row, seed) whose folder holds a run (finished or not) that this table's code did not
    train on its stores: refused in one line (SystemExit) unless `reuse`; returns run name -> why,
    what the JSON records as reused."""
    reused: dict[str, str] = {}
    digests: dict[tuple, str] = {}
    for row, seed in tasks:
        folder = run_dir(plan, row, seed)
        if not (folder / "result.json").is_file() and not (folder / "last.pt").is_file():
            continue
        problem = reuse_problem(run_provenance(provenance.read(folder), row), code,
                                store_digest(plan, row, seed, digests))
        if problem is None:
            continue
        if not reuse:
            raise SystemExit(f"error: run {folder}: {problem}, but this table is at commit "
                             f"{provenance.describe_code(code)}: delete the folder to retrain it, or pass "
                             f"--reuse-runs to use it (the JSON names it as reused)")
        reused[f"{row}-s{seed}"] = problem
    return reused


def train_one(plan: Plan, row: str, seed: int, threads: int, allow_code_change: bool = False) -> dict[str, Any]:
    """Train (or resume) one (row, seed) and write its result.json; skipped when it exists.
    `allow_code_change`: resume a run begun by other code (check_runs refused it otherwise)."""
    folder = run_dir(plan, row, seed)
    result_path = folder / "result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        return {**result, "run_dir": str(folder.relative_to(REPO)),
                "provenance": run_provenance(provenance.read(folder), row), "skipped": True}
    resume = (folder / "last.pt").is_file()
    if not resume and folder.exists():
        shutil.rmtree(folder)  # killed before its first checkpoint: start over
    start = time.perf_counter()
    sets = [arg for kv in overrides(plan, row, seed) for arg in ("--set", kv)]
    run([str(BIN / "hicl-train"), "fit", "--config", PRESETS[row], *sets,
         *(["--resume"] if resume else []), *(["--allow-code-change"] if resume and allow_code_change else [])],
        plan.root / "logs" / f"{row}-s{seed}.log",
        env={"OMP_NUM_THREADS": str(threads), "COLUMNS": "200", "NO_COLOR": "1"})
    epochs = epoch_records(folder)
    last = epochs[plan.epochs]
    scored = sorted(e for e, r in epochs.items() if "miou" in r)
    observed = {k: last[k] for k in ("miou_observed", "iou_observed") if k in last}
    result = {"row": row, "seed": seed, "miou": last["miou"], "iou": last["iou"], **observed,
              "curve": {"epochs": scored, "miou": [epochs[e]["miou"] for e in scored]},
              "steps": last["step"], "train_seconds": round(sum(r["seconds"] for r in epochs.values()), 1),
              "wall_seconds": round(time.perf_counter() - start, 1), "resumed": resume}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, result_path)
    return {**result, "run_dir": str(folder.relative_to(REPO)),
            "provenance": run_provenance(provenance.read(folder), row), "skipped": False}


def parse_row_seeds(values: Sequence[str], rows: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`ROW=S,S` options -> row -> seeds (ValueError naming a malformed one or an unknown row)."""
    out: dict[str, tuple[int, ...]] = {}
    for value in values:
        row, sep, seeds = value.partition("=")
        if not sep or row not in rows:
            raise ValueError(f"'{value}' is not ROW=SEEDS with ROW one of the rows run ({', '.join(rows)})")
        try:
            out[row] = tuple(int(v) for v in seeds.split(","))
        except ValueError:
            raise ValueError(f"'{value}': seeds must be comma-separated integers") from None
    return out


def run_order(rows: Sequence[str], seeds: Sequence[int],
              row_seeds: Mapping[str, Sequence[int]]) -> list[tuple[str, int]]:
    """(row, seed) tasks, seed by seed (the first seed of every row comes first), each row with its
    own seeds where `row_seeds` names them."""
    every = sorted({*seeds, *(s for v in row_seeds.values() for s in v)})
    return [(row, seed) for seed in every for row in rows if seed in row_seeds.get(row, seeds)]


def table_provenance(code: Mapping[str, Any], done: Sequence[Mapping[str, Any]], reuse_runs: bool,
                     allow_dirty: bool) -> dict[str, Any]:
    """The table's code, the commits its runs were trained by, and what was allowed and reused."""
    commits = sorted({str(c) for r in done for c in r["provenance"]["commits"]})
    return {"code": dict(code), "run_commits": commits,
            "one_commit": commits == [code.get("commit")],
            "reuse_runs_flag": reuse_runs, "allow_dirty_flag": allow_dirty,
            "reused_runs": {f"{r['row']}-s{r['seed']}": r["provenance"]["reused"]
                            for r in done if r["provenance"].get("reused")}}


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


def cell(stats: Mapping[str, Any] | None) -> str:
    """'mean +- std' of a seed_stats entry ('' when absent)."""
    if stats is None:
        return ""
    return f"{stats['mean']:.2f}" + ("" if stats["std"] is None else f" +- {stats['std']:.2f}")


def print_table(rows: Mapping[str, Mapping[str, Any]], title: str) -> None:
    """Rows with mean +- std (the trainer's, fixed-class and observed-point mIoU), per-seed values
    and the paper's number."""
    table = Table(title=title)
    for col in ("row", "set", "scene", "inter", "FB", "mIoU mean +- std", "per seed", "vs prev",
                "fixed classes", "observed", "paper"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for row, entry in rows.items():
        prev = entry.get("delta_vs_previous")
        switches = load_config(PRESETS[row]).to_dict()
        table.add_row(row, *("x" if switches[s] else "-" for s in SWITCHES),
                      cell({"mean": entry["miou_mean"], "std": entry["miou_std"]}),
                      ", ".join(f"{v:.2f}" for v in entry["per_seed"]),
                      "" if prev is None else f"{prev['mean']:+.2f}", cell(entry.get("miou_fixed_classes")),
                      cell(entry.get("miou_observed")), f"{PAPER_TABLE2[row]:.1f}" if row in PAPER_TABLE2 else "")
    Console().print(table)


def main() -> None:
    """Prepare the world, train every (row, seed) not yet done, aggregate, write JSON and Fig. 6."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-seed", type=int, default=0, help="seed of the world's rooms (default 0)")
    parser.add_argument("--vlm-noise", type=float, default=1.0, help="simulated VLM noise scale (default 1.0)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a world of {QUICK_ROOMS[0]}+{QUICK_ROOMS[1]} rooms, 1 seed, 2 epochs (a smoke run)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at once (default 2)")
    parser.add_argument("--epochs", type=int, help=f"epochs per run (default {FULL.epochs})")
    parser.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")],
                        help=f"comma-separated seeds (default {','.join(map(str, FULL.seeds))})")
    parser.add_argument("--rows", type=lambda v: v.split(","), default=list(ROWS),
                        help="comma-separated rows: Table 2's I-V (the default) and plus (hicl-plus)")
    parser.add_argument("--voxel-size", type=float, help=f"metres (default {VOXEL_SIZE})")
    parser.add_argument("--batch-size", type=int, help="rooms per step (default: the preset's, 4)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), help="trainer device (default: the preset's, cpu)")
    parser.add_argument("--row-seeds", action="append", default=[], metavar="ROW=SEEDS",
                        help="seeds of one row instead of --seeds, e.g. --row-seeds plus=0 (repeatable)")
    parser.add_argument("--eval-every", type=int,
                        help="validate every row every N epochs (default: rows I, V and plus every "
                             "max(1, epochs // 20), the others at their last epoch)")
    parser.add_argument("--out", type=Path, help="output JSON (default benchmarks/results/table2[-<world>]"
                                                 "[-<schedule>].json; Fig. 6 goes beside it)")
    parser.add_argument("--reuse-runs", action="store_true",
                        help="use runs in the run folder that another commit or other stores trained "
                             "(refused otherwise); the JSON names each as reused")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="train with uncommitted changes in the tree (the JSON records their digest)")
    parser.add_argument("--replot", type=Path, metavar="TABLE",
                        help="only redraw Fig. 6 of a written table JSON (beside it, <stem>-fig6.png); "
                             "trains and reads nothing else")
    args = parser.parse_args()
    if args.replot is not None:
        try:
            print(f"wrote {draw_fig6(json.loads(args.replot.read_text()), fig6_beside(args.replot))}")
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"--replot {args.replot}: not a table with curves ({type(exc).__name__}: {exc})")
        return
    if unknown := sorted(set(args.rows) - set(PRESETS)):
        parser.error(f"--rows: unknown row(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs: must be at least 1")
    if args.vlm_noise < 0:
        parser.error("--vlm-noise: must be >= 0")
    if args.voxel_size is not None and args.voxel_size <= 0:
        parser.error("--voxel-size: must be > 0")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size: must be at least 1")
    if args.eval_every is not None and args.eval_every < 1:
        parser.error("--eval-every: must be at least 1")
    rows_run = [r for r in PRESETS if r in args.rows]
    try:
        row_seeds = parse_row_seeds(args.row_seeds, rows_run)
    except ValueError as exc:
        parser.error(f"--row-seeds: {exc}")
    plan = with_schedule(plan_for(World(args.world_seed, args.vlm_noise), args.quick), args.epochs, args.seeds,
                         rows_run, args.voxel_size, args.batch_size, args.device)
    plan = dataclasses.replace(plan, eval_every=args.eval_every)
    if args.out is not None:
        plan = with_out(plan, args.out)
    code = provenance.code_state()
    if code.get("dirty") and not (args.allow_dirty or args.quick):
        parser.error(f"the tree has uncommitted changes ({provenance.describe_code(code)}): a table's runs "
                     f"are trained at one commit; commit them, or pass --allow-dirty")
    curves_of = curve_rows(plan, rows_run)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    load = LoadSampler()
    start = time.perf_counter()
    plan.root.mkdir(parents=True, exist_ok=True)
    labels = score_labels(plan)
    preprocess_s = time.perf_counter() - start
    tasks = run_order(rows_run, plan.seeds, row_seeds)
    reused = check_runs(plan, tasks, code, args.reuse_runs)
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda t: train_one(plan, t[0], t[1], threads, args.reuse_runs), tasks))
    for r in done:
        r["provenance"]["reused"] = reused.get(f"{r['row']}-s{r['seed']}")
    classes = labels["classes"]
    per_seed = {row: sorted((r for r in done if r["row"] == row), key=lambda r: r["seed"]) for row in rows_run}
    rows = aggregate(per_seed, classes)
    curves = {row: aggregate_curves([r["curve"] for r in per_seed[row]]) for row in curves_of}
    cfg = load_config("ablation-V", overrides(plan, "V", plan.seeds[0]))
    train_scenes, val_scenes = plan.world.split("train"), plan.world.split("val")
    steps_per_epoch = -(-len(train_scenes) // cfg.batch_size)
    world = plan.world.describe()
    result = {
        "benchmark": "Table 2 ablation rows I-V on synthetic ScanNet (simulated VLM), mean and "
                     "sample std over seeds of the last-epoch validation mIoU (%)",
        "command": " ".join([".venv/bin/python", "benchmarks/bench_quality.py", *sys.argv[1:]]),
        "quick": args.quick,
        "world": world,
        "rows": rows,
        "fixed_classes": classes,
        "maskclip3d_miou": labels["pseudo"]["miou"],
        "paper_table2_scannet_val": PAPER_TABLE2,
        "switches": {row: {s: load_config(PRESETS[row]).to_dict()[s] for s in SWITCHES} for row in rows_run},
        "presets": {row: PRESETS[row] for row in rows_run},
        "beyond_paper": {row: {k: load_config(PRESETS[row]).to_dict()[k] for k in BEYOND_PAPER} for row in rows_run},
        "curves": curves,
        "noise": labels["params"],
        "noise_lookalikes": [list(pair) for pair in SCANNET_LOOKALIKES],
        "labels_val": {stage: {"point_miou": labels[stage]["miou"], "pair_accuracy": labels[stage]["pair_accuracy"]}
                       for stage in ("pseudo", "refine")},
        "schedule": {**schedule(plan), "curve_rows": curves_of,
                     "eval_every_epochs": {row: eval_every(plan, row) for row in rows_run},
                     "steps_per_epoch": steps_per_epoch, "steps_per_run": steps_per_epoch * plan.epochs,
                     "phase_starts": list(phase_starts(cfg)),
                     "label_source": {row: load_config(PRESETS[row]).label_stage for row in rows_run},
                     "score": "last epoch, full point resolution, validation split", "seeds": list(plan.seeds),
                     "row_seeds": {row: sorted({s for r, s in tasks if r == row}) for row in rows_run}},
        "dataset": {"generator": f"{world['generator']['function']} (seed {plan.world.seed})",
                    "rooms": len(train_scenes) + len(val_scenes), "train_scenes": train_scenes,
                    "val_scenes": val_scenes, "raw": world["raw"], "store": world["stores"],
                    "frames_per_room": len(list((plan.raw / "scans" / val_scenes[0] / "pose").glob("*.txt")))},
        "runs": [{k: v for k, v in r.items() if k not in ("iou", "iou_observed", "curve")}
                 | {"miou_fixed_classes": fixed_miou(r["iou"], classes)} for r in done],
        "provenance": table_provenance(code, done, args.reuse_runs, args.allow_dirty),
        "jobs": args.jobs, "threads_per_job": threads,
        "wall_s": round(time.perf_counter() - start, 1), "preprocess_s": round(preprocess_s, 1),
        "run_wall_s_sum": round(sum(r["wall_seconds"] for r in done), 1),
        "note_wall": "wall_s covers this invocation only; runs marked skipped were done by an "
                     "earlier one (their wall_seconds are from then)",
        "load_average_1m": load.stop(),
        "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
    }
    if curves_of:
        draw_fig6(result, plan.out_png)
    plan.out_json.parent.mkdir(parents=True, exist_ok=True)
    plan.out_json.write_text(json.dumps(result, indent=1) + "\n")
    print_table(rows, f"Table 2 on {plan.world.name} ({len(plan.seeds)} seed(s), {plan.epochs} epochs)")
    print(f"wrote {plan.out_json}{f' and {plan.out_png}' if curves_of else ''} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
