"""Benchmark: the pairs stage's Numba kernel vs vectorised NumPy, 150k points x 100 RGB-D frames.

Run: .venv/bin/python benchmarks/bench_pairs.py  -> benchmarks/results/pairs.json
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.datasets.synthetic.camera import look_at
from pipeline.labels.pairs import pairs_stage

NUM_POINTS, NUM_FRAMES, HW, REPEATS = 150_000, 100, (240, 320), 11
INTR = np.array([[290.0, 0.0, 160.0], [0.0, 290.0, 120.0], [0.0, 0.0, 1.0]])
ROOM = (np.array([0.0, 0.0, 0.0]), np.array([8.0, 6.0, 3.0]))
BOXES = [(np.array([3.0, 2.0, 0.0]), np.array([4.5, 3.0, 0.75])),
         (np.array([6.5, 0.5, 0.0]), np.array([7.8, 1.3, 1.8])),
         (np.array([0.3, 4.0, 0.0]), np.array([2.3, 5.0, 0.8]))]
PARAMS = {"min_depth": 0.0, "border": 0, "depth_abs_tol": 0.05, "depth_rel_tol": None,
          "occlusion": False}


def slab(origin, dirs, lo, hi):
    """Entry and exit ray parameters through an axis-aligned box."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - origin) / dirs, (hi - origin) / dirs
    return np.nanmax(np.minimum(t0, t1), axis=1), np.nanmin(np.maximum(t0, t1), axis=1)


def render_depth(pose: np.ndarray) -> np.ndarray:
    """Ray-cast depth image of the furnished room (camera z per pixel centre)."""
    rows, cols = np.mgrid[0:HW[0], 0:HW[1]]
    pix = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
    dirs = (pose[:3, :3].T @ np.linalg.inv(INTR) @ pix).T
    eye = -pose[:3, :3].T @ pose[:3, 3]
    depth = slab(eye, dirs, *ROOM)[1]
    for lo, hi in BOXES:
        t_in, t_out = slab(eye, dirs, lo, hi)
        depth = np.where((t_in <= t_out) & (t_in > 0), np.minimum(depth, t_in), depth)
    return depth.reshape(HW).astype(np.float32)


def make_scene(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """150k points on the room's and boxes' surfaces, 100 posed depth frames around the room."""
    surfaces = [ROOM, *BOXES]
    per = NUM_POINTS // len(surfaces)
    pts = []
    for lo, hi in surfaces:
        p = rng.uniform(lo, hi, (per, 3))
        axis = rng.integers(0, 3, per)
        p[np.arange(per), axis] = np.where(rng.random(per) < 0.5, lo[axis], hi[axis])
        pts.append(p)
    poses = []
    for k in range(NUM_FRAMES):
        a = 2 * np.pi * k / NUM_FRAMES
        eye = np.array([4.0 + 3.0 * np.cos(a), 3.0 + 2.2 * np.sin(a), 1.5])
        poses.append(look_at(eye, np.array([4.0, 3.0, 0.6]) + rng.uniform(-1, 1, 3)))
    return {"points": np.concatenate(pts).astype(np.float32), "world_to_camera": np.stack(poses),
            "intrinsics": np.stack([INTR] * NUM_FRAMES),
            "depth": np.stack([render_depth(p) for p in poses]),
            "color": np.zeros((NUM_FRAMES, *HW, 3), np.uint8)}


def numpy_pairs(scene: dict[str, np.ndarray], tol: float = 0.05) -> dict[str, np.ndarray]:
    """The same projection and depth test, vectorised with NumPy one frame at a time."""
    pts = scene["points"].astype(np.float64)
    h, w = HW
    points, pixels, counts = [], [], [0]
    for pose, k, depth in zip(scene["world_to_camera"], scene["intrinsics"], scene["depth"],
                              strict=True):
        cam = pts @ pose[:3, :3].T + pose[:3, 3]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn, yn = cam[:, 0] / z, cam[:, 1] / z
        u = k[0, 0] * xn + k[0, 1] * yn + k[0, 2]
        v = k[1, 0] * xn + k[1, 1] * yn + k[1, 2]
        idx = np.flatnonzero((z > 0) & (u > 0) & (u < w) & (v > 0) & (v < h))
        col = np.minimum(np.floor(u[idx] + 0.5).astype(np.int32), w - 1)
        row = np.minimum(np.floor(v[idx] + 0.5).astype(np.int32), h - 1)
        d = depth[row, col]
        ok = (d > 0) & (np.abs(d - z[idx]) < tol)
        points.append(idx[ok].astype(np.int32))
        pixels.append(np.stack([row[ok], col[ok]], 1).astype(np.int16))
        counts.append(int(ok.sum()))
    return {"point": np.concatenate(points), "pixel": np.concatenate(pixels),
            "frame_offsets": np.cumsum(counts, dtype=np.int64)}


def interleaved_seconds(fns: dict, repeats: int = REPEATS) -> dict[str, list[float]]:
    """Wall times of each function, called in turn (after one warm-up each), so that both see
    the same machine load; ratios of medians measured this way are what we quote."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    """Time both implementations, check they agree, write benchmarks/results/pairs.json."""
    scene = make_scene(np.random.default_rng(0))
    got, want = pairs_stage({"scenes": scene}, PARAMS), numpy_pairs(scene)
    for name in ("point", "pixel", "frame_offsets"):
        np.testing.assert_array_equal(got[name], want[name])
    times = interleaved_seconds({"numba": lambda: pairs_stage({"scenes": scene}, PARAMS),
                                 "numpy": lambda: numpy_pairs(scene)})
    kernel_all, numpy_all = times["numba"], times["numpy"]
    kernel_s, numpy_s = statistics.median(kernel_all), statistics.median(numpy_all)
    result = {
        "benchmark": "pairs stage (projection + depth test) vs vectorised NumPy",
        "command": "python benchmarks/bench_pairs.py",
        "points": NUM_POINTS, "frames": NUM_FRAMES, "image_hw": list(HW),
        "pairs": int(len(got["point"])), "repeats": REPEATS,
        "numba_median_s": round(kernel_s, 5), "numpy_median_s": round(numpy_s, 5),
        "speedup": round(numpy_s / kernel_s, 2),
        "numba_runs_s": [round(t, 5) for t in kernel_all],
        "numpy_runs_s": [round(t, 5) for t in numpy_all],
        "load_average_1m": round(os.getloadavg()[0], 2), "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0], "numpy": np.__version__,
    }
    out = Path(__file__).parent / "results" / "pairs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
