"""The loss terms as one table: per row its name, equation, first phase, the elements it averages
over, the config switch that enables it, the config keys and batch fields it reads, and its function.

The schedule picks an epoch's rows from here, the trainer computes them in table order and weights
each by its share of the batch's elements (and by its config weight, where a row names one), the
run logs name them, and the quality benchmark reads the switches. Run-level quantities (class
weights and logit offsets from the training label shares, the temperature, soft targets) are
built once per run into a `LossContext` that every term reads. Adding a term is one row and its
function; adding a modifier is one context field, its line in `loss_context` and its function in
trainer/losses.py.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import torch

from trainer.config import ConfigError, TrainConfig
from trainer.losses import (
    class_weights,
    correlation_ce,
    correlation_soft_ce,
    cross_modal_ce,
    cross_modal_soft_ce,
    feedback_kl,
    logit_adjustment,
)

if TYPE_CHECKING:
    from trainer.data import Batch
    from trainer.models import Correlation

PHASES = 3  # Sec. 3.4: Eq. 1 alone, then + correlation (Eq. 4), then + feedback (Eq. 8)


@dataclass(frozen=True)
class LossContext:
    """Run-level quantities the terms read, built once per run (`loss_context`), so no modifier
    travels through the trainer's signatures."""

    temperature: float = 1.0                   # of both distributions in Eq. 8
    soft_targets: bool = False                 # Eq. 1 and Eq. 4 against soft per-set targets
    class_weights: torch.Tensor | None = None  # f32[C] CE weight per class (class_balance), None: off
    logit_offset: torch.Tensor | None = None   # f32[C] training logit offset (logit_adjustment), None: off


def loss_context(cfg: TrainConfig, label_counts: Callable[[], np.ndarray] | None = None,
                 device: torch.device | None = None) -> LossContext:
    """The run's loss context: the training label shares (counted by `label_counts`, only when a
    modifier needs them) give class weights and logit offsets, on `device`."""
    weights = offset = None
    if cfg.class_balance > 0 or cfg.logit_adjustment > 0:
        if label_counts is None:
            raise ConfigError("class_balance/logit_adjustment: the run's training labels are needed")
        counts = torch.from_numpy(label_counts())
        if cfg.class_balance > 0:
            weights = class_weights(counts, cfg.class_balance).to(device)
        if cfg.logit_adjustment > 0:
            offset = logit_adjustment(counts, cfg.logit_adjustment).to(device)
    return LossContext(cfg.feedback_temperature, cfg.soft_targets, weights, offset)


@dataclass
class TermInputs:
    """What the terms of one step read; the sampled voxels' features and the transformers'
    outputs are computed once, when a term first asks for them."""

    text: torch.Tensor       # f32[C, D] text embeddings T, fixed
    features: torch.Tensor   # f32[V, D] f_m of every voxel of the batch
    batch: Batch
    correlation: Correlation
    run: LossContext = field(default_factory=LossContext)

    @cached_property
    def sampled(self) -> torch.Tensor:
        """f32[S, D]: f_m of the sampled voxels."""
        return self.features[self.batch.sample_voxel]

    @cached_property
    def aggregated(self) -> dict[str, torch.Tensor]:
        """The sampled voxels' features after each transformer (`intra`, then `inter`)."""
        return self.correlation(self.sampled, self.batch.sample_offsets)


def cross_modal_term(x: TermInputs) -> torch.Tensor:  # Eq. 1
    """Eq. 1 over every pair of the batch (against soft targets where the run trains on them)."""
    run = x.run
    if run.soft_targets:
        return cross_modal_soft_ce(x.features, x.text, x.batch.voxel_target, run.class_weights, run.logit_offset)
    return cross_modal_ce(x.features, x.text, x.batch.pair_voxel, x.batch.pair_label, run.class_weights,
                          run.logit_offset)


def correlation_term(x: TermInputs, transformer: str) -> torch.Tensor:  # Eq. 4
    """Eq. 4 on one transformer's output (against soft targets where the run trains on them)."""
    run = x.run
    if run.soft_targets:
        return correlation_soft_ce(x.aggregated[transformer], x.text, x.batch.sample_target,
                                   run.class_weights, run.logit_offset)
    return correlation_ce(x.aggregated[transformer], x.text, x.batch.sample_label, run.class_weights,
                          run.logit_offset)


