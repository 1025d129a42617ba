"""The optimisers of Sec. 3.4: SGD for the 3D model, AdamW for the transformers, cosine decay."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainer.config import TrainConfig
from trainer.modelset import Models


@dataclass
class Optimizers:
    """SGD for the 3D model, AdamW for the transformers (None if both are off), cosine decay."""

    sgd: torch.optim.SGD
    adamw: torch.optim.AdamW | None
    schedulers: list[torch.optim.lr_scheduler.LRScheduler]

    def zero_grad(self) -> None:
        """Clear gradients of every parameter."""
        for opt in self.all():
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One optimiser step and one scheduler step each (AdamW skips params without grads)."""
        for opt in self.all():
            opt.step()
        for sched in self.schedulers:
            sched.step()

    def all(self) -> list[torch.optim.Optimizer]:
        """The optimisers in use."""
        return [self.sgd] + ([self.adamw] if self.adamw is not None else [])

    def state_dict(self) -> dict[str, Any]:
        """Optimiser and scheduler states."""
        return {"optimizers": [o.state_dict() for o in self.all()],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        for opt, saved in zip(self.all(), state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        for sched, saved in zip(self.schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(saved)


def build_optimizers(cfg: TrainConfig, models: Models, total_steps: int) -> Optimizers:
    """SGD lr_3d (momentum, wd) and AdamW lr_transformer, cosine-decayed to 0 over the run."""
    sgd = torch.optim.SGD(models.encoder.parameters(), lr=cfg.lr_3d, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    params = list(models.correlation.parameters())
    adamw = torch.optim.AdamW(params, lr=cfg.lr_transformer,
                              weight_decay=cfg.weight_decay_transformer) if params else None
    steps = max(1, total_steps)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                  for opt in [sgd] + ([adamw] if adamw is not None else [])]
    return Optimizers(sgd, adamw, schedulers)
