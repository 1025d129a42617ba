"""Figure functions write PNGs of the expected size; the quality benchmark aggregates seeds right."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmark_module import load_benchmark
from PIL import Image

from trainer.plots import (
    DPI,
    SCANNET20_COLORS,
    Curve,
    class_colors,
    plot_feature_maps,
    plot_label_views,
    plot_miou_curves,
    project,
    room_axes,
    tsne_2d,
)

REPO = Path(__file__).resolve().parent.parent

NAMES = [f"class{c}" for c in range(20)]


def room(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tiny box room turned by 30 degrees: points and a class per point."""
    rng = np.random.default_rng(seed)
    points = rng.uniform([0, 0, 0], [4, 3, 2.5], (n, 3))
    points[: n // 2, 2] = 0.0  # floor
    angle = np.radians(30)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    labels = np.where(points[:, 2] == 0, 1, rng.integers(0, 20, n))
    labels[:5] = -1
    return points @ turn.T, labels


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_class_colors_use_the_palette_and_grey_for_unlabelled():
    colors = class_colors(np.array([0, 19, -1, 25]), 20)
    assert np.allclose(colors[0], SCANNET20_COLORS[0] / 255) and np.allclose(colors[1], SCANNET20_COLORS[19] / 255)
    assert np.allclose(colors[2], colors[3]) and colors[2].min() > 0.8


def test_room_axes_aligns_walls_and_views_order_points():
    points, _ = room()
    turned = room_axes(points)
    spans = sorted(np.ptp(turned[:, :2], axis=0))
    assert spans == pytest.approx([3.0, 4.0], abs=0.1)
    xy, order = project(points, "top-down")
    assert xy.shape == (len(points), 2) and sorted(order) == list(range(len(points)))
    assert turned[order[-1], 2] == turned[:, 2].max()  # highest drawn last
    xy, order = project(points, "oblique", cut=0.2)
    near = (turned[:, 0] > turned[:, 0].max() - 0.2) | (turned[:, 1] > turned[:, 1].max() - 0.2)
    assert sorted(order) == list(np.flatnonzero(~near))  # the near walls are cut away
    with pytest.raises(ValueError):
        project(points, "side")


def test_label_views_writes_a_png_of_the_expected_size(tmp_path):
    points, labels = room()
    path = plot_label_views(tmp_path / "fig4.png", points, {"a": labels, "b": labels[::-1], "gt": labels},
                            NAMES, "title", views=("top-down", "oblique"), panel_inches=2.0)
    width, height = png_size(path)
    assert width == 3 * 2 * DPI
    assert 2 * 2 * DPI < height < 2 * 2 * DPI + 2 * DPI


def test_feature_maps_and_tsne_write_a_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 4, 40), rng.integers(0, 4, 30)]
    feats = [rng.normal(size=(40, 8)) + labels[0][:, None], rng.normal(size=(30, 8)) + labels[1][:, None]]
    xy = [tsne_2d(f) for f in feats]
    assert xy[0].shape == (40, 2) and np.isfinite(xy[0]).all()
    scene = [np.zeros(40, int), np.ones(30, int)]
    both = (np.concatenate(xy), np.concatenate(labels), np.concatenate(scene))
    grid = [[(xy[0], labels[0], scene[0])] * 2, [(xy[1], labels[1], scene[1])] * 2, [both] * 2]
    path = plot_feature_maps(tmp_path / "fig7.png", grid, ["s0", "s1", "both"], ["base", "intra"], NAMES,
                             "title", scene_names=["s0", "s1"], panel_inches=2.0)
    width, height = png_size(path)
    assert width == 2 * 2 * DPI and height == int((3 * 2 + 1.2) * DPI)


def test_miou_curves_write_a_png_of_the_expected_size(tmp_path):
    curves = {"I": Curve([1, 2, 3], [0.1, 0.2, 0.25], [0.01, 0.02, 0.01]), "V": Curve([1, 2, 3], [0.1, 0.22, 0.3])}
    path = plot_miou_curves(tmp_path / "fig6.png", curves, "title", {"pseudo": 0.26}, phase_starts=(2, 3))
    assert png_size(path) == (7 * DPI, int(4.5 * DPI))


def fake_run(row: str, seed: int, miou: float) -> dict:
    return {"row": row, "seed": seed, "miou": miou, "iou": {"wall": miou + 0.1, "sink": None},
            "curve": {"epochs": [1, 2], "miou": [miou / 2, miou]}}


