"""Benchmark: the GPU path on a CUDA device (MinkowskiEngine built by `make setup-gpu`).

1. minkunet: MinkUNet14A (the trainer's PointEncoder, head to width 512) forward + backward on
   the same batch and weights on the GPU and on the CPU: max abs difference of the outputs and of
   the parameter gradients (also relative to the largest gradient), and the time of each.
2. maskclip: frames/s of the `features` stage's path (MaskCLIP dense features under fp16
   autocast) vs plain fp32 `encode_image`, random ViT-B-16, batch 8, at the sizes of
   bench_maskclip.py; and how far the fp16 features are from fp32 ones (cosine, max abs).
3. trainer: step time (median, data wait included) and peak GPU memory at batch 8 on procedural
   rooms (trainer/synthetic.py) scaled to ~150k points each, voxel 0.05 m, once per phase of
   the schedule (epochs 1-10: Eq. 1; 11-20: + Eq. 4 intra/inter; 21-120: + Eq. 8), and the
   evaluation forward per scene.
4. estimate: GPU-hours of the paper's ScanNet schedule (120 epochs of 1201 training scenes at
   batch 8, validation of 312 scenes after every epoch) from those times, vs the paper's 14.

Without a CUDA device it says "no CUDA device" and writes nothing.
Run: .venv/bin/python benchmarks/bench_gpu.py [--steps 5] -> benchmarks/results/gpu-<device>.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
DEVICE = torch.device("cuda")
POINTS_PER_ROOM = 150_000
SCANNET_TRAIN, SCANNET_VAL, EPOCHS, PAPER_GPU_HOURS = 1201, 312, 120, 14.0


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def minkunet_gpu_vs_cpu(cfg, scenes: list[str], num_check: int) -> dict:
    """Forward + backward of the same encoder and batch on CPU and GPU; differences and times."""
    from trainer.data import SceneDataset, collate
    from trainer.engine import seed_everything
    from trainer.models import PointEncoder, input_channels

    dataset = SceneDataset(cfg, scenes[:num_check], 5, train=False)
    batch = collate([dataset[(0, i, i)] for i in range(num_check)])  # (epoch, position, index)
    seed_everything(0)
    cpu_model = PointEncoder(input_channels(cfg), 512).train()
    gpu_model = PointEncoder(input_channels(cfg), 512).train()  # ME modules do not deepcopy
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to(DEVICE)
    upstream = torch.randn(len(batch.coords), 512, generator=torch.Generator().manual_seed(1))

    def run(model: torch.nn.Module, dev: torch.device) -> tuple[torch.Tensor, dict, float]:
        model.zero_grad()
        _sync()
        start = time.perf_counter()
        feats = model(batch.coords.to(dev), batch.feats.to(dev))
        feats.backward(upstream.to(dev))
        _sync()
        grads = {k: p.grad.detach().cpu() for k, p in model.named_parameters()}
        return feats.detach().cpu(), grads, time.perf_counter() - start

    cpu, cpu_again = run(cpu_model, torch.device("cpu")), run(cpu_model, torch.device("cpu"))
    run(gpu_model, DEVICE)  # the first call pays for loading the kernels
    gpu = run(gpu_model, DEVICE)

    def rel_l2(a: dict, b: dict) -> float:  # worst tensor: |ga - gb| / |ga|
        return max(((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-30)).item() for k in a)

    return {
        "scenes": num_check, "voxels": len(batch.coords), "embed_dim": 512,
        "max_abs_diff_output": (cpu[0] - gpu[0]).abs().max().item(),
        "max_abs_output": cpu[0].abs().max().item(),
        "max_abs_diff_grad": max((cpu[1][k] - gpu[1][k]).abs().max().item() for k in cpu[1]),
        "max_abs_grad": max(g.abs().max().item() for g in cpu[1].values()),
        "max_rel_l2_diff_grad": rel_l2(cpu[1], gpu[1]),
        # the CPU run twice: MinkowskiEngine's CPU backward need not repeat bit for bit (seen on 2 cores)
        "cpu_repeat_max_abs_diff_output": (cpu[0] - cpu_again[0]).abs().max().item(),
        "cpu_repeat_max_rel_l2_diff_grad": rel_l2(cpu[1], cpu_again[1]),
        "forward_backward_s": {"cpu": round(cpu[2], 4), "cuda": round(gpu[2], 4)},
    }


def maskclip_fp16(runs: int, batch: int) -> list[dict]:
    """The features stage's fp16 path vs plain fp32 encode_image, per image size."""
    from bench_maskclip import SIZES, _baseline_model, _time

    from pipeline.clip.maskclip import dense_features
    from pipeline.clip.model import load_clip
    from pipeline.clip.stages import _inference

    model, _ = load_clip("ViT-B-16", pretrained="none", device=DEVICE.type)
    device = next(model.parameters()).device
    rows = []
    for hw in SIZES:
        baseline = _baseline_model(model, hw)
        images = torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(0)).to(device)

        def stage_path(images=images):
            with _inference(model):  # inference mode + fp16 autocast on CUDA, as the stage runs
                return dense_features(model, images)

        with torch.inference_mode():
            fp32 = dense_features(model, images).float()
            fp16 = stage_path().float()
            baseline.encode_image(images)  # warm-up
            stage_s, encode_s = [], []
            for _ in range(runs):
                stage_s.append(_time(stage_path, device))
                encode_s.append(_time(lambda images=images, baseline=baseline: baseline.encode_image(images), device))
        cos = torch.nn.functional.cosine_similarity(fp16.flatten(0, -2), fp32.flatten(0, -2), dim=-1)
        stage_med, encode_med = statistics.median(stage_s), statistics.median(encode_s)
        rows.append({
            "image_hw": list(hw), "batch": batch,
            "features_fp16_frames_per_s": round(batch / stage_med, 1),
            "encode_image_fp32_frames_per_s": round(batch / encode_med, 1),
            "speedup_features_fp16_over_encode_fp32": round(encode_med / stage_med, 3),
            "fp16_vs_fp32_cosine_min": round(cos.min().item(), 5),
            "fp16_vs_fp32_cosine_mean": round(cos.mean().item(), 6),
            "fp16_vs_fp32_max_abs_diff": round((fp16 - fp32).abs().max().item(), 5),
            "features_fp16_runs_s": [round(t, 5) for t in stage_s],
            "encode_image_fp32_runs_s": [round(t, 5) for t in encode_s],
        })
        print(f"maskclip {hw[0]}x{hw[1]}: features fp16 {batch / stage_med:.1f} frames/s, "
              f"encode_image fp32 {batch / encode_med:.1f} frames/s", flush=True)
    return rows


