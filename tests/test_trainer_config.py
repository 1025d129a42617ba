"""Config validation, presets, overrides and the three-phase schedule (Sec. 3.4)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from pipeline.stages import DEFAULT_STAGES_FILE, STAGES_FILE_ENV, load_graph
from trainer import config
from trainer.channels import CHANNELS, input_width, point_features
from trainer.config import PRESETS, ConfigError, TrainConfig, load_config, save_config
from trainer.schedule import active_terms, phase_starts


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_every_preset_validates(preset):
    cfg = load_config(preset)
    assert isinstance(cfg, TrainConfig) and cfg.name


def test_scannet_preset_has_paper_settings():
    cfg = load_config("scannet")
    assert (cfg.voxel_size, cfg.epochs, cfg.batch_size) == (0.05, 120, 8)
    assert (cfg.lr_3d, cfg.momentum, cfg.weight_decay, cfg.lr_transformer) == (0.2, 0.9, 1e-4, 2e-4)
    assert cfg.phase_epochs == [11, 21] and cfg.samples_per_scene == 1024
    assert cfg.transformer_depth == 3 and cfg.label_stage == "refine"


def test_ablation_presets_are_table2_rows():
    rows = {r: load_config(f"ablation-{r}") for r in ("I", "II", "III", "IV", "V")}
    switches = {r: (c.intra_set, c.intra_scene, c.inter_scene, c.feedback) for r, c in rows.items()}
    assert switches == {"I": (False, False, False, False), "II": (True, False, False, False),
                        "III": (True, True, False, False), "IV": (True, True, True, False),
                        "V": (True, True, True, True)}
    assert rows["I"].label_stage == "pseudo" and rows["II"].label_stage == "refine"
    assert all(c.batch_size == 4 and c.epochs == 120 for c in rows.values())


def test_overrides_are_typed_and_checked():
    cfg = load_config("scannet", ["epochs=3", "intra_scene=false", "lr_3d=1e-3",
                                  "train_split=[a, b]", "phase_epochs=[2, 3]"])
    assert cfg.epochs == 3 and cfg.intra_scene is False and cfg.lr_3d == 1e-3
    assert cfg.train_split == ["a", "b"] and cfg.phase_epochs == [2, 3]
    with pytest.raises(ConfigError, match="unknown config key 'lr3d'.*lr_3d"):
        load_config("scannet", ["lr3d=0.1"])
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        load_config("scannet", ["epochs=3.5"])
    with pytest.raises(ConfigError, match="feedback: expected true/false"):
        load_config("scannet", ["feedback=1"])
    with pytest.raises(ConfigError, match="lr_3d: expected a number"):
        load_config("scannet", ["lr_3d=fast"])
    with pytest.raises(ConfigError, match="device: must be one of"):
        load_config("scannet", ["device=tpu"])
    with pytest.raises(ConfigError, match="phase_epochs"):
        load_config("scannet", ["phase_epochs=[21, 11]"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config("scannet", ["epochs"])


def test_yaml_unknown_key_extends_and_roundtrip(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: scannet\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match="unknown config key 'batchsize'.*batch_size"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("extends: scannet\nweight_decay: 1e-3\nname: mine\n")  # YAML reads 1e-3 as str
    cfg = load_config(good)
    assert cfg.weight_decay == 1e-3 and cfg.name == "mine" and cfg.epochs == 120
    save_config(cfg, tmp_path / "run" / "config.yaml")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert load_config(tmp_path / "run" / "config.yaml") == cfg and saved["name"] == "mine"
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        load_config(tmp_path / "missing.yaml")


def test_schedule_activates_terms_at_epochs_11_and_21():
    cfg = load_config("scannet")
    assert active_terms(cfg, 1).names() == ["cross_modal"]
    assert active_terms(cfg, 10).names() == ["cross_modal"]
    assert active_terms(cfg, 11).names() == ["cross_modal", "intra_scene", "inter_scene"]
    assert active_terms(cfg, 20).names() == ["cross_modal", "intra_scene", "inter_scene"]
    assert active_terms(cfg, 21).names() == ["cross_modal", "intra_scene", "inter_scene", "feedback"]
    assert "feedback" in active_terms(cfg, 120).names()


def test_schedule_respects_switches_and_scaling():
    row3 = load_config("ablation-III")
    assert active_terms(row3, 30).names() == ["cross_modal", "intra_scene"]
    row1 = load_config("ablation-I")
    assert active_terms(row1, 50).names() == ["cross_modal"]
    # feedback without any transformer has no teacher: it stays off
    lone = load_config("scannet", ["intra_scene=false", "inter_scene=false"])
    assert active_terms(lone, 50).names() == ["cross_modal"]
    short = load_config("scannet", ["epochs=12", "phase_reference_epochs=120"])
    assert phase_starts(short) == (2, 3)
    assert active_terms(short, 1).names() == ["cross_modal"]
    assert active_terms(short, 2).names() == ["cross_modal", "intra_scene", "inter_scene"]
    assert "feedback" in active_terms(short, 3).names()
    assert phase_starts(load_config("nuscenes")) == (11, 21)  # absolute unless scaled


def test_every_dataset_declares_channels_the_trainer_reads():
    for name in load_graph().datasets:
        cfg = load_config("scannet", [f"dataset={name}"])
        assert cfg.channels and set(cfg.channels) <= set(CHANNELS), name
    assert load_config("scannet").channels == ("colors",)
    assert load_config("nuscenes").channels == load_config("synthetic-nuscenes").channels == ("colors", "intensity")



def test_a_dataset_added_to_the_stages_file_is_trained_on_its_channels(tmp_path, monkeypatch):
    stages = tmp_path / "stages.yaml"
    stages.write_text(DEFAULT_STAGES_FILE.read_text() + "\n  lidar-only:\n    reader: x:Y\n"
                      "    classes: nuscenes16\n    channels: [intensity]\n")
    monkeypatch.setenv(STAGES_FILE_ENV, str(stages))
    cfg = load_config("nuscenes", ["dataset=lidar-only"])
    assert cfg.channels == ("intensity",) and input_width(cfg.channels) == 1

def test_dataset_and_backbone_are_checked_at_load(monkeypatch):
    with pytest.raises(ConfigError, match="dataset: unknown dataset 'kitti' \\(known: .*scannet"):
        load_config("scannet", ["dataset=kitti"])
    with pytest.raises(ConfigError, match="backbone: unknown 'MinkUNet99' \\(known: MinkUNet14A, "):
        load_config("scannet", ["backbone=MinkUNet99"])
    assert load_config("scannet", ["backbone=MinkUNet34C"]).backbone == "MinkUNet34C"
    assert load_config("scannet").backbone == "MinkUNet14A"
    monkeypatch.setattr(config, "dataset_channels", lambda name: ("colors", "normals"))
    with pytest.raises(ConfigError, match="dataset: 'scannet' declares channel 'normals' in stages.yaml"):
        load_config("scannet")
    monkeypatch.setattr(config, "dataset_channels", lambda name: ())
    with pytest.raises(ConfigError, match="dataset: 'scannet' declares no point input channels"):
        load_config("scannet")


def test_point_features_follow_the_declared_channels():
    arrays = {"colors": np.array([[0, 255, 51]], np.uint8), "intensity": np.array([102], np.uint8)}
    np.testing.assert_allclose(point_features(arrays, ("colors",)), [[-0.5, 0.5, -0.3]], atol=1e-6)
    both = point_features(arrays, ("colors", "intensity"))
    assert both.dtype == np.float32
    np.testing.assert_allclose(both, [[-0.5, 0.5, -0.3, 0.4]], atol=1e-6)
    np.testing.assert_allclose(point_features(arrays, ("intensity", "colors")), [[0.4, -0.5, 0.5, -0.3]], atol=1e-6)
    assert input_width(("colors",)) == 3 and input_width(("colors", "intensity")) == 4


def test_presets_compose_bases_that_state_only_what_they_change():
    """Every base and preset file sets only keys whose value differs from TrainConfig's default
    (besides name and extends), and a comma list composes presets in order."""
    import dataclasses

    from trainer.config import PRESETS, TrainConfig

    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(TrainConfig)}
    for path in PRESETS.rglob("*.yaml"):
        keys = yaml.safe_load(path.read_text()) or {}
        same = [k for k, v in keys.items() if k not in ("name", "extends") and defaults[k] == v]
        assert not same, f"{path.relative_to(PRESETS)} restates defaults: {same}"
    row_i = load_config("synthetic-scannet,base/method/baseline").to_dict()
    assert row_i == {**load_config("synthetic-scannet").to_dict(), "intra_set": False, "intra_scene": False,
                     "inter_scene": False, "feedback": False}
    assert load_config("ablation-I").to_dict() == {**load_config("scannet").to_dict(), "name": "ablation-I",
                                                   "batch_size": 4, "intra_set": False, "intra_scene": False,
                                                   "inter_scene": False, "feedback": False}


def test_a_comma_list_names_its_empty_part():
    with pytest.raises(ConfigError, match="an empty name"):
        load_config("scannet,,hicl-plus")


def test_the_text_stage_key_reads_its_old_name_too():
    """`text_stage` names the global stage of the class texts; `classes`, its name in older
    checkpoints and configs, still reads as it."""
    assert load_config(None, ["classes=mytext"]).text_stage == "mytext"
    assert config.from_dict({"classes": "other"}).text_stage == "other"
    assert "classes" not in load_config("scannet").to_dict()
