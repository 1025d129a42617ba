"""Benchmark: a CPU training step split into its components, each against the CPU's dense-product rate.

Rows I (Eq. 1 only) and V (the full method in its feedback phase: Eq. 1, Eq. 4 on the intra- and
inter-scene transformers, Eq. 8) at the quality benchmark's schedule: synthetic-scannet's batch
of 4 scenes, lr_3d, 256 samples a scene and one loader worker, 0.15 m voxels, one thread.

Each component is timed on its own: every stage is fed a detached copy of its input that requires
grad, and its backward is driven by the gradient that arrives from downstream, so the forward and
backward of the 3D model (`encoder_*`), the gather of the sampled voxels (`gather`), each
transformer (`intra_*`, `inter_*`, the scene grouping included in `intra_*`), each loss term
(forward and backward) and the optimisers (zero_grad, SGD + AdamW steps) get their own seconds;
`data` is the wait for the loader's next batch (`data_build_s`: the CPU seconds a worker spends
building one batch). The whole step is also timed the ordinary way (as `trainer.engine.fit` runs
it), on the same batch, so the components' sum can be checked against it.

FLOPs, counted on every measured batch in an untimed pass: the transformers, the head and the
losses with torch.utils.flop_counter.FlopCounterMode (forward and backward; the CPU
flash-attention ops, which it does not know, by its own SDPA formulas); MinkowskiEngine's
convolutions analytically, from the kernel maps of the batch: per
convolution, the pairs over all kernel offsets x C_in x C_out x 2 forward, twice that backward
(input and weight gradients; the weight gradient only for the stem, whose input needs none).
The limit is the median rate of single-thread fp32 matrix products (1024x512 @ 512x2048 and
2048^3, torch/MKL) timed in every measuring process.

Before and after in one run: every measurement runs in a child process (a BLAS library reads its
settings once, when it loads); `before` children first load the starting commit's version of the
modules changed since (CHANGED, read with `git show`), `after` children the working tree's, in
alternating order, round after round. Medians over all measured steps of each (row, variant).

Data: the benchmark world's store with `--store-root` and `--train-split`, else procedural rooms
the size of the world's (trainer/synthetic.py, about 73k points, 5 x 4.5 x 2.6 m). Options choose
the rows, voxel size, scenes, rounds and steps (`--rows V --voxel-size 0.05`: the paper's voxels).

Run: OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/bench_trainer.py
     -> benchmarks/results/trainer.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

if TYPE_CHECKING:  # the trainer is imported inside the children only, after install_original
    from trainer.config import TrainConfig
    from trainer.data import Batch
    from trainer.engine import Models, Optimizers
    from trainer.schedule import ActiveTerms

REPO = Path(__file__).resolve().parent.parent
ORIGINAL_COMMIT = "6ddaf51"  # the starting point of the `before` measurements
CHANGED = {"trainer.me_compat": "trainer/me_compat.py"}  # modules changed since, by import name
ROWS = {"I": "ablation-I", "V": "ablation-V"}
SCHEDULE_KEYS = ("batch_size", "lr_3d", "samples_per_scene", "num_workers")  # synthetic-scannet's
NUM_SCENES, ROOM_SIZE, DENSITY = 4, (5.0, 4.5, 2.6), 600.0  # ~48.5k points per room at DENSITY
EMBED_DIM, ROOM_POINTS, SYNTHETIC_ROOMS = 512, 73_000, 8
LIMIT_SHAPES = ((1024, 512, 2048), (2048, 2048, 2048))  # (m, k, n) of the dense products
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
START_ENV = dict(os.environ)  # children start from it, not from what this process's imports set
FLOP_METHOD = (
    "transformers, head and losses: torch.utils.flop_counter.FlopCounterMode, forward + backward, "
    "CPU flash attention by its SDPA formulas; MinkowskiEngine convolutions: kernel-map pairs summed "
    "over offsets x C_in x C_out x 2 forward, x2 backward (x1 for the stem: weight gradient only); "
    "batch norm, ReLU, gathers and optimisers: 0")


# ---------------------------------------------------------------------------------------- child


def install_original(commit: str, modules: dict[str, str]) -> None:
    """Load `commit`'s text of each changed module under its import name, before anything imports it."""
    for name, path in modules.items():
        text = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        spec = importlib.util.spec_from_loader(name, loader=None, origin=f"{commit}:{path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        exec(compile(text, f"{commit}:{path}", "exec"), module.__dict__)


def openblas_core() -> str | None:
    """The kernels OpenBLAS chose (None where no OpenBLAS is loaded)."""
    import ctypes

    try:
        lib = ctypes.CDLL("libopenblas.so.0", mode=os.RTLD_NOLOAD)
    except OSError:
        return None
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def dense_rates(repeats: int = 5) -> dict[str, float]:
    """Median GFLOP/s of single-thread fp32 matrix products of LIMIT_SHAPES."""
    rates = {}
    for m, k, n in LIMIT_SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        rates[f"{m}x{k}@{k}x{n}"] = 2 * m * k * n / statistics.median(times) / 1e9
    return rates


def leaf(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` cut from its graph as a new leaf, which collects the gradient arriving from downstream."""
    return tensor.detach().requires_grad_(True)


class Meter:
    """Seconds per component and, while counting, FLOPs per component."""

    def __init__(self, counting: bool):
        self.counting = counting
        self.seconds: dict[str, float] = {}
        self.flops: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time (and count) the block as component `name`; repeated names add up."""
        counter = FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS) if self.counting else None
        start = time.perf_counter()
        if counter is None:
            yield
        else:
            with counter:
                yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        if counter is not None:
            self.flops[name] = self.flops.get(name, 0.0) + counter.get_total_flops()


def _flash_flops(query: tuple[int, ...], key: tuple[int, ...], value: tuple[int, ...], *args: Any,
                 **kwargs: Any) -> int:
    """FLOPs of aten._scaled_dot_product_flash_attention_for_cpu (FlopCounterMode's SDPA formula)."""
    return sdpa_flop_count(query, key, value)


def _flash_backward_flops(grad_out: tuple[int, ...], query: tuple[int, ...], key: tuple[int, ...],
                          value: tuple[int, ...], *args: Any, **kwargs: Any) -> int:
    """FLOPs of its backward (FlopCounterMode's SDPA backward formula)."""
    return sdpa_backward_flop_count(grad_out, query, key, value)


ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _flash_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_backward_flops,
}


class ConvFlops:
    """Analytic FLOPs of MinkowskiEngine's convolutions, from the kernel maps their forwards build."""

    def __init__(self, encoder: torch.nn.Module):
        from trainer.me_compat import ME

        self.forward = self.backward = 0.0
        self.on = False
        for module in encoder.modules():
            if isinstance(module, ME.MinkowskiConvolution | ME.MinkowskiConvolutionTranspose):
                module.register_forward_hook(self._count)

    def _count(self, module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        """Add one convolution's pairs x C_in x C_out x 2 (forward) and its backward's."""
        if not self.on or module.use_mm:  # a 1x1x1 convolution is a torch product, counted as such
            return
        x, gen = inputs[0], module.kernel_generator
        kernel_map = x.coordinate_manager.kernel_map(
            x.coordinate_map_key, output.coordinate_map_key, stride=gen.kernel_stride,
            kernel_size=gen.kernel_size, dilation=gen.kernel_dilation, region_type=gen.region_type,
            is_transpose=module.is_transpose)
        pairs = sum(int(m.shape[-1]) for m in kernel_map.values())
        flops = 2.0 * pairs * module.in_channels * module.out_channels
        self.forward += flops
        self.backward += 2 * flops if x.F.requires_grad else flops

    def reset(self) -> None:
        """Start counting one forward."""
        self.forward = self.backward = 0.0
        self.on = True


def component_step(models: Models, optimizers: Optimizers, batch: Batch, terms: ActiveTerms,
                   cfg: TrainConfig, meter: Meter, convs: ConvFlops | None = None) -> None:
    """One training step, component by component, cut at detach boundaries (see the docstring)."""
    from trainer.terms import LossContext, TermInputs, term_weights

    correlation, text = models.correlation, models.text
    if convs is not None:
        convs.reset()
    with meter.part("encoder_forward"):
        f = models.encoder(batch.coords, batch.feats)
    if convs is not None:
        convs.on = False
    features = leaf(f)
    inputs = TermInputs(text, features, batch, correlation, LossContext(cfg.feedback_temperature, cfg.soft_targets))
    grads: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (component, output, its input leaf)
    if batch.sample_voxel is not None and any(t.elements == "sample_voxel" for t in terms.terms):
        from trainer.models.correlation import inter_scene, intra_scene

        with meter.part("gather"):
            gathered = features[batch.sample_voxel]
        sampled = inputs.__dict__["sampled"] = leaf(gathered)  # TermInputs' cached value
        grads.append(("gather", gathered, sampled))
        aggregated, current = {}, sampled
        if correlation.intra is not None:
            with meter.part("intra_forward"):
                out = intra_scene(correlation.intra, current, batch.sample_offsets)
            current = aggregated["intra"] = leaf(out)
            grads.append(("intra_backward", out, current))
        if correlation.inter is not None:
            with meter.part("inter_forward"):
                out = inter_scene(correlation.inter, current)
            current = aggregated["inter"] = leaf(out)
            grads.append(("inter_backward", out, current))
        inputs.__dict__["aggregated"] = aggregated
    with meter.part("optimizers"):
        optimizers.zero_grad()
    weights = term_weights(cfg)
    for term in terms.terms:
        with meter.part(f"loss_{term.name}"):
            (term.loss(inputs) * (weights.get(term.name, 1.0) / len(terms.terms))).backward()
    for name, output, boundary in reversed(grads):
        with meter.part(name):
            if boundary.grad is not None:
                output.backward(boundary.grad)
    with meter.part("encoder_backward"):
        f.backward(features.grad)
    with meter.part("optimizers"):
        optimizers.step()


def whole_step(models: Models, optimizers: Optimizers, batch: Batch, terms: ActiveTerms,
               cfg: TrainConfig) -> float:
    """Seconds of one step the way trainer.engine.fit runs it (losses, step loss, backward, steps)."""
    from trainer import distributed
    from trainer.engine import compute_losses, element_counts, step_loss
    from trainer.terms import LossContext, term_weights

    start = time.perf_counter()
    losses = compute_losses(models, batch, terms, LossContext(cfg.feedback_temperature, cfg.soft_targets))
    part, values = step_loss(distributed.Context(0, 1, torch.device("cpu")), losses,
                             element_counts(batch, losses), term_weights(cfg))
    optimizers.zero_grad()
    part.backward()
    optimizers.step()
    assert sorted(values) == sorted(terms.names())
    return time.perf_counter() - start


def row_config(spec: dict[str, Any]) -> TrainConfig:
    """The row's preset at the benchmark schedule, in its last phase from the first epoch."""
    from trainer.config import load_config

    schedule = load_config("synthetic-scannet").to_dict()
    values = {**{k: schedule[k] for k in SCHEDULE_KEYS}, "store_root": spec["store_root"],
              "train_split": spec["scenes"], "val_split": spec["scenes"], "voxel_size": spec["voxel_size"],
              "runs_root": spec["runs_root"], "epochs": 1, "phase_epochs": [1, 1],
              "phase_reference_epochs": None, "loop": spec["loop"], "device": "cpu", "progress": False,
              "eval_every": 0, "seed": spec["seed"]}
    return load_config(ROWS[spec["row"]], [f"{k}={json.dumps(v)}" for k, v in values.items()])


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure `spec['steps']` steps of one (row, variant) after warm-up; print and return them."""
    if spec["variant"] == "before":
        install_original(ORIGINAL_COMMIT, CHANGED)
    torch.set_num_threads(1)
    from trainer.data import SceneDataset, collate, make_loader
    from trainer.engine import build_models, build_optimizers
    from trainer.schedule import active_terms

    cfg = row_config(spec)
    device = torch.device("cpu")
    terms = active_terms(cfg, 1)
    models = build_models(cfg, device)
    dataset = SceneDataset(cfg, list(cfg.train_split), len(models.class_names), train=True)
    loader, sampler = make_loader(cfg, dataset, shuffle=True, loop=cfg.loop)
    keys = iter(list(sampler))
    optimizers = build_optimizers(cfg, models, len(loader))
    models.train(True)
    convs = ConvFlops(models.encoder)
    rates = [dense_rates()]
    steps: list[dict[str, Any]] = []
    batches = iter(loader)
    for index in range(spec["warmup"] + spec["steps"]):
        start = time.perf_counter()
        batch = next(batches).to(device)
        wait = time.perf_counter() - start
        start = time.perf_counter()
        collate([dataset[key] for key in next(keys)])
        build = time.perf_counter() - start
        measured = index >= spec["warmup"]
        if measured:  # FLOPs of this batch: a counted, untimed pass
            counted = Meter(counting=True)
            component_step(models, optimizers, batch, terms, cfg, counted, convs)
            flops = {**counted.flops}
            flops["encoder_forward"] += convs.forward
            flops["encoder_backward"] += convs.backward
        meter = Meter(counting=False)
        component_step(models, optimizers, batch, terms, cfg, meter)
        step = whole_step(models, optimizers, batch, terms, cfg)
        if measured:
            steps.append({"data": wait, "data_build_s": build, **meter.seconds, "step": wait + step,
                          "voxels": len(batch.coords), "flops": flops})
    rates.append(dense_rates())
    del batches, loader
    return {"row": spec["row"], "variant": spec["variant"], "terms": terms.names(), "steps": steps,
            "dense_gflops": rates, "openblas_core": openblas_core(),
            "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
            "torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}


# --------------------------------------------------------------------------------------- parent


def synthetic_store(root: Path, rooms: int) -> list[str]:
    """Procedural rooms of about ROOM_POINTS points each (DENSITY scaled), CLIP width EMBED_DIM."""
    from trainer.synthetic import write_synthetic_store

    return write_synthetic_store(root, num_scenes=rooms, seed=0, embed_dim=EMBED_DIM, size=ROOM_SIZE,
                                 density=DENSITY * ROOM_POINTS / 48_500)


def run_child(spec: dict[str, Any], attempts: int = 2) -> dict[str, Any]:
    """One child process measuring `spec` (tried again once if it fails); its result is the last
    line it prints."""
    for attempt in range(attempts):
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=REPO,
                              env={**START_ENV, **THREAD_ENV}, capture_output=True, text=True)
        if done.returncode == 0:
            return json.loads(done.stdout.strip().splitlines()[-1])
        print(f"child {spec['row']}/{spec['variant']} failed (attempt {attempt + 1}):\n"
              f"{done.stderr[-2000:]}", flush=True)
    raise RuntimeError(f"child {spec['row']}/{spec['variant']} failed {attempts} times")


def median(values: list[float]) -> float:
    """Median rounded to 4 decimals."""
    return round(statistics.median(values), 4)


def summarise(results: list[dict[str, Any]], limit: float) -> dict[str, Any]:
    """Medians over the steps per component: seconds, GFLOP, GFLOP/s (each step's FLOPs over its
    seconds) and their share of the dense limit; the whole step's median."""
    steps = [s for r in results for s in r["steps"]]
    names = [k for k in steps[0] if k not in ("step", "voxels", "data_build_s", "flops")]
    step = median([s["step"] for s in steps])
    components = {}
    for name in names:
        seconds = median([s[name] for s in steps])
        gflop = statistics.median(s["flops"].get(name, 0.0) for s in steps) / 1e9
        rate = statistics.median(s["flops"].get(name, 0.0) / s[name] for s in steps) / 1e9
        components[name] = {"seconds": seconds, "gflop": round(gflop, 3), "gflops": round(rate, 2),
                            "share_of_limit": round(rate / limit, 3), "share_of_step": round(seconds / step, 3)}
    components["data"]["build_s"] = median([s["data_build_s"] for s in steps])
    return {"step_s": step, "sum_of_components_s": round(sum(c["seconds"] for c in components.values()), 4),
            "steps_measured": len(steps), "voxels_per_batch": [s["voxels"] for s in steps],
            "terms": results[0]["terms"], "openblas_core": results[0]["openblas_core"],
            "openblas_coretype_env": results[0]["openblas_coretype_env"],
            "components": components}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-root", help="a prepared store (the benchmark world's); default: synthetic rooms")
    parser.add_argument("--train-split", help="split file of --store-root's training scenes")
    parser.add_argument("--scenes", type=int, default=SYNTHETIC_ROOMS,
                        help="training scenes used (the split's first ones, or synthetic rooms made)")
    parser.add_argument("--voxel-size", type=float, default=0.15)
    parser.add_argument("--rounds", type=int, default=3, help="child processes per (row, variant)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps per child")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per child")
    parser.add_argument("--rows", default="I,V")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "trainer.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def data_source(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """The store and scenes measured, and what they are (for the record)."""
    from pipeline import store

    if args.store_root:
        from trainer.data import resolve_scenes

        scenes = resolve_scenes(args.train_split or "all", args.store_root, "scenes", "train_split")[:args.scenes]
        root, kind = args.store_root, "store"
    else:
        root, kind = str(tmp / "store"), "synthetic rooms (trainer/synthetic.py)"
        scenes = synthetic_store(Path(root), args.scenes)
    points = [int(store.open_scene(root, "scenes", s)["points"].shape[0]) for s in scenes]
    return {"kind": kind, "store_root": root, "train_split": args.train_split, "scenes": scenes,
            "points_per_scene": points}, scenes


def main() -> None:
    """Interleave before/after children for each row; write the medians to --out."""
    args = parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    begin, load_start = time.perf_counter(), os.getloadavg()
    from trainer.config import load_config

    preset = load_config("synthetic-scannet").to_dict()
    rows = args.rows.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        data, scenes = data_source(args, Path(tmp))
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        batches = args.warmup + args.steps
        loop = -(-batches * NUM_SCENES // len(scenes))
        for round_ in range(args.rounds):
            for row in rows:
                for variant in ("before", "after")[::1 if round_ % 2 == 0 else -1]:
                    spec = {"row": row, "variant": variant, "warmup": args.warmup, "steps": args.steps,
                            "store_root": data["store_root"], "scenes": scenes, "voxel_size": args.voxel_size,
                            "runs_root": str(Path(tmp) / "runs"), "loop": loop, "seed": round_}
                    result = run_child(spec)
                    results.setdefault((row, variant), []).append(result)
                    print(f"round {round_} row {row} {variant}: step "
                          f"{median([s['step'] for s in result['steps']])} s", flush=True)
    dense = [r for rs in results.values() for res in rs for r in res["dense_gflops"]]
    limits = {shape: median([d[shape] for d in dense]) for shape in dense[0]}
    limit = max(limits.values())
    first = next(iter(results.values()))[0]
    report = {
        "benchmark": "trainer step on CPU per component against the dense-product rate, rows I and V",
        "command": "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 " + " ".join(
            [Path(sys.executable).name, "benchmarks/bench_trainer.py", *sys.argv[1:]]),
        "wall_s": round(time.perf_counter() - begin, 1),
        "data": data, "voxel_size": args.voxel_size,
        "schedule": {**{k: preset[k] for k in SCHEDULE_KEYS}, "phase": "feedback (phase_epochs [1, 1])",
                     "rounds": args.rounds, "warmup_steps_per_child": args.warmup,
                     "measured_steps_per_child": args.steps},
        "limit_gflops": limit, "limit_by_shape_gflops": limits,
        "flop_method": FLOP_METHOD,
        "before": f"commit {ORIGINAL_COMMIT}'s {', '.join(CHANGED.values())}; rows.<row>.before",
        "rows": {},
        "threads": {**THREAD_ENV, "torch_threads": first["torch_threads"],
                    "interop_threads": first["interop_threads"], "loader_workers": preset["num_workers"]},
        "load_average_1m": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "cpu_cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
    }
    for row in rows:
        report["rows"][row] = {**summarise(results[(row, "after")], limit),
                               "before": summarise(results[(row, "before")], limit)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({row: {"step_s": r["step_s"], "before": r["before"]["step_s"]}
                      for row, r in report["rows"].items()}, indent=2))


if __name__ == "__main__":
    main()
