"""The training losses, one function per equation of the paper.

Logits are inner products psi = <f, T_c> with the fixed text embeddings T (Sec. 3.1). The
paper writes Eq. 1, 4 and 8 as sums; here each is averaged over its terms so that the step
loss, the mean of the active terms (Sec. 3.4), does not depend on pair or sample counts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def class_logits(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """psi(f_m, T_c) = <f_m, T_c> for every feature row and class: f32[M, C]."""
    return features @ text.t()


def label_shares(counts: torch.Tensor) -> torch.Tensor:
    """f64[C]: each class's share of the counted training pair labels (class balance, logit
    adjustment)."""
    counts = counts.to(torch.float64)
    return counts / counts.sum().clamp(min=1)


def class_weights(counts: torch.Tensor, power: float) -> torch.Tensor:
    """f32[C]: share_c^-power for the classes with labels (0 for the others), normalised so that
    the weight averaged over the counted labels is 1; power 0 gives 1 for every class."""
    share = label_shares(counts)
    weights = torch.where(share > 0, share.clamp(min=1e-12) ** -power, torch.zeros_like(share))
    return (weights / (share * weights).sum().clamp(min=1e-12)).to(torch.float32)


def logit_adjustment(counts: torch.Tensor, tau: float) -> torch.Tensor:
    """f32[C]: tau * log(share_c), added to the training logits of Eq. 1 and Eq. 4 (beyond the
    paper; logit adjustment, Menon et al., ICLR 2021): a rare class has to win by a margin in
    training, so the unadjusted logits that inference uses favour it. A class without labels gets
    0, the offset of a class holding every label: nothing teaches it, so inference must not raise
    it. tau 0 gives 0 for every class."""
    share = label_shares(counts)
    return (tau * torch.log(torch.where(share > 0, share, torch.ones_like(share)))).to(torch.float32)


def adjusted(logits: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
    """Training logits plus the per-class `offset` (logit adjustment; None: unchanged)."""
    return logits if offset is None else logits + offset


def weighted_mean(losses: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-element losses, each times its label's class weight (None: unweighted)."""
    return losses.mean() if weights is None else (losses * weights[labels]).mean()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """sum(target * weight_c * -log softmax(logits)) / sum(target): with one-hot rows, the
    weighted mean CE; `target` rows may be distributions or summed ones (a row per voxel)."""
    mass = target if weights is None else target * weights
    return -(mass * F.log_softmax(logits, dim=1)).sum() / target.sum().clamp(min=1e-12)


def cross_modal_ce(features: torch.Tensor, text: torch.Tensor, pair_index: torch.Tensor,
                   pair_labels: torch.Tensor, weights: torch.Tensor | None = None,
                   offset: torch.Tensor | None = None) -> torch.Tensor:  # Eq. 1
    """Mean CE over pairs (point `pair_index[k]`, label `pair_labels[k]`) of <f, T> logits.

    Logits are computed once per point and gathered per pair, so a point seen in many
    frames costs one row of features, not one per pair. `weights` and `offset` (beyond the
    paper): per-class CE weights and logit adjustment.
    """
    log_prob = F.log_softmax(adjusted(class_logits(features, text), offset), dim=1)
    return weighted_mean(-log_prob[pair_index, pair_labels], pair_labels, weights)


def cross_modal_soft_ce(features: torch.Tensor, text: torch.Tensor, voxel_target: torch.Tensor,
                        weights: torch.Tensor | None = None, offset: torch.Tensor | None = None
                        ) -> torch.Tensor:  # Eq. 1
    """Eq. 1 against soft per-set targets (beyond the paper): `voxel_target` sums the pairs' targets
    per voxel, so this is the mean over pairs of each pair's soft CE."""
    return soft_cross_entropy(adjusted(class_logits(features, text), offset), voxel_target, weights)


def correlation_ce(aggregated: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                   weights: torch.Tensor | None = None, offset: torch.Tensor | None = None
                   ) -> torch.Tensor:  # Eq. 4
    """Mean CE of the transformer's aggregated features f^_m against refined labels l^_m
    (`weights` and `offset`, beyond the paper: per-class CE weights and logit adjustment)."""
    losses = F.cross_entropy(adjusted(class_logits(aggregated, text), offset), labels, reduction="none")
    return weighted_mean(losses, labels, weights)


def correlation_soft_ce(aggregated: torch.Tensor, text: torch.Tensor, targets: torch.Tensor,
                        weights: torch.Tensor | None = None, offset: torch.Tensor | None = None
                        ) -> torch.Tensor:  # Eq. 4
    """Eq. 4 against soft per-set targets f32[S, C] (beyond the paper)."""
    return soft_cross_entropy(adjusted(class_logits(aggregated, text), offset), targets, weights)


def feedback_kl(student: torch.Tensor, teacher: torch.Tensor, text: torch.Tensor,
                temperature: float = 1.0) -> torch.Tensor:  # Eq. 8
    """Mean over samples of KL(p_teacher || p_student), p = softmax(<f, T> / temperature).

    The teacher (aggregated features f^_m) is detached: Eq. 8 distils the correlation
    ability into the 3D model, so only the 3D model's features f_m are pulled.
    """
    log_student = F.log_softmax(class_logits(student, text) / temperature, dim=1)
    log_teacher = F.log_softmax(class_logits(teacher.detach(), text) / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)

