"""Prompt-ensembled CLIP text embeddings, one per class (Sec. 3.1)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.classes import validate_class_names
from pipeline.errors import PipelineError

PROMPT_BATCH = 512  # prompts encoded per forward pass; bounds memory for long class lists


def text_embeddings(
    model: Any, tokenizer: Callable[..., torch.Tensor], class_names: list[str], templates: list[str]
) -> np.ndarray:
    """f32[C,D]: per class, the mean of its L2-normalised template embeddings, renormalised."""
    names = validate_class_names(class_names)
    templates = _validate_templates(templates)
    prompts = [template.format(name) for name in names for template in templates]
    device = next(model.parameters()).device
    chunks = []
    with torch.no_grad():
        for start in range(0, len(prompts), PROMPT_BATCH):
            tokens = tokenizer(prompts[start:start + PROMPT_BATCH]).to(device)
            chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
        per_prompt = torch.cat(chunks).reshape(len(names), len(templates), -1)
        ensembled = F.normalize(per_prompt.mean(dim=1), dim=-1)
    return ensembled.cpu().numpy().astype(np.float32)


def _validate_templates(templates: Sequence[str]) -> list[str]:
    """Templates that each hold exactly one `{}` slot for the class name."""
    templates = list(templates)
    if not templates:
        raise PipelineError("no prompt templates given")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise PipelineError(f"prompt templates need exactly one '{{}}' slot: {bad}")
    return templates
