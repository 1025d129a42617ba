"""One training step gives the same losses and gradients before and after the step's speed-ups.

The speed-up of the CPU step (benchmarks/bench_trainer.py) is MinkowskiEngine's BLAS running the
CPU's own vector kernels (trainer/me_compat.py sets OPENBLAS_CORETYPE while it loads) instead of the generic SSE3
ones OpenBLAS 0.3.21 falls back to on CPUs it does not know. A BLAS reads that setting once, when
it loads, so each path runs in its own process: the reference with the generic kernels forced (the
original path), the other as the trainer now imports MinkowskiEngine. Both compute the full
method's losses (Eq. 1, Eq. 4 intra and inter, Eq. 8) and every parameter's gradient on one fixed
batch, with the same seeds.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.me_compat import cpu_flags, openblas_coretype

REFERENCE_CORE = "Prescott"  # OpenBLAS's generic kernels, what 0.3.21 runs on CPUs it does not know
STEP = r"""
import sys, torch
from trainer import distributed
from trainer.config import from_dict
from trainer.data import SceneDataset, collate
from trainer.engine import build_models, compute_losses, element_counts, step_loss
from trainer.me_compat import ME
from trainer.schedule import active_terms
from trainer.terms import loss_context

store, scenes, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
torch.set_num_threads(1)
cfg = from_dict({"store_root": store, "runs_root": out + ".runs", "device": "cpu", "voxel_size": 0.15,
                 "batch_size": len(scenes), "samples_per_scene": 48, "phase_epochs": [1, 1], "epochs": 1,
                 "num_workers": 0, "progress": False, "eval_every": 0})
models = build_models(cfg, torch.device("cpu"))
dataset = SceneDataset(cfg, scenes, len(models.class_names), train=True)
batch = collate([dataset[(1, k, k)] for k in range(len(scenes))])
terms = active_terms(cfg, 1)
losses = compute_losses(models, batch, terms, loss_context(cfg))
part, _ = step_loss(distributed.Context(0, 1, torch.device("cpu")), losses, element_counts(batch, losses))
part.backward()
grads = {f"{prefix}.{name}": p.grad for prefix, module in (("encoder", models.encoder),
         ("correlation", models.correlation)) for name, p in module.named_parameters()}
import ctypes, os
try:
    blas = ctypes.CDLL("libopenblas.so.0", mode=os.RTLD_NOLOAD)
    blas.openblas_get_corename.restype = ctypes.c_char_p
    core = blas.openblas_get_corename().decode()
except OSError:
    core = None
torch.save({"losses": {k: v.detach() for k, v in losses.items()}, "grads": grads, "core": core}, out)
"""


def step(store: Path, scenes: list[str], out: Path, coretype: str | None) -> dict:
    """Losses, gradients and OpenBLAS's kernels of one step, run in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    if coretype is not None:
        env["OPENBLAS_CORETYPE"] = coretype
    subprocess.run([sys.executable, "-c", STEP, str(store), ",".join(scenes), str(out)], env=env,
                   check=True, timeout=300)
    return torch.load(out)


@pytest.fixture(scope="module")
def steps(beyond_store, tmp_path_factory) -> tuple[dict, dict]:
    """The reference step (generic kernels) and the step as the trainer runs it now."""
    store, scenes = beyond_store
    tmp = tmp_path_factory.mktemp("step")
    return step(store, scenes, tmp / "reference.pt", REFERENCE_CORE), step(store, scenes, tmp / "now.pt", None)


def test_losses_and_gradients_match_the_reference_path(steps):
    """Every term and every parameter gradient equal to 1e-5 (relative and absolute)."""
    reference, now = steps
    assert sorted(now["losses"]) == ["cross_modal", "feedback", "inter_scene", "intra_scene"]
    torch.testing.assert_close(now["losses"], reference["losses"], rtol=1e-5, atol=1e-5)
    assert sorted(now["grads"]) == sorted(reference["grads"])
    assert all(g is not None for g in now["grads"].values())
    torch.testing.assert_close(now["grads"], reference["grads"], rtol=1e-5, atol=1e-5)


def test_the_two_paths_ran_different_kernels(steps):
    """The reference ran the generic kernels; the trainer's import chose the CPU's own."""
    reference, now = steps
    if now["core"] is None:
        pytest.skip("MinkowskiEngine does not use OpenBLAS here")
    assert reference["core"] == REFERENCE_CORE
    expected = openblas_coretype(cpu_flags())
    assert now["core"] == (expected or now["core"])


def test_coretype_follows_the_cpu_flags(tmp_path):
    """AVX-512 -> SkylakeX, AVX2 + FMA -> Haswell, else OpenBLAS's own choice; flags from cpuinfo."""
    assert openblas_coretype({"sse2", "avx2", "fma", "avx512f"}) == "SkylakeX"
    assert openblas_coretype({"sse2", "avx2", "fma"}) == "Haswell"
    assert openblas_coretype({"sse2", "avx2"}) is None
    assert openblas_coretype(set()) is None
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "fma"}
    assert cpu_flags(tmp_path / "absent") == set()
