"""Config validation, presets, overrides and the three-phase schedule (Sec. 3.4)."""
from __future__ import annotations

import pytest
import yaml

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
    assert active_terms(cfg, 120).feedback


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
    assert active_terms(short, 3).feedback
    assert phase_starts(load_config("nuscenes")) == (11, 21)  # absolute unless scaled
