"""Benchmark: the geometric-set kernels (Sec. 3.2), warm, one thread, on synthetic scenes.

Cases:

- ``mesh``: `segment_mesh` on the procedural office of `pipeline.datasets.synthetic` (room
  grammar seed (0, 0), meshed at 3 cm: about 129k vertices), ScanNet's k = 0.01 and 20 vertices;
- ``lidar_*``: `supervoxels` on a 32-beam sweep (HDL-32E elevations, ray-cast in the
  benchmark: a street with ground, facades, parked cars, poles and pedestrians; about 35k
  returns) at voxel/seed 0.5/5.0 m and 0.2/2.0 m, PCA normals, no colours;
- ``indoor``: `supervoxels` on a 40k-point scan of a synthetic bedroom (mesh vertices at
  5 cm, 5 mm jitter, textured colours, PCA normals), voxel 0.05 m, seed 0.3 m, PCL's weights.

Quality against the ground-truth segments (object instance per LiDAR point; (NYU40 label,
instance) per room point). N(i) is the set of the 8 nearest other points of i; a point is a
boundary point of a labelling when some point of N(i) has another label. r is the tolerance:
one voxel for VCCS, the grid spacing for the mesh.

- boundary recall: the fraction of ground-truth boundary points that have a boundary point of
  the sets within distance r (themselves included);
- undersegmentation error (leakage, Neubert & Protzel 2012): every set S that overlaps a
  ground-truth segment G leaks min(|S & G|, |S - G|) points; UE = sum over (S, G) / N.

Only the kernel call is timed (median and minimum of REPEATS warm calls, pinned to one CPU);
building the scenes and scoring are not. The load average is recorded with the timings, as the
machine may be shared.

Run: .venv/bin/python benchmarks/bench_geosets.py  -> benchmarks/results/geosets.json
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ["NUMBA_NUM_THREADS"] = "1"  # a one-thread measurement: set before numba is imported

import numba  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from pipeline.datasets.synthetic import rooms, texture  # noqa: E402
from pipeline.datasets.synthetic.mesh import build_room_mesh  # noqa: E402
from pipeline.geometry.felzenszwalb import segment_mesh  # noqa: E402
from pipeline.geometry.vccs import supervoxels  # noqa: E402
from pipeline.stages import stage_params  # noqa: E402

REPEATS = 15
NEIGHBOURS = 8
SENSOR = np.array([0.0, 0.0, 1.8])
ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)  # HDL-32E
AZIMUTH_STEPS = 1150
MAX_RANGE = 70.0


def room_mesh(scene_type: str, spacing: float, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertices f32, faces, colours and ground-truth segment per vertex of a synthetic room."""
    rng = np.random.default_rng([seed, 0])
    room = rooms.generate_room(rng, scene_type)
    mesh = build_room_mesh(room, spacing)
    colors = texture.vertex_colors(mesh.vertices, mesh.materials, mesh.styles, rng)
    instance = np.array([s[1] for s in mesh.styles])[mesh.materials]
    gt = np.unique(np.stack([mesh.labels.astype(np.int64), instance], 1), axis=0,
                   return_inverse=True)[1].ravel()
    return mesh.vertices.astype(np.float32), mesh.faces, colors, gt