def test_aggregate_means_stds_and_paired_deltas():
    bench = load_benchmark("bench_quality")
    values = {"I": [0.10, 0.12, 0.14], "II": [0.15, 0.15, 0.18], "V": [0.20, 0.30, 0.25]}
    per_seed = {row: [fake_run(row, s, v) for s, v in enumerate(vals)] for row, vals in values.items()}
    rows = bench.aggregate(per_seed)
    assert list(rows) == ["I", "II", "V"]
    for row, vals in values.items():
        pct = [100 * v for v in vals]
        assert rows[row]["miou_mean"] == pytest.approx(statistics.fmean(pct), abs=1e-3)
        assert rows[row]["miou_std"] == pytest.approx(statistics.stdev(pct), abs=1e-3)
        assert rows[row]["per_seed"] == pytest.approx(pct, abs=1e-3)
        assert rows[row]["seeds"] == [0, 1, 2]
    assert rows["I"]["iou_mean"] == {"wall": pytest.approx(22.0, abs=1e-3), "sink": None}
    assert "delta_vs_I" not in rows["I"] and "delta_vs_previous" not in rows["I"]
    assert rows["V"]["delta_vs_previous"]["vs"] == "II"
    assert rows["V"]["delta_vs_previous"]["per_seed"] == pytest.approx([5.0, 15.0, 7.0], abs=1e-3)
    assert rows["II"]["delta_vs_I"]["mean"] == pytest.approx(statistics.fmean([5.0, 3.0, 4.0]), abs=1e-3)
    json.dumps(rows)  # the table is plain JSON


def test_single_seed_has_no_std_and_curves_aggregate_per_epoch():
    bench = load_benchmark("bench_quality")
    rows = bench.aggregate({"I": [fake_run("I", 0, 0.2)]})
    assert rows["I"]["miou_mean"] == pytest.approx(20.0) and rows["I"]["miou_std"] is None
    curves = bench.aggregate_curves([{"epochs": [1, 2, 3], "miou": [0.1, 0.2, 0.3]},
                                     {"epochs": [1, 2], "miou": [0.3, 0.4]}])
    assert curves["epochs"] == [1, 2]
    assert curves["miou_mean"] == pytest.approx([20.0, 30.0])
    assert curves["miou_std"] == pytest.approx([statistics.stdev([10, 30]), statistics.stdev([20, 40])], abs=1e-3)
    plotted = bench.curve_for_plot(curves)
    assert plotted.miou == pytest.approx([0.2, 0.3]) and plotted.spread is not None
    assert bench.curve_for_plot(bench.aggregate_curves([{"epochs": [1], "miou": [0.1]}])).spread is None


def test_a_written_table_redraws_its_fig6_without_training(tmp_path):
    bench = load_benchmark("bench_quality")
    curves = {row: bench.aggregate_curves([{"epochs": [5, 10], "miou": [0.1 + d, 0.2 + d]}]) for row, d in
              (("I", 0.0), ("V", 0.05))}
    table = {"curves": curves, "labels_val": {"pseudo": {"point_miou": 15.1}, "refine": {"point_miou": 19.7}},
             "schedule": {"curve_rows": ["I", "V"], "row_seeds": {"I": [0], "V": [0]}, "phase_starts": [3, 6]},
             "dataset": {"val_scenes": ["scene0096_00"]}}
    path = tmp_path / "table2-e10.json"
    path.write_text(json.dumps(table))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_quality.py"), "--replot", str(path)],
                          capture_output=True, text=True, timeout=120)
    png = tmp_path / "table2-e10-fig6.png"
    assert done.returncode == 0 and done.stdout.strip() == f"wrote {png}"
    width, height = Image.open(png).size
    assert height > width * 4.5 / 7 + 10  # the legend below the axes makes it taller than 7 x 4.5
    path.write_text("{}")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_quality.py"), "--replot", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        f"bench_quality.py: error: --replot {path}: not a table with curves (KeyError: 'schedule')")

def test_longer_schedule_keeps_rooms_and_stores_but_not_runs_or_outputs():
    bench = load_benchmark("bench_quality")
    assert bench.with_schedule(bench.FULL, None, None) is bench.FULL
    plan = bench.with_schedule(bench.FULL, 60, [0])
    assert (plan.raw, plan.stores) == (bench.FULL.raw, bench.FULL.stores)
    assert plan.epochs == 60 and plan.seeds == (0,)
    assert plan.root.name == "bench-quality-e60" and plan.out_json.name == "table2-e60-s0.json"
    assert bench.with_schedule(bench.FULL, 40, None).out_png.name == "fig6-epochs-e40.png"
    eval_every = {kv.split("=")[0]: kv.split("=")[1] for kv in bench.overrides(plan, "I", 0)}["eval_every"]
    assert eval_every == "3"


