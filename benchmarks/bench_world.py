"""Benchmark world facts: how the synthetic scans compare with ScanNet's sensor and meshes.

For a few rooms of a world seed (regenerated in memory, nothing written): the fused mesh's vertex
count (ScanNet's `_vh_clean_2.ply`: tens of thousands to about 150k), the share of vertices seen
by a kept frame within the pairs stage's depth tolerance (coverage), the largest distance from a
fused vertex to every depth measurement (a fused scan holds no hidden surface), the share of
vertices left unannotated, and the depth noise of one frame: the measured minus the true depth in
bins of depth against the Kinect model sigma(z) = 1.2 mm + 1.9 mm (z - 0.4 m)^2, and the share of
pixels without a return by cause.

Run: .venv/bin/python benchmarks/bench_world.py [--world-seed 0] [--rooms 0,1,2,3,4]
     -> benchmarks/results/world.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.datasets.synthetic import camera, coverage, rooms, sensor, texture
from pipeline.datasets.synthetic.fusion import FusionParams
from pipeline.datasets.synthetic.mesh import build_room_mesh
from pipeline.datasets.synthetic.raycast import MeshCaster
from pipeline.datasets.synthetic.scannet import FRAMES, FUSION_EVERY, SPACING, make_scan

REPO = Path(__file__).resolve().parent.parent
DEPTH_BINS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)


def room_facts(seed: int, index: int) -> dict[str, Any]:
    """Vertex count, coverage, hidden-surface distance and unannotated share of one scan."""
    start = time.perf_counter()
    scan = make_scan(seed, index)
    seconds = time.perf_counter() - start
    seen = coverage.observed(scan.vertices, scan.poses, scan.intrinsics, scan.depth)
    dist = coverage.depth_distance(scan.vertices, scan.fused_poses, scan.intrinsics, scan.fused_depth)
    return {"room": index, "scene_type": scan.scene_type, "vertices": int(len(scan.vertices)),
            "kept_frames": int(len(scan.poses)), "fused_frames": int(len(scan.fused_poses)),
            "coverage": round(float(seen.mean()), 4), "max_depth_distance_m": round(float(dist.max()), 4),
            "p99_depth_distance_m": round(float(np.quantile(dist, 0.99)), 4),
            "unannotated": round(float(np.mean(scan.labels == 0)), 4), "generate_seconds": round(seconds, 1)}


def frame_noise(seed: int, index: int, frame: int = 0) -> dict[str, Any]:
    """Measured minus true depth of one rendered frame, by depth bin, and the dropout shares."""
    rng = np.random.default_rng([seed, index])
    room = rooms.generate_room(rng, rooms.SCENE_TYPES[(seed + index) % len(rooms.SCENE_TYPES)])
    mesh = build_room_mesh(room, SPACING)
    colors = texture.vertex_colors(mesh.vertices, mesh.materials, mesh.styles, rng)
    pose = camera.camera_path(room, FRAMES * FUSION_EVERY, rng)[frame]
    k = camera.intrinsics(rng, camera.IMAGE_HW)
    hits = MeshCaster(mesh.vertices, mesh.faces, colors).cast(pose, k, camera.IMAGE_HW, np.array([0.0, 0.0, 1.0]))
    measured = sensor.measure_depth(hits.depth, hits.cos_incidence, np.random.default_rng([seed, index, frame]))
    z, m = hits.depth, measured.astype(np.float64) / 1000.0
    model = sensor.DepthModel()
    in_range = (z >= model.min_depth) & (z <= model.max_depth)
    bins = []
    for lo, hi in zip(DEPTH_BINS[:-1], DEPTH_BINS[1:], strict=True):
        sel = (z >= lo) & (z < hi) & (m > 0)
        if sel.sum() < 100:
            continue
        err = m[sel] - z[sel]
        bins.append({"depth_m": [lo, hi], "pixels": int(sel.sum()), "error_std_mm": round(1000 * float(err.std()), 2),
                     "error_mean_mm": round(1000 * float(err.mean()), 2),
                     "model_sigma_mm": round(1000 * float(sensor.axial_sigma(z[sel]).mean()), 2)})
    grazing = np.degrees(np.arccos(np.clip(hits.cos_incidence, 0, 1))) > model.grazing_start_deg
    return {"room": index, "frame": frame, "pixels": int(z.size),
            "no_surface": round(float(np.mean(z == 0)), 4),
            "out_of_range": round(float(np.mean((z > 0) & ~in_range)), 4),
            "dropped_in_range": round(float(np.mean(in_range & (measured == 0))), 4),
            "grazing_pixels": round(float(np.mean(in_range & grazing)), 4),
            "dropped_of_grazing": round(float(np.mean(measured[in_range & grazing] == 0)), 4) if (in_range & grazing).any() else None,
            "quantum_mm": 1, "bins": bins}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--rooms", type=lambda v: [int(x) for x in v.split(",")], default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "world.json")
    args = parser.parse_args()
    facts = [room_facts(args.world_seed, i) for i in args.rooms]
    for f in facts:
        print(json.dumps(f))
    noise = frame_noise(args.world_seed, args.rooms[0])
    print(json.dumps(noise))
    result = {"command": " ".join([".venv/bin/python", "benchmarks/bench_world.py", *sys.argv[1:]]),
              "world_seed": args.world_seed, "fusion": FusionParams().__dict__, "depth_model": sensor.DepthModel().__dict__,
              "rooms": facts, "frame_noise": noise,
              "summary": {"coverage_min": min(f["coverage"] for f in facts),
                          "max_depth_distance_m": max(f["max_depth_distance_m"] for f in facts),
                          "vertices_range": [min(f["vertices"] for f in facts), max(f["vertices"] for f in facts)]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
