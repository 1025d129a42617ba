"""The three-phase training schedule of Sec. 3.4: which loss terms are active in an epoch."""
from __future__ import annotations

from dataclasses import dataclass

from trainer.config import TrainConfig


@dataclass(frozen=True)
class ActiveTerms:
    """Loss terms of one epoch; the step loss is the mean of the active ones."""

    cross_modal: bool = True   # Eq. 1, always on
    intra_scene: bool = False  # Eq. 4 on the intra-scene transformer's output
    inter_scene: bool = False  # Eq. 4 on the inter-scene transformer's output (Eq. 7)
    feedback: bool = False     # Eq. 8

    @property
    def correlation(self) -> bool:
        """Whether any transformer runs this epoch."""
        return self.intra_scene or self.inter_scene

    def names(self) -> list[str]:
        """Names of the active terms, in a fixed order."""
        return [n for n in ("cross_modal", "intra_scene", "inter_scene", "feedback") if getattr(self, n)]


def phase_starts(cfg: TrainConfig) -> tuple[int, int]:
    """First epochs (1-based) of the correlation and feedback phases, scaled if configured."""
    first, second = cfg.phase_epochs
    if cfg.phase_reference_epochs is None:
        return first, second
    scale = cfg.epochs / cfg.phase_reference_epochs
    return 1 + round((first - 1) * scale), 1 + round((second - 1) * scale)


def active_terms(cfg: TrainConfig, epoch: int) -> ActiveTerms:
    """Terms active in 1-based `epoch`: Eq. 1 always, Eq. 4 from phase 2, Eq. 8 from phase 3."""
    correlation_start, feedback_start = phase_starts(cfg)
    correlation = epoch >= correlation_start
    intra = cfg.intra_scene and correlation
    inter = cfg.inter_scene and correlation
    feedback = cfg.feedback and (intra or inter) and epoch >= feedback_start
    return ActiveTerms(True, intra, inter, feedback)