def test_a_subset_of_rows_never_replaces_the_full_table():
    bench = load_benchmark("bench_quality")
    subset = bench.with_schedule(bench.FULL, None, None, ["I", "V"])
    assert subset.root == bench.FULL.root  # the runs of the full table are reused
    assert subset.out_json.name == "table2-rows-I-V.json" and subset.out_png.name == "fig6-epochs-rows-I-V.png"
    longer = bench.with_schedule(bench.FULL, 80, None, ["I", "II", "V"])
    assert longer.root.name == "bench-quality-e80" and longer.out_json.name == "table2-e80-rows-I-II-V.json"


def _tiny_run(root: Path, scenes: list[str], runs: Path, name: str, **extra) -> Path:
    """A two-epoch run on the synthetic rooms, one thread; its last checkpoint."""
    from trainer.config import from_dict
    from trainer.engine import fit

    cfg = from_dict({"store_root": str(root), "runs_root": str(runs), "name": name, "train_split": scenes,
                     "val_split": scenes, "voxel_size": 0.2, "epochs": 2, "phase_epochs": [1, 2],
                     "samples_per_scene": 32, "transformer_depth": 1, "num_workers": 0, "device": "cpu",
                     "progress": False, "batch_size": 1, "eval_every": 1, **extra})
    fit(cfg)
    return cfg.run_dir / "last.pt"


def _figures_cli(*args: str):
    from typer.testing import CliRunner

    from trainer.cli import app

    return CliRunner().invoke(app, ["figures", *args], env={"COLUMNS": "300", "NO_COLOR": "1"})


def test_figures_command_draws_the_four_figures_of_two_checkpoints(beyond_store, tmp_path):
    root, scenes = beyond_store
    baseline = _tiny_run(root, scenes, tmp_path / "runs", "base", intra_scene=False, inter_scene=False)
    full = _tiny_run(root, scenes, tmp_path / "runs", "full")
    reference = tmp_path / "maskclip3d.json"
    reference.write_text(json.dumps({"miou": 0.05}))
    out = tmp_path / "figures"
    result = _figures_cli("--baseline", str(baseline), "--full", str(full), "--out", str(out),
                          "--reference", str(reference), "--samples", "24")
    assert result.exit_code == 0, result.output
    names = ["fig3_refinement.png", "fig4_predictions.png", "fig6_epochs.png", "fig7_tsne.png"]
    assert result.output.split() == ["figures", "written:", *(str(out / name) for name in names)]
    for name in names:
        with Image.open(out / name) as image:
            assert image.width > 600 and image.height > 300, name

    wrong = _figures_cli("--baseline", str(baseline), "--full", str(baseline), "--out", str(out))
    assert wrong.exit_code == 2
    assert f"{baseline} was trained without the intra- and inter-scene transformers" in " ".join(
        wrong.output.replace("│", " ").split())


def test_figures_command_names_a_missing_checkpoint_or_run_log(tmp_path):
    run = tmp_path / "base"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    missing = _figures_cli("--baseline", str(run / "last.pt"), "--full", str(tmp_path / "full.pt"),
                           "--out", str(tmp_path))
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert f"checkpoint {tmp_path / 'full.pt'} does not exist" in " ".join(missing.output.replace("│", " ").split())
    no_log = _figures_cli("--baseline", str(run / "last.pt"), "--full", str(run / "last.pt"), "--out", str(tmp_path))
    assert no_log.exit_code == 2
    assert f"{run / 'metrics.jsonl'} is missing" in " ".join(no_log.output.replace("│", " ").split())


def test_scene_samples_are_paired_labelled_voxels_drawn_per_set(tmp_path):
    from trainer.config import from_dict
    from trainer.figures import scene_samples
    from trainer.synthetic import write_synthetic_store

    (scene,) = write_synthetic_store(tmp_path, num_scenes=1, seed=0, embed_dim=16, density=80.0,
                                     size=(2.0, 2.0, 1.5))
    cfg = from_dict({"store_root": str(tmp_path), "voxel_size": 0.2})
    samples = scene_samples(cfg, scene, 5, 40, seed=0)
    assert samples["feats"].shape == (len(samples["coords"]), 3)
    assert len(samples["sample"]) == 40 == len(np.unique(samples["sample"])) and (samples["label"] >= 0).all()
    again = scene_samples(cfg, scene, 5, 40, seed=0)
    np.testing.assert_array_equal(samples["sample"], again["sample"])
