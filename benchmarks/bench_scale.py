"""Benchmark: preprocessing wall time, peak memory per worker and store size vs scene count.

Generates the largest count of synthetic ScanNet-style rooms once (scene i depends only on
(seed, i)), then runs the whole stage graph of ``synthetic-scannet`` on the first n of them into
a fresh store, for each n, with the default local cluster (2 worker processes). A thread samples
the resident memory of every worker process; the peak of the largest is "peak RSS per worker".
A least-squares line wall = a + b * n gives the per-scene cost b and its linearity (R^2), and
the per-stage seconds per scene and store bytes per scene feed the README's estimates for full
ScanNet.

Run: .venv/bin/python benchmarks/bench_scale.py [--counts 8,24,80]  -> benchmarks/results/scale.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import zarr
from rich.console import Console

from pipeline.datasets.synthetic import generate_scannet
from pipeline.progress import ProgressView
from pipeline.runner import RunConfig, run
from pipeline.stages import load_graph

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "data" / "bench" / "scale"
DATASET = "synthetic-scannet"


class PeakRss:
    """Samples the RSS of this process's descendants; keeps each one's peak (bytes)."""

    def __init__(self, period_s: float = 0.2):
        self.period_s = period_s
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), rss)
            self._stop.wait(self.period_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def tree_bytes(path: Path) -> int:
    """Bytes of all files under a folder."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def scene_shape(store_root: Path) -> dict[str, float]:
    """Mean points and frames per scene of a finished scenes store."""
    group = zarr.open_group(str(store_root / "scenes.zarr"), mode="r")
    points, frames = [], []
    for _, scene in group.groups():
        points.append(scene["points"].shape[0])
        frames.append(scene["world_to_camera"].shape[0])
    return {"points_per_scene": float(np.mean(points)), "frames_per_scene": float(np.mean(frames))}


def run_count(raw: Path, n: int) -> dict:
    """Preprocess the first n rooms into a fresh store; wall time, per-stage seconds, peaks."""
    store_root = WORK / f"stores-{n}"
    shutil.rmtree(store_root, ignore_errors=True)
    cfg = RunConfig(dataset=DATASET, data_root=raw, store_root=str(store_root), limit=n)
    graph = load_graph()
    start = time.perf_counter()
    with PeakRss() as rss, open(os.devnull, "w") as sink, ProgressView(Console(file=sink)) as view:
        reports = run(graph, cfg, view)
    wall = time.perf_counter() - start
    failed = {r.name: r.failed for r in reports if r.failed}
    if failed:
        raise SystemExit(f"scale run with {n} scenes had failures: {failed}")
    stores = {p.name: tree_bytes(p) for p in sorted(store_root.glob("*.zarr"))}
    peaks = sorted(rss.peaks.values(), reverse=True)
    return {"scenes": n, "wall_s": round(wall, 2),
            "stage_s": {r.name: round(r.seconds, 2) for r in reports},
            "peak_rss_per_worker_mb": round(peaks[0] / 2**20, 1) if peaks else None,
            "processes_sampled": len(peaks),
            "store_mb": round(sum(stores.values()) / 2**20, 2),
            "store_mb_by_stage": {k: round(v / 2**20, 3) for k, v in stores.items()},
            **scene_shape(store_root)}


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares y = a + b x and its R^2."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    r2 = 1.0 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
    return {"intercept": round(float(a), 3), "per_scene": round(float(b), 3), "r2": round(r2, 4)}


def main() -> None:
    """Generate, run each count, fit, write benchmarks/results/scale.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="8,24,80", help="Comma-separated scene counts.")
    parser.add_argument("--keep", action="store_true", help="Keep the generated rooms and stores.")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    raw = WORK / "raw"
    start = time.perf_counter()
    if not (raw / "scans").is_dir() or len(list((raw / "scans").iterdir())) < counts[-1]:
        shutil.rmtree(raw, ignore_errors=True)
        generate_scannet(raw, counts[-1], seed=0, val=0)
    generate_s = time.perf_counter() - start
    rows = []
    for n in counts:
        rows.append(run_count(raw, n))
        print(json.dumps(rows[-1]))
    result = {
        "benchmark": "synthetic-scannet preprocessing (all stages) vs scene count, 2 local workers",
        "command": f"python benchmarks/bench_scale.py --counts {args.counts}",
        "generate_s": round(generate_s, 1), "rows": rows,
        "fit_wall_s": linear_fit([r["scenes"] for r in rows], [r["wall_s"] for r in rows]),
        "fit_store_mb": linear_fit([r["scenes"] for r in rows], [r["store_mb"] for r in rows]),
        "load_average_1m": round(os.getloadavg()[0], 2), "cpu_cores": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    out = ROOT / "benchmarks" / "results" / "scale.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("fit_wall_s", "fit_store_mb")}, indent=2))
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
