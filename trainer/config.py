"""One validated training config: a YAML file (or preset) plus `key=value` overrides.

Every key is a field of `TrainConfig`; unknown keys and values of the wrong type are rejected
with the key named. A YAML file may start with `extends: <preset or path>`, or a list of them, to
inherit those files' keys (merged in order, later ones win) and override some of them; the
presets are composed that way from bases in trainer/presets/base/ (a dataset, a schedule, a
method), each stating only what it changes from `TrainConfig`'s defaults. A config named on the
command line may itself be a comma-separated list (`synthetic-scannet,base/method/baseline`),
merged the same way. `dataset` names a dataset of the stages file (stages.yaml,
or $HICL_STAGES_FILE): the point channels it declares there are the 3D model's input. `backbone`
names a row of the backbone table (trainer/backbones.py).

Phase boundaries (Sec. 3.4): `phase_epochs: [11, 21]` are the first epochs (1-based) of the
correlation phase (Eq. 4, intra/inter-scene) and of the feedback phase (Eq. 8). The paper keeps
them at 11 and 21 for both its 120-epoch (ScanNet) and 30-epoch (nuScenes) schedules, so they are
absolute by default. A short schedule may instead set `phase_reference_epochs: 120`: then each
boundary b becomes `1 + round((b - 1) * epochs / phase_reference_epochs)`, i.e. the phases keep
the same fraction of the run as in a 120-epoch one.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import PipelineError
from pipeline.fields import VALUE_TYPES
from trainer.backbones import BACKBONES
from trainer.channels import CHANNELS, dataset_channels
from trainer.transforms import DEFAULT_CHAIN, TRANSFORMS, chain_names

PRESETS = Path(__file__).resolve().parent / "presets"


class ConfigError(ValueError):
    """A config problem reported as one line naming the offending key."""


def _doc(text: str, default: Any) -> Any:
    """A dataclass field with a help text (shown by `TrainConfig.describe`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training, evaluation or prediction run depends on."""

    name: str = _doc("run folder name under runs_root", "run")
    runs_root: str = _doc("folder holding one subfolder per run", "data/runs")
    store_root: str = _doc("root of the stage stores written by the pipeline", "data/stores/scannet")
    dataset: str = _doc(
        "dataset of stages.yaml; the point channels it declares there are the 3D model's input", "scannet")
    backbone: str = _doc("3D backbone, a row of the table in trainer/backbones.py", "MinkUNet14A")
    train_split: str | list[str] = _doc(
        "training scenes: a list of ids, a split file (one id per line) or 'all' done scenes", "all")
    val_split: str | list[str] = _doc("validation scenes, same forms as train_split", "all")
    text_stage: str = _doc("global stage holding the class text embeddings and class_names", "text")
    label_source: Literal["auto", "pseudo", "refine", "vote", "gt"] = _doc(
        "pair labels: auto (= refine if intra_set else pseudo), pseudo, refine, vote (the weighted "
        "set vote, beyond the paper) or gt (ground truth of every labelled point, an oracle for "
        "sanity checks)", "auto")
    voxel_size: float = _doc("voxel edge in metres", 0.05)
    epochs: int = _doc("training epochs", 120)
    loop: int = _doc("passes over the training scenes per epoch (for tiny scene sets)", 1)
    batch_size: int = _doc("scenes per step", 8)
    lr_3d: float = _doc("SGD learning rate of the 3D model and its head", 0.2)
    momentum: float = _doc("SGD momentum", 0.9)
    weight_decay: float = _doc("SGD weight decay", 1e-4)
    lr_transformer: float = _doc("AdamW learning rate of the correlation transformers", 2e-4)
    weight_decay_transformer: float = _doc("AdamW weight decay", 0.01)
    phase_epochs: list[int] = _doc(
        "first epochs (1-based) of the correlation (Eq. 4) and feedback (Eq. 8) phases", [11, 21])
    phase_reference_epochs: int | None = _doc(
        "if set, phase_epochs are scaled by epochs / phase_reference_epochs", None)
    intra_set: bool = _doc("train on intra-set refined labels (refine stage) instead of pseudo", True)
    intra_scene: bool = _doc("intra-scene correlation transformer (Eq. 3-4)", True)
    inter_scene: bool = _doc("inter-scene correlation transformer (Eq. 7)", True)
    feedback: bool = _doc("feedback distillation (Eq. 8)", True)
    samples_per_scene: int = _doc("M: voxels sampled per scene for the transformers", 1024)
    transformer_depth: int = _doc("encoder layers per correlation transformer", 3)
    transformer_heads: int = _doc("attention heads per correlation transformer", 8)
    feedback_temperature: float = _doc("softmax temperature of both distributions in Eq. 8", 1.0)
    class_balance: float = _doc(
        "beyond the paper: CE weight of class c in Eq. 1 and Eq. 4 is (share of c among the training "
        "pair labels)^-class_balance, normalised to mean 1 over the pairs; 0 = unweighted (the paper)", 0.0)
    logit_adjustment: float = _doc(
        "beyond the paper: tau of logit adjustment, tau * log(share of c among the training pair "
        "labels) added to class c's logits in Eq. 1 and Eq. 4 during training only; 0 = off (the paper)", 0.0)
    soft_targets: bool = _doc(
        "beyond the paper: Eq. 1 and Eq. 4 against each geometric set's distribution of the pair labels "
        "over the scene instead of each pair's label (with label_source pseudo: the distribution whose "
        "mode the refine stage keeps)", False)
    cross_modal_weight: float = _doc(
        "beyond the paper: Eq. 1's weight in the step loss, the mean of the active terms "
        "(Sec. 3.4 weighs every term 1)", 1.0)
    augment: list[str] | bool = _doc(
        "training augmentations, applied in this order: rotate_z (random rotation about z), flip_xy "
        "(random x/y flips), scale (uniform, scale_range); [] or false = none, true = all three",
        list(DEFAULT_CHAIN))
    scale_range: list[float] = _doc("uniform scaling range of the augmentation", [0.9, 1.1])
    seed: int = _doc("seed of model init, data order, augmentation and sampling", 0)
    device: Literal["auto", "cpu", "cuda"] = _doc("auto = cuda when usable, else cpu", "auto")
    num_workers: int = _doc("DataLoader worker processes", 2)
    prefetch_factor: int = _doc("batches prefetched per worker", 2)
    eval_every: int = _doc("validate every N epochs (0 = never); best.pt keeps the best mIoU", 1)
    progress: bool = _doc("show a Rich progress bar", True)

    @property
    def label_stage(self) -> str:
        """Stage whose `label` array supervises the pairs (or 'gt' for ground truth)."""
        if self.label_source == "auto":
            return "refine" if self.intra_set else "pseudo"
        return self.label_source

    @property
    def run_dir(self) -> Path:
        """The run folder."""
        return Path(self.runs_root) / self.name

    @property
    def channels(self) -> tuple[str, ...]:
        """Point input channels, as the dataset declares them in stages.yaml."""
        return dataset_channels(self.dataset)

    @property
    def uses_samples(self) -> bool:
        """Whether any loss term this config can enable averages over sampled voxels."""
        from trainer.terms import uses_samples  # the loss table imports torch

        return uses_samples(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-able)."""
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Help text per key."""
        return {f.name: f.metadata.get("doc", "") for f in fields(cls)}


_HINTS = typing.get_type_hints(TrainConfig)
_KEYS = tuple(f.name for f in fields(TrainConfig))


_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
_EXPECTED = {"bool": "true/false", "int": "an integer", "float": "a number", "str": "a string"}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """`value` checked against type `tp` (floats also from ints and from YAML strings like 1e-4)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(map(str, typing.get_args(tp)))
            raise ConfigError(f"{key}: must be one of {choices}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if tp in _SCALARS:  # the pipeline's value types, so both halves accept the same values
        name = _SCALARS[tp]
        if tp is float and isinstance(value, str):  # YAML reads 1e-4 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if not VALUE_TYPES[name](value):
            raise ConfigError(f"{key}: expected {_EXPECTED[name]}, got {value!r}")
        return float(value) if tp is float else value
    raise ConfigError(f"{key}: unsupported type {tp}")


def _check_key(key: str) -> None:
    if key not in _KEYS:
        close = difflib.get_close_matches(key, _KEYS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown config key '{key}'{hint}")


def _check_values(cfg: TrainConfig) -> None:
    """Constraints beyond types."""
    positive = ("epochs", "loop", "batch_size", "samples_per_scene", "transformer_depth",
                "transformer_heads", "prefetch_factor")
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}: must be >= 1, got {getattr(cfg, key)}")
    for key in ("voxel_size", "feedback_temperature", "cross_modal_weight"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key}: must be > 0, got {getattr(cfg, key)}")
    if not 0 <= cfg.class_balance <= 1:
        raise ConfigError(f"class_balance: must be in [0, 1], got {cfg.class_balance}")
    if not 0 <= cfg.logit_adjustment <= 2:
        raise ConfigError(f"logit_adjustment: must be in [0, 2], got {cfg.logit_adjustment}")
    if cfg.num_workers < 0 or cfg.eval_every < 0:
        raise ConfigError("num_workers and eval_every must be >= 0")
    if len(cfg.phase_epochs) != 2 or not 1 <= cfg.phase_epochs[0] <= cfg.phase_epochs[1]:
        raise ConfigError(f"phase_epochs: expected [first, second] with 1 <= first <= second, "
                          f"got {cfg.phase_epochs}")
    if cfg.phase_reference_epochs is not None and cfg.phase_reference_epochs < 1:
        raise ConfigError("phase_reference_epochs: must be >= 1")
    unknown = [name for name in chain_names(cfg.augment) if name not in TRANSFORMS]
    if unknown:
        raise ConfigError(f"augment: unknown transform '{unknown[0]}' (known: {', '.join(TRANSFORMS)})")
    lo_hi = cfg.scale_range
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
        raise ConfigError(f"scale_range: expected [low, high] with 0 < low <= high, got {lo_hi}")
    if cfg.backbone not in BACKBONES:
        raise ConfigError(f"backbone: unknown '{cfg.backbone}' (known: {', '.join(BACKBONES)})")
    _check_dataset(cfg.dataset)


def _check_dataset(dataset: str) -> None:
    """The dataset is in stages.yaml and declares channels, all of which the trainer reads."""
    try:
        channels = dataset_channels(dataset)
    except PipelineError as exc:
        raise ConfigError(f"dataset: {exc}") from exc
    if not channels:
        raise ConfigError(f"dataset: '{dataset}' declares no point input channels in stages.yaml "
                          f"(e.g. channels: [colors])")
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise ConfigError(f"dataset: '{dataset}' declares channel '{unknown[0]}' in stages.yaml; "
                          f"the trainer reads {', '.join(CHANNELS)}")


# Keys renamed since checkpoints were first written: the old name still reads as the new one.
RENAMED = {"classes": "text_stage"}


def from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """A validated config from a plain mapping (missing keys take their defaults; a renamed key's
    old name, e.g. in an older checkpoint, reads as its new one)."""
    checked = {}
    for key, value in values.items():
        key = RENAMED.get(key, key)
        _check_key(key)
        checked[key] = _coerce(key, value, _HINTS[key])
    cfg = TrainConfig(**checked)
    _check_values(cfg)
    return cfg


def resolve_path(config: str | Path) -> Path:
    """A config file path, or the preset of that name in trainer/presets."""
    path = Path(config)
    if path.is_file():
        return path
    preset = PRESETS / f"{config}.yaml"
    if preset.is_file():
        return preset
    names = ", ".join(sorted(str(p.relative_to(PRESETS).with_suffix("")) for p in PRESETS.rglob("*.yaml")))
    raise ConfigError(f"config '{config}' is neither a file nor a preset ({names})")


def _read_yaml(config: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML file's keys over those of its `extends` bases, merged in order (later ones win)."""
    path = resolve_path(config).resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value")
    bases = loaded.pop("extends", None)
    if bases is not None and not isinstance(bases, list):
        bases = [bases]
    merged: dict[str, Any] = {}
    for base in bases or []:
        if (path.parent / str(base)).is_file():
            base = path.parent / str(base)  # a relative path is relative to the including file
        merged.update(_read_yaml(base, seen + (path,)))
    merged.update(loaded)
    return merged


def read_configs(config: str | Path) -> dict[str, Any]:
    """The keys of a config file or preset, or of a comma-separated list of them merged in order."""
    if isinstance(config, Path) or Path(config).is_file() or "," not in config:
        return _read_yaml(config)
    merged: dict[str, Any] = {}
    for part in (c.strip() for c in config.split(",")):
        if not part:
            raise ConfigError(f"config '{config}': an empty name in the comma-separated list")
        merged.update(_read_yaml(part))
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (`epochs=3`, `intra_scene=false`, `x=[1,2]`)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key = RENAMED.get(key, key)
    _check_key(key)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse value {raw!r}") from exc
    return key, value


def load_config(config: str | Path | None, overrides: Sequence[str] = (),
                base: Mapping[str, Any] | None = None) -> TrainConfig:
    """Config from `base` values, then a YAML file or preset, then `key=value` overrides."""
    values: dict[str, Any] = dict(base or {})
    if config is not None:
        values.update(read_configs(config))
    for text in overrides:
        key, value = parse_override(text)
        values[key] = value
    return from_dict(values)


def save_config(cfg: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML (what the run actually used)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
