"""One training step (Sec. 3.4): the active loss terms, the step loss over all processes, the
update.

The 3D model's features f_m give Eq. 1 on every pair; in the correlation phase the sampled
voxels' features go through the intra-scene transformer (Eq. 3-4) and/or the inter-scene
transformer (Eq. 7, fed the intra output when both are on), each with its own Eq. 4 loss; in the
feedback phase Eq. 8 pulls f_m of the sampled voxels towards the last transformer's output. The
step loss is the mean of the active terms. Under `torchrun` the processes share each step's batch
(trainer/distributed.py).
"""
from __future__ import annotations

import torch

from trainer import distributed
from trainer.data import Batch
from trainer.modelset import Models
from trainer.optim import Optimizers
from trainer.schedule import ActiveTerms
from trainer.terms import LossContext, TermInputs, element_count, term_named, term_names


def compute_losses(models: Models, batch: Batch, terms: ActiveTerms,
                   run: LossContext | None = None) -> dict[str, torch.Tensor]:
    """The active loss terms of one batch, in table order (a term without elements, e.g. no
    pairs, is left out); the 3D model runs on every batch. `run`: the run's loss context
    (the paper's plain losses where None)."""
    inputs = TermInputs(models.text, models.encoder(batch.coords, batch.feats), batch,
                        models.correlation, run or LossContext())
    return {term.name: term.loss(inputs) for term in terms.terms if element_count(batch, term)}


def element_counts(batch: Batch | None, losses: dict[str, torch.Tensor]) -> dict[str, int]:
    """Elements each computed term averages over (its row's `elements`: pairs, sampled voxels)."""
    return {name: element_count(batch, term_named(name)) for name in losses}


def step_loss(ctx: distributed.Context, losses: dict[str, torch.Tensor], counts: dict[str, int],
              weights: dict[str, float] | None = None) -> tuple[torch.Tensor | None, dict[str, float]]:
    """This process's part of the step loss, and the step's term values over all processes.

    The step loss is the mean of the terms computed anywhere in the global batch, each term the
    mean over all its elements (times its weight in `weights`, 1 where absent); a process
    weights its terms by its share of their elements, so the parts sum to the loss of one process
    over the whole batch. The part is None where this process computed no term; the values
    (unweighted) are empty where no process did (the step is skipped).
    """
    names = term_names()
    local = [float(counts.get(n, 0)) for n in names]
    local += [losses[n].item() * counts[n] if n in losses else 0.0 for n in names]
    reduced = distributed.all_sum(ctx, torch.tensor(local, dtype=torch.float64, device=ctx.device)).tolist()
    totals, sums = dict(zip(names, reduced[:len(names)], strict=True)), reduced[len(names):]
    values = {n: s / totals[n] for n, s in zip(names, sums, strict=True) if totals[n] > 0}
    weight = weights or {}
    parts = [losses[n] * (counts[n] / totals[n]) * weight.get(n, 1.0) for n in losses]
    return (torch.stack(parts).sum() / len(values) if parts else None), values


def train_step(ctx: distributed.Context, models: Models, optimizers: Optimizers, batch: Batch | None,
               terms: ActiveTerms, run: LossContext, weights: dict[str, float]) -> dict[str, float]:
    """One update on this process's share of a batch (None: an empty share); returns the step's
    term values over all processes (empty: no process had a term, nothing was learnt)."""
    losses = {} if batch is None else compute_losses(models, batch.to(ctx.device), terms, run)
    part, values = step_loss(ctx, losses, element_counts(batch, losses), weights)
    if values:
        optimizers.zero_grad()
        if part is not None:
            part.backward()
        distributed.sum_gradients(ctx, [*models.encoder.parameters(), *models.correlation.parameters()])
        optimizers.step()
    distributed.average_buffers(ctx, (models.encoder,), ran=batch is not None)
    return values
