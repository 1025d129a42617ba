"""MaskCLIP dense features vs plain `encode_image` on the same batch and weights.

Random ViT-B-16 (`pretrained: none`), batch 4, at 224x224 and 240x320. At 240x320 the
baseline is `encode_image` of a ViT-B-16 built for that size, carrying the same weights and
the positional embedding resized the way MaskCLIP resizes it.
Run: .venv/bin/python benchmarks/bench_maskclip.py [--runs 7] [--device cpu]
Writes benchmarks/results/maskclip.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import open_clip
import torch

from pipeline.clip.maskclip import dense_features, positional_embedding
from pipeline.clip.model import load_clip

SIZES = ((224, 224), (240, 320))
RESULT = Path(__file__).resolve().parent / "results" / "maskclip.json"


def _baseline_model(model: torch.nn.Module, hw: tuple[int, int]) -> torch.nn.Module:
    """`model` itself at its native size, else a copy built for `hw` with resized positions."""
    if tuple(model.visual.image_size) == hw:
        return model
    other = open_clip.create_model("ViT-B-16", pretrained=None, force_image_size=hw)
    state = model.state_dict()
    grid = (hw[0] // model.visual.patch_size[0], hw[1] // model.visual.patch_size[1])
    state["visual.positional_embedding"] = positional_embedding(model.visual, grid).detach().clone()
    other.load_state_dict(state)
    return other.to(next(model.parameters()).device).eval()


def _time(fn, device: torch.device) -> float:
    """Seconds for one call, synchronising CUDA so queued kernels are counted."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    """Time both paths per size (interleaved runs, medians) and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model, _ = load_clip("ViT-B-16", pretrained="none", device=args.device)
    device = next(model.parameters()).device
    results = []
    for hw in SIZES:
        baseline = _baseline_model(model, hw)
        images = torch.randn(args.batch, 3, *hw, generator=torch.Generator().manual_seed(0)).to(device)
        with torch.inference_mode():
            dense_features(model, images)  # warm-up both paths
            baseline.encode_image(images)
            dense_s, encode_s = [], []
            for _ in range(args.runs):
                dense_s.append(_time(lambda images=images: dense_features(model, images), device))
                encode_s.append(_time(lambda images=images, baseline=baseline: baseline.encode_image(images), device))
        dense_med, encode_med = statistics.median(dense_s), statistics.median(encode_s)
        results.append({
            "image_hw": list(hw), "batch": args.batch,
            "dense_features_median_s": round(dense_med, 4), "encode_image_median_s": round(encode_med, 4),
            "ratio_dense_over_encode": round(dense_med / encode_med, 3),
            "dense_features_runs_s": [round(t, 4) for t in dense_s],
            "encode_image_runs_s": [round(t, 4) for t in encode_s],
        })
        print(f"{hw[0]}x{hw[1]}: dense {dense_med:.3f}s  encode_image {encode_med:.3f}s  "
              f"ratio {dense_med / encode_med:.3f}")
    report = {
        "benchmark": "maskclip dense_features vs encode_image, random ViT-B-16",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": str(device),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "machine": platform.machine(),
        "runs": args.runs,
        "target": "ratio <= 1.1",
        "results": results,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
