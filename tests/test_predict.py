"""`hicl-train predict`: labels per point, coloured PLY and classes.txt, for the training classes or
any class list embedded by CLIP (random ViT-S-32-alt weights here: no download)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from typer.testing import CliRunner

from pipeline import store
from trainer.cli import app
from trainer.config import from_dict
from trainer.engine import fit
from trainer.figures import load_models, predict_scene
from trainer.predict import palette
from trainer.synthetic import CLASS_NAMES, write_synthetic_store


def trained(tmp_path: Path, embed_dim: int) -> tuple[Path, list[str]]:
    """A one-epoch row-I run on two synthetic rooms: its last checkpoint and the rooms."""
    scenes = write_synthetic_store(tmp_path / "store", num_scenes=2, seed=3, embed_dim=embed_dim,
                                   density=60.0, size=(2.0, 2.0, 1.5))
    cfg = from_dict({"name": "r", "runs_root": str(tmp_path / "runs"), "store_root": str(tmp_path / "store"),
                     "train_split": scenes, "val_split": scenes, "voxel_size": 0.2, "epochs": 1,
                     "batch_size": 2, "intra_set": False, "intra_scene": False, "inter_scene": False,
                     "feedback": False, "num_workers": 0, "device": "cpu", "progress": False})
    fit(cfg)
    return tmp_path / "runs" / "r" / "last.pt", scenes


def predict(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["predict", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_predict_writes_the_models_labels_as_npy_and_ply(tmp_path):
    checkpoint, scenes = trained(tmp_path, embed_dim=16)
    code, output = predict("--checkpoint", str(checkpoint), "--out", str(tmp_path / "pred"))
    assert code == 0, output
    assert "wrote 2 scenes" in output
    assert (tmp_path / "pred" / "classes.txt").read_text().split("\n")[:-1] == list(CLASS_NAMES)
    models, cfg = load_models(checkpoint)
    colours = palette(len(CLASS_NAMES))
    for scene in scenes:
        labels = np.load(tmp_path / "pred" / f"{scene}.labels.npy")
        assert labels.dtype == np.int16
        np.testing.assert_array_equal(labels, predict_scene(models, cfg, scene))
        vertex = PlyData.read(str(tmp_path / "pred" / f"{scene}.ply"))["vertex"]
        points = store.open_scene(str(tmp_path / "store"), "scenes", scene)["points"][...]
        assert vertex.count == len(points) == len(labels)
        np.testing.assert_array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1),
                                      points.astype(np.float32))
        np.testing.assert_array_equal(vertex["label"], labels)
        np.testing.assert_array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1),
                                      colours[labels])


def test_a_new_class_list_names_the_same_points_in_any_order(tmp_path):
    """Open vocabulary: the class list is embedded by CLIP; reordering it renames no point (a label
    index read against the wrong name, or a fixed index, would)."""
    checkpoint, scenes = trained(tmp_path, embed_dim=256)
    clip = ("--clip-model", "ViT-S-32-alt", "--clip-pretrained", "none", "--scenes", scenes[0])
    names = {}
    for order in ("chair,table,wall,lamp", "lamp,wall,chair,table"):
        out = tmp_path / order.split(",")[0]
        code, output = predict("--checkpoint", str(checkpoint), "--classes", order, "--out", str(out), *clip)
        assert code == 0, output
        assert (out / "classes.txt").read_text().split() == order.split(",")
        labels = np.load(out / f"{scenes[0]}.labels.npy")
        names[order] = np.asarray(order.split(","))[labels]
    np.testing.assert_array_equal(names["chair,table,wall,lamp"], names["lamp,wall,chair,table"])


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("--classes", "chair,table", "--clip-model", "ViT-S-32-alt", "--clip-pretrained", "none"), 2,
     "gives 256-d text embeddings but the 3D model outputs 16-d"),
    (("--scenes", "room000,no_such_room"), 1, "scene 'no_such_room' is not in the store"),
])
def test_bad_predict_input_is_named_before_anything_is_written(tmp_path, args, code, needle):
    checkpoint, _ = trained(tmp_path, embed_dim=16)
    result, output = predict("--checkpoint", str(checkpoint), "--out", str(tmp_path / "pred"), *args)
    assert result == code and needle in output and "Traceback" not in output
    assert not (tmp_path / "pred").exists()