def indoor_scan(n: int = 40_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points, colours and segments: n vertices of the bedroom meshed at 5 cm, jittered 5 mm."""
    vertices, _, colors, gt = room_mesh("bedroom", 0.05)
    rng = np.random.default_rng(7)
    keep = np.sort(rng.choice(len(vertices), min(n, len(vertices)), replace=False))
    points = vertices[keep] + rng.normal(0.0, 0.005, (len(keep), 3)).astype(np.float32)
    return points, colors[keep], gt[keep]


def street_objects(rng: np.random.Generator) -> tuple[list, list]:
    """Yawed boxes (centre xy, half sizes, yaw, z0, z1) and vertical cylinders (xy, r, z0, z1)."""
    boxes = [((x, side * 16.0), (9.0, 3.5), 0.0, 0.0, rng.uniform(6, 15))
             for side in (-1, 1) for x in np.arange(-45.0, 46.0, 19.0)]  # facades
    for side in (-1, 1):
        for x in np.arange(-35.0, 36.0, 6.5):
            if rng.random() < 0.7:  # parked cars
                boxes.append(((x + rng.uniform(-1, 1), side * 5.5), (2.2, 0.9),
                              rng.uniform(-0.1, 0.1), 0.2, rng.uniform(1.4, 1.7)))
    for _ in range(4):  # moving cars
        boxes.append(((rng.uniform(-30, 30), rng.choice([-2.0, 2.0])), (2.3, 0.95),
                      rng.uniform(-0.05, 0.05), 0.2, 1.5))
    cylinders = [((x, side * 8.0), 0.15, 0.0, 6.0) for side in (-1, 1)
                 for x in np.arange(-40.0, 41.0, 12.0)]  # poles
    cylinders += [((rng.uniform(-20, 20), rng.uniform(-9, 9)), 0.25, 0.0, 1.75)
                  for _ in range(6)]  # pedestrians
    return boxes, cylinders


def lidar_sweep(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One ray-cast 32-beam revolution: points f32 and object id per point (0 = ground)."""
    rng = np.random.default_rng(seed)
    az = np.linspace(0, 2 * np.pi, AZIMUTH_STEPS, endpoint=False)
    el = np.radians(ELEVATIONS_DEG)
    a, e = (g.ravel() for g in np.meshgrid(az, el, indexing="ij"))
    d = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], 1)
    t = np.full(len(d), np.inf)
    obj = np.zeros(len(d), np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ground = np.where(d[:, 2] < 0, -SENSOR[2] / d[:, 2], np.inf)
    t = np.minimum(t, ground)
    boxes, cylinders = street_objects(rng)
    for k, ((cx, cy), (hx, hy), yaw, z0, z1) in enumerate(boxes, start=1):
        c, s = math.cos(yaw), math.sin(yaw)
        o = np.array([c * (SENSOR[0] - cx) + s * (SENSOR[1] - cy),
                      -s * (SENSOR[0] - cx) + c * (SENSOR[1] - cy), SENSOR[2]])
        dl = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], 1)
        lo, hi = np.array([-hx, -hy, z0]), np.array([hx, hy, z1])
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (lo - o) / dl, (hi - o) / dl
        t_in = np.nanmax(np.minimum(t0, t1), axis=1)
        t_out = np.nanmin(np.maximum(t0, t1), axis=1)
        hit = (t_in <= t_out) & (t_in > 0) & (t_in < t)
        t[hit], obj[hit] = t_in[hit], k
    for k, ((cx, cy), r, z0, z1) in enumerate(cylinders, start=len(boxes) + 1):
        ox, oy = SENSOR[0] - cx, SENSOR[1] - cy
        qa = d[:, 0] ** 2 + d[:, 1] ** 2
        qb = 2 * (ox * d[:, 0] + oy * d[:, 1])
        disc = qb * qb - 4 * qa * (ox * ox + oy * oy - r * r)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_in = (-qb - np.sqrt(disc)) / (2 * qa)
        z = SENSOR[2] + t_in * d[:, 2]
        hit = (disc > 0) & (t_in > 0) & (t_in < t) & (z >= z0) & (z <= z1)
        t[hit], obj[hit] = t_in[hit], k
    ok = t < MAX_RANGE
    t = t[ok] + rng.normal(0.0, 0.02, ok.sum())
    return (SENSOR + t[:, None] * d[ok]).astype(np.float32), obj[ok]


def neighbours(points: np.ndarray) -> np.ndarray:
    """Indices of the NEIGHBOURS nearest other points of each point."""
    return cKDTree(points).query(points, NEIGHBOURS + 1)[1][:, 1:]


def boundary(labels: np.ndarray, nbrs: np.ndarray) -> np.ndarray:
    """Points with a neighbour of another label."""
    return (labels[nbrs] != labels[:, None]).any(axis=1)