def intra_scene_term(x: TermInputs) -> torch.Tensor:  # Eq. 4 on Eq. 3
    """Eq. 4 on the intra-scene transformer's output."""
    return correlation_term(x, "intra")


def inter_scene_term(x: TermInputs) -> torch.Tensor:  # Eq. 4 on Eq. 7
    """Eq. 4 on the inter-scene transformer's output."""
    return correlation_term(x, "inter")


def feedback_term(x: TermInputs) -> torch.Tensor:  # Eq. 8
    """Eq. 8 from the last transformer's output (teacher) to the 3D model's features (student)."""
    teacher = list(x.aggregated.values())[-1]
    return feedback_kl(x.sampled, teacher, x.text, x.run.temperature)


@dataclass(frozen=True)
class LossTerm:
    """One row of the loss table."""

    name: str                               # key in the run logs
    equation: str                           # in the paper
    first_phase: int                        # 1: from the start, 2: correlation, 3: feedback phase
    elements: str                           # Batch field whose rows the term averages over
    switch: str | None                      # TrainConfig bool that enables it; None: always on
    loss: Callable[[TermInputs], torch.Tensor]
    needs_any: tuple[str, ...] = ()         # on only while one of these earlier terms is on
    weight: str | None = None               # TrainConfig float scaling it in the step loss; None: 1
    reads: tuple[str, ...] = ()             # batch keys its function reads (`elements` among them)
    config: tuple[str, ...] = ()            # TrainConfig keys its function reads, via the LossContext


MODIFIERS = ("class_balance", "logit_adjustment", "soft_targets")  # config keys of the CE modifiers

TERMS: tuple[LossTerm, ...] = (
    LossTerm("cross_modal", "Eq. 1", 1, "pair_voxel", None, cross_modal_term, weight="cross_modal_weight",
             reads=("pair_voxel", "pair_label", "voxel_target"), config=MODIFIERS),
    LossTerm("intra_scene", "Eq. 4 (Eq. 3)", 2, "sample_voxel", "intra_scene", intra_scene_term,
             reads=("sample_voxel", "sample_offsets", "sample_label", "sample_target"), config=MODIFIERS),
    LossTerm("inter_scene", "Eq. 4 (Eq. 7)", 2, "sample_voxel", "inter_scene", inter_scene_term,
             reads=("sample_voxel", "sample_offsets", "sample_label", "sample_target"), config=MODIFIERS),
    # the transformers' output is its teacher: without one it stays off
    LossTerm("feedback", "Eq. 8", 3, "sample_voxel", "feedback", feedback_term,
             needs_any=("intra_scene", "inter_scene"), reads=("sample_voxel", "sample_offsets"),
             config=("feedback_temperature",)),
)


def term_names() -> list[str]:
    """Every term's name, in table order."""
    return [term.name for term in TERMS]


def term_named(name: str) -> LossTerm:
    """The row called `name`."""
    return next(term for term in TERMS if term.name == name)


def select(cfg: TrainConfig, phase: int) -> tuple[LossTerm, ...]:
    """Rows on in `phase` (1-based): switched on, begun, and with a term they need on."""
    chosen: list[LossTerm] = []
    for term in TERMS:
        switched = term.switch is None or getattr(cfg, term.switch)
        taught = not term.needs_any or any(c.name in term.needs_any for c in chosen)
        if switched and taught and term.first_phase <= phase:
            chosen.append(term)
    return tuple(chosen)


def term_weights(cfg: TrainConfig) -> dict[str, float]:
    """Each weighted row's weight in the step loss, from its config key (the others weigh 1)."""
    return {term.name: getattr(cfg, term.weight) for term in TERMS if term.weight is not None}


def uses_samples(cfg: TrainConfig) -> bool:
    """Whether a term the config can turn on averages over sampled voxels."""
    return any(term.elements == "sample_voxel" for term in select(cfg, PHASES))


def switches() -> tuple[str, ...]:
    """The config switches of the switchable terms, in table order."""
    return tuple(term.switch for term in TERMS if term.switch is not None)


def element_count(batch: Batch, term: LossTerm) -> int:
    """Elements `term` averages over in `batch` (0 where the batch has none)."""
    rows = getattr(batch, term.elements)
    return 0 if rows is None else len(rows)