def trainer_phases(cfg, scenes: list[str], warmup: int, steps: int) -> dict:
    """Median step time and peak GPU memory per schedule phase, and eval forward per scene."""
    from trainer.data import SceneDataset, make_loader
    from trainer.engine import build_models, build_optimizers, compute_losses, eval_loader
    from trainer.schedule import active_terms, phase_starts
    from trainer.terms import LossContext

    device = DEVICE
    models = build_models(cfg, device)
    phases = {}
    for epoch in (1, *phase_starts(cfg)):
        terms = active_terms(cfg, epoch)
        dataset = SceneDataset(cfg, scenes, len(models.class_names), train=True)
        loader, sampler = make_loader(cfg, dataset, shuffle=True, loop=warmup + steps)
        optimizers = build_optimizers(cfg, models, len(loader))
        models.train(True)
        sampler.epoch = epoch
        rows, voxels = [], []
        iterator = iter(loader)
        for i in range(len(loader)):
            if i == warmup:
                torch.cuda.reset_peak_memory_stats()
            _sync()
            t0 = time.perf_counter()
            batch = next(iterator).to(device)
            _sync()
            t1 = time.perf_counter()
            losses = compute_losses(models, batch, terms, LossContext(cfg.feedback_temperature, cfg.soft_targets))
            loss = torch.stack(list(losses.values())).mean()
            optimizers.zero_grad()
            loss.backward()
            optimizers.step()
            _sync()
            t2 = time.perf_counter()
            assert sorted(losses) == sorted(terms.names()) and torch.isfinite(loss)
            rows.append({"data": t1 - t0, "compute": t2 - t1, "step": t2 - t0})
            voxels.append(len(batch.coords))
        del iterator, loader
        measured = rows[warmup:]
        phases[f"epoch_{epoch}"] = {
            "terms": terms.names(),
            "median_s": {k: round(statistics.median(r[k] for r in measured), 4) for k in measured[0]},
            "peak_gpu_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3),
            "voxels_per_batch": voxels[warmup:],
            "steps_s": [{k: round(v, 4) for k, v in r.items()} for r in rows],
        }
        print(f"trainer from epoch {epoch} ({'+'.join(terms.names())}): step "
              f"{phases[f'epoch_{epoch}']['median_s']['step']:.3f}s, peak "
              f"{phases[f'epoch_{epoch}']['peak_gpu_allocated_gib']:.2f} GiB", flush=True)

    models.train(False)
    eval_s = []
    with torch.no_grad():
        for _ in range(2):
            for batch in eval_loader(cfg, scenes, len(models.class_names)):
                _sync()
                start = time.perf_counter()
                batch = batch.to(device)
                feats = models.encoder(batch.coords, batch.feats)
                (feats @ models.text.t()).argmax(1)[batch.inverse].cpu()
                _sync()
                eval_s.append((time.perf_counter() - start) / len(batch.scenes))
    return {"phases": phases, "eval_forward_s_per_scene": round(statistics.median(eval_s), 4)}


