"""Calibration of the simulated VLM's noise to the real MaskCLIP's measured quality.

The paper's Table 1 puts MaskCLIP's pseudo-labels, voted onto ScanNet's validation points, at
14.2 mIoU. This script finds the scale S of every noise magnitude of the `features` stage's
`simulated` variant at which the same measurement on a benchmark world's validation rooms gives
14.2: for each S it composes the features in-process (the variant's own function), labels the
pairs with the ordinary `pseudo` stage's function, votes them onto points (points seen by no frame
count as misses) and scores mIoU over the classes present in the validation ground truth. It then
bisects S. The calibrated defaults are the stages.yaml magnitudes times S; they are set once,
before any training, and never changed after (README, "The benchmark world").

Needs the world's `scenes`, `pairs` and `text` stores for the validation split, e.g.
  hicl-pipeline run --dataset synthetic-scannet --data-root data/raw/world-s0-96+32 \
      --store-root data/stores/world-s0-96+32-n1 --split val --stages pairs,text
Run: .venv/bin/python benchmarks/calibrate_vlm.py [--world-seed 0] [--target 14.2]
     -> benchmarks/results/vlm-calibration.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_labels import class_counts, label_confusions, label_summary, present_classes  # noqa: E402
from world import World  # noqa: E402

from pipeline import store  # noqa: E402
from pipeline.labels.pseudo import pseudo_labels  # noqa: E402
from pipeline.labels.simulated_vlm import (  # noqa: E402
    GAIN_PARAMS,
    MAGNITUDE_PARAMS,
    UNIT_PARAMS,
    simulated_features_stage,
)
from pipeline.stages import stage_params  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCENE_KEYS = ["frame_labels", "depth", "intrinsics", "points", "frame_ids", "labels", "color"]


def load_scene(stores: Path, scene: str) -> dict[str, Any]:
    """The arrays one validation scene needs: its record, its pairs."""
    record = store.read_arrays(str(stores), "scenes", scene, SCENE_KEYS)
    pairs = store.read_arrays(str(stores), "pairs", scene, ["point", "pixel", "frame_offsets"])
    return {"scenes": record, "pairs": pairs}


def voted_miou(scenes: list[dict[str, Any]], embeddings: np.ndarray, params: dict[str, Any],
               names: list[str], classes: list[str]) -> float:
    """mIoU (%) over `classes` of the pseudo-labels voted onto points at the given params, scored
    as the label benchmark scores them (a point seen by no frame is a miss of its class)."""
    num_classes = len(names)
    totals: dict[str, np.ndarray] = {}
    for s in scenes:
        feats = simulated_features_stage({"scenes": s["scenes"], "text": {"embeddings": embeddings}}, params)
        pairs, rec = s["pairs"], s["scenes"]
        label, _ = pseudo_labels(feats["features"], embeddings, pairs["pixel"], pairs["frame_offsets"],
                                 rec["color"].shape[1:3])
        for key, value in label_confusions(label, pairs["point"], rec["labels"], num_classes).items():
            totals[key] = totals[key] + value if key in totals else value
    return label_summary(totals, names, classes)["miou"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=14.2, help="mIoU (%%) of the voted pseudo-labels")
    parser.add_argument("--steps", type=int, default=7, help="bisection steps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "vlm-calibration.json")
    args = parser.parse_args()
    world = World(seed=args.world_seed)
    start = time.perf_counter()
    embeddings = store.open_global(str(world.stores), "text")["embeddings"][...]
    names = store.stage_attrs(str(world.stores), "text", store.GLOBAL)["class_names"]
    scenes = [load_scene(world.stores, s) for s in world.split("val")]
    classes = present_classes(sum(class_counts(s["scenes"]["labels"], len(names)) for s in scenes), names)
    base = stage_params("features", variant="simulated")
    trials: list[dict[str, float]] = []

    def measure(scale: float) -> float:
        value = voted_miou(scenes, embeddings, {**base, "noise_scale": scale}, names, classes)
        trials.append({"noise_scale": round(scale, 4), "miou": round(value, 3)})
        print(f"S={scale:.4f}: voted pseudo-label mIoU {value:.2f}", flush=True)
        return value

    lo, hi = 0.5, 8.0
    m_lo, m_hi = measure(lo), measure(hi)
    if not m_hi < args.target < m_lo:
        raise SystemExit(f"target {args.target} is not between S={hi} ({m_hi:.2f}) and S={lo} ({m_lo:.2f})")
    for _ in range(args.steps):
        mid = (lo * hi) ** 0.5  # the noise acts multiplicatively: bisect in log scale
        if measure(mid) > args.target:
            lo = mid
        else:
            hi = mid
    best = min(trials, key=lambda t: abs(t["miou"] - args.target))
    scale = best["noise_scale"]
    calibrated = {k: (round(min(1.0, scale * base[k]), 4) if k in UNIT_PARAMS else round(scale * base[k], 4))
                  for k in (*UNIT_PARAMS, *MAGNITUDE_PARAMS)}
    result = {
        "target_miou": args.target, "chosen_noise_scale": scale, "chosen_miou": best["miou"],
        "trials": trials, "base_params": base, "calibrated_params": calibrated,
        "unchanged_gains": {k: base[k] for k in GAIN_PARAMS},
        "classes": classes, "world": world.describe(), "val_scenes": len(scenes),
        "command": " ".join([".venv/bin/python", "benchmarks/calibrate_vlm.py", *sys.argv[1:]]),
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"S={scale} gives {best['miou']:.2f} mIoU (target {args.target}); calibrated params: {calibrated}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
