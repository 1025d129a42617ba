"""The three-phase training schedule of Sec. 3.4: an epoch's phase and the loss terms active in it."""
from __future__ import annotations

from dataclasses import dataclass

from trainer.config import TrainConfig
from trainer.terms import LossTerm, select


@dataclass(frozen=True)
class ActiveTerms:
    """Loss terms of one epoch, rows of the loss table in its order; the step loss is their mean."""

    terms: tuple[LossTerm, ...]

    def names(self) -> list[str]:
        """Names of the active terms, in table order."""
        return [term.name for term in self.terms]


def phase_starts(cfg: TrainConfig) -> tuple[int, int]:
    """First epochs (1-based) of the correlation and feedback phases, scaled if configured."""
    first, second = cfg.phase_epochs
    if cfg.phase_reference_epochs is None:
        return first, second
    scale = cfg.epochs / cfg.phase_reference_epochs
    return 1 + round((first - 1) * scale), 1 + round((second - 1) * scale)


def phase(cfg: TrainConfig, epoch: int) -> int:
    """Phase of 1-based `epoch`: 1 (Eq. 1), 2 from the correlation start, 3 from the feedback start."""
    correlation_start, feedback_start = phase_starts(cfg)
    return 1 + int(epoch >= correlation_start) + int(epoch >= feedback_start)


def active_terms(cfg: TrainConfig, epoch: int) -> ActiveTerms:
    """The loss table's rows on in 1-based `epoch`."""
    return ActiveTerms(select(cfg, phase(cfg, epoch)))