def estimate(cfg, trainer: dict) -> dict:
    """GPU-hours of 120 ScanNet epochs at batch 8 from the measured per-phase step times."""
    from trainer.schedule import phase_starts

    starts = (1, *phase_starts(cfg), EPOCHS + 1)
    steps_per_epoch = math.ceil(SCANNET_TRAIN / cfg.batch_size)
    train_s = 0.0
    for phase, first, nxt in zip(trainer["phases"].values(), starts, starts[1:], strict=False):
        train_s += (nxt - first) * steps_per_epoch * phase["median_s"]["step"]
    eval_s = EPOCHS * SCANNET_VAL * trainer["eval_forward_s_per_scene"]
    hours = (train_s + eval_s) / 3600
    return {
        "assumptions": f"{SCANNET_TRAIN} train scenes, batch {cfg.batch_size} -> {steps_per_epoch} steps "
                       f"per epoch, {EPOCHS} epochs, phases from epochs {list(starts[:-1])}; validation "
                       f"of {SCANNET_VAL} scenes per epoch; synthetic rooms stand in for ScanNet scenes",
        "train_gpu_hours": round(train_s / 3600, 2), "eval_gpu_hours": round(eval_s / 3600, 2),
        "total_gpu_hours": round(hours, 2), "paper_gpu_hours": PAPER_GPU_HOURS,
        "ratio_to_paper": round(hours / PAPER_GPU_HOURS, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="measured steps per phase")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7, help="timed MaskCLIP runs per size")
    parser.add_argument("--check-scenes", type=int, default=2, help="scenes in the GPU-vs-CPU check")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader workers of the trainer section")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured, nothing written")
        return 0
    from bench_trainer import DENSITY, EMBED_DIM, NUM_SCENES, ROOM_SIZE

    from trainer.config import from_dict
    from trainer.me_compat import ME
    from trainer.synthetic import write_synthetic_store

    name = torch.cuda.get_device_name()
    report = {
        "benchmark": "GPU path: MinkUNet14A GPU vs CPU, MaskCLIP fp16, trainer step, 120-epoch estimate",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": name, "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "numpy": np.__version__, "minkowskiengine": ME.__version__, "machine": platform.machine(),
    }
    if not ME.is_cuda_available():
        report["skipped"] = "MinkowskiEngine is a CPU-only build (run make setup-gpu): minkunet, trainer"
        print(report["skipped"])
    report["maskclip"] = maskclip_fp16(args.runs, batch=8)
    if ME.is_cuda_available():
        with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
            root = Path(tmp) / "store"
            # bench_trainer's rooms hold ~48.5k points at DENSITY; scale the density to ~150k
            density = DENSITY * POINTS_PER_ROOM / 48_500
            scenes = write_synthetic_store(root, num_scenes=2 * NUM_SCENES, seed=0, embed_dim=EMBED_DIM,
                                           size=ROOM_SIZE, density=density)
            from pipeline import store
            points = [store.open_scene(str(root), "scenes", s)["points"].shape[0] for s in scenes]
            cfg = from_dict({
                "store_root": str(root), "runs_root": str(Path(tmp) / "runs"), "device": "cuda",
                "batch_size": 8, "epochs": EPOCHS, "progress": False, "eval_every": 0,
                "num_workers": args.workers})  # the paper's scannet settings otherwise
            report["rooms"] = {"count": len(scenes), "points": points, "voxel_size": cfg.voxel_size}
            report["minkunet"] = minkunet_gpu_vs_cpu(cfg, scenes, args.check_scenes)
            print("minkunet GPU vs CPU:", json.dumps(report["minkunet"]), flush=True)
            report["trainer"] = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers,
                                 **trainer_phases(cfg, scenes, args.warmup, args.steps)}
            report["estimate"] = estimate(cfg, report["trainer"])
            print("estimate:", json.dumps(report["estimate"]), flush=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    out = RESULTS / f"gpu-{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