def boundary_recall(sets: np.ndarray, gt: np.ndarray, points: np.ndarray, nbrs: np.ndarray,
                    radius: float) -> float:
    """Fraction of ground-truth boundary points with a set boundary point within `radius`."""
    gt_b = np.flatnonzero(boundary(gt, nbrs))
    set_b = boundary(sets, nbrs)
    near = cKDTree(points).query_ball_point(points[gt_b], radius)
    return float(np.mean([set_b[js].any() for js in near]))


def undersegmentation_error(sets: np.ndarray, gt: np.ndarray) -> float:
    """Leakage: sum over overlapping (set, segment) of min(|S & G|, |S - G|), over N."""
    pair, count = np.unique(sets.astype(np.int64) * (gt.max() + 1) + gt, return_counts=True)
    size = np.bincount(sets)[pair // (gt.max() + 1)]
    return float(np.minimum(count, size - count).sum() / len(sets))


def median_seconds(fn: Callable[[], np.ndarray]) -> tuple[float, list[float]]:
    """Median wall time of REPEATS calls after one warm-up call, and all the timings."""
    fn()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def run_case(name: str, fn: Callable[[], np.ndarray], n: int, target_s: float,
             gt: np.ndarray, radius: float, points: np.ndarray, **info: object) -> dict:
    """Time one kernel call and score its output."""
    median, runs = median_seconds(fn)
    sets = fn()
    nbrs = neighbours(points)
    row = {"case": name, **info, "points": n, "median_s": round(median, 5),
           "min_s": round(min(runs), 5), "target_s": target_s, "meets_target": median <= target_s,
           "all_assigned": bool(len(sets) == n and sets.min() >= 0),
           "num_sets": int(sets.max()) + 1, "gt_segments": len(np.unique(gt)),
           "boundary_recall": round(boundary_recall(sets, gt, points, nbrs, radius), 4),
           "undersegmentation_error": round(undersegmentation_error(sets, gt), 4),
           "runs_s": [round(t, 5) for t in runs]}
    print(json.dumps({k: v for k, v in row.items() if k != "runs_s"}))
    return row


def main() -> None:
    """Time every case on one core and write benchmarks/results/geosets.json."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    load_before = os.getloadavg()[0]
    cases = []
    declared = stage_params("geosets")  # the kernels' constants, as the geosets stage declares them
    mesh_params = {k: declared[k] for k in ("k_thresh", "seg_min_verts")}
    weights = {k: declared[k] for k in ("color_importance", "spatial_importance", "normal_importance")}
    vertices, faces, _, gt = room_mesh("office", 0.03)
    cases.append(run_case("mesh", lambda: segment_mesh(vertices, faces, **mesh_params), len(vertices), 0.12, gt,
                          0.03, vertices, faces=len(faces), mesh="synthetic office, 3 cm grid"))
    points, obj = lidar_sweep()
    for voxel, seed, target in ((0.5, 5.0, 0.018), (0.2, 2.0, 0.032)):
        cases.append(run_case(
            f"lidar_{voxel}_{seed}",
            lambda v=voxel, s=seed: supervoxels(points, voxel_resolution=v, seed_resolution=s, **weights),
            len(points), target, obj, voxel, points, voxel_resolution=voxel,
            seed_resolution=seed))
    points, colors, gt = indoor_scan()
    cases.append(run_case(
        "indoor", lambda: supervoxels(points, colors, voxel_resolution=0.05, seed_resolution=0.3, **weights),
        len(points), 0.12, gt, 0.05, points, voxel_resolution=0.05, seed_resolution=0.3))
    result = {
        "benchmark": "geometric sets: Felzenszwalb on a mesh, VCCS on LiDAR and indoor clouds",
        "command": ".venv/bin/python benchmarks/bench_geosets.py", "repeats": REPEATS,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "threads": {"NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
                    "cpu_affinity": sorted(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity") else None},
        "cases": cases,
        "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__,
    }
    out = Path(__file__).parent / "results" / "geosets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
