"""Benchmark: one training step of the full method on CPU, split into data / forward / backward / optimiser.

A batch is 4 procedural rooms of ~50k points each (trainer/synthetic.py), voxel 0.05 m, CLIP
width 512, M = 1024 samples per scene, and all four loss terms active (Eq. 1, Eq. 4 intra and
inter, Eq. 8). Batches come from the trainer's own DataLoader with its worker prefetching
(num_workers and prefetch_factor as configured for training), so "data" is the time the step
waits for the next batch, as in `trainer.engine.fit`. Medians over the steps after warm-up.

Run: .venv/bin/python benchmarks/bench_trainer.py  -> benchmarks/results/trainer.json
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import store
from trainer.config import from_dict
from trainer.data import SceneDataset, make_loader
from trainer.engine import build_models, build_optimizers, compute_losses
from trainer.schedule import active_terms
from trainer.synthetic import write_synthetic_store

NUM_SCENES, ROOM_SIZE, DENSITY = 4, (5.0, 4.5, 2.6), 600.0  # ~50k points per room
EMBED_DIM, WARMUP, STEPS = 512, 2, 5


def peak_rss_mib(who: int) -> float:
    """Peak resident set size (ru_maxrss is in KiB on Linux) of this process or its children."""
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def main() -> None:
    """Time WARMUP + STEPS training steps and write benchmarks/results/trainer.json."""
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        root = Path(tmp) / "store"
        scenes = write_synthetic_store(root, num_scenes=NUM_SCENES, seed=0, embed_dim=EMBED_DIM,
                                       size=ROOM_SIZE, density=DENSITY)
        points = [store.open_scene(str(root), "scenes", s)["points"].shape[0] for s in scenes]
        cfg = from_dict({
            "store_root": str(root), "runs_root": str(Path(tmp) / "runs"), "device": "cpu",
            "voxel_size": 0.05, "batch_size": NUM_SCENES, "epochs": 1, "phase_epochs": [1, 1],
            "loop": WARMUP + STEPS, "progress": False, "eval_every": 0})  # paper defaults otherwise
        terms = active_terms(cfg, 1)
        assert terms.names() == ["cross_modal", "intra_scene", "inter_scene", "feedback"]
        device = torch.device("cpu")
        models = build_models(cfg, device)
        dataset = SceneDataset(cfg, scenes, len(models.class_names), train=True)
        loader, sampler = make_loader(cfg, dataset, shuffle=True, loop=cfg.loop)
        optimizers = build_optimizers(cfg, models, len(loader))
        models.train(True)

        encoder_s: list[float] = []
        models.encoder.register_forward_pre_hook(lambda *_: encoder_s.append(-time.perf_counter()))
        models.encoder.register_forward_hook(lambda *_: encoder_s.append(encoder_s.pop() + time.perf_counter()))

        sampler.epoch = 1
        rows, sizes = [], []
        iterator = iter(loader)
        for _ in range(len(loader)):
            t0 = time.perf_counter()
            batch = next(iterator).to(device)
            t1 = time.perf_counter()
            losses = compute_losses(models, batch, terms, cfg.feedback_temperature)
            loss = torch.stack(list(losses.values())).mean()
            t2 = time.perf_counter()
            optimizers.zero_grad()
            t2b = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            optimizers.step()
            t4 = time.perf_counter()
            assert sorted(losses) == sorted(terms.names()) and torch.isfinite(loss)
            rows.append({"data": t1 - t0, "forward": t2 - t1, "encoder_forward": encoder_s[-1],
                         "backward": t3 - t2b, "optimizer": (t2b - t2) + (t4 - t3), "step": t4 - t0})
            sizes.append({"voxels": len(batch.coords), "pairs": len(batch.pair_voxel),
                          "samples": len(batch.sample_voxel)})
            print(f"step {len(rows)}: " + ", ".join(f"{k} {v:.3f}s" for k, v in rows[-1].items()),
                  flush=True)
        del iterator, loader  # shut the persistent workers down so their peak RSS is counted
        main_rss = peak_rss_mib(resource.RUSAGE_SELF)

    measured = rows[WARMUP:]
    median = {k: round(statistics.median(r[k] for r in measured), 4) for k in measured[0]}
    data_share = statistics.median(r["data"] / r["step"] for r in measured)
    result = {
        "benchmark": "trainer step on CPU: data wait / forward / backward / optimiser",
        "command": "python benchmarks/bench_trainer.py",
        "batch_scenes": NUM_SCENES, "points_per_scene": points, "voxel_size": cfg.voxel_size,
        "embed_dim": EMBED_DIM, "samples_per_scene": cfg.samples_per_scene,
        "transformer_depth": cfg.transformer_depth, "terms": terms.names(),
        "num_workers": cfg.num_workers, "prefetch_factor": cfg.prefetch_factor,
        "voxels_per_batch": [s["voxels"] for s in sizes[WARMUP:]],
        "warmup_steps": WARMUP, "measured_steps": STEPS,
        "median_s": median, "data_share_median": round(data_share, 4),
        "data_share_target": 0.05, "data_share_ok": data_share < 0.05,
        "steps_s": [{k: round(v, 4) for k, v in r.items()} for r in rows],
        "peak_rss_main_mib": main_rss, "peak_rss_worker_mib": peak_rss_mib(resource.RUSAGE_CHILDREN),
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
    }
    out = Path(__file__).parent / "results" / "trainer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "steps_s"}, indent=2))


if __name__ == "__main__":
    main()
