"""The text encoder a store's text stage used, for the viewer's open-vocabulary queries: CLIP with
the stage's model and weights (prompt-ensembled like the class embeddings), or the simulated VLM's
class prototypes, which embed only their own class names."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline import store
from trainer.data import read_text


class QueryError(ValueError):
    """A phrase the store's text encoder cannot embed; says why."""


@dataclass
class TextEncoder:
    """`embed(phrase)` gives an L2-normalised f32[D]; `name` says which encoder it is."""

    name: str
    embed: Callable[[str], np.ndarray]


def store_text_encoder(store_root: str, stage: str = "text") -> TextEncoder:
    """The encoder behind the store's text stage, read from the stage's variant and params."""
    attrs = store.stage_attrs(store_root, stage)
    params = attrs.get("params", {})
    if attrs.get("variant") == "simulated":
        embeddings, names = read_text(store_root, stage)
        return TextEncoder(f"simulated VLM prototypes ({len(names)} class names only, no language model)",
                           lambda phrase: _prototype(phrase, embeddings, names))
    weights = params.get("checkpoint") or params.get("pretrained")
    random = str(weights).lower() == "none"
    name = f"CLIP {params.get('model_name')} ({'random weights, tests only' if random else weights})"
    return TextEncoder(name, lambda phrase: _clip(phrase, params))


def _prototype(phrase: str, embeddings: np.ndarray, names: list[str]) -> np.ndarray:
    """The prototype of the class named `phrase` (case and surrounding spaces ignored)."""
    lowered = [n.lower() for n in names]
    key = phrase.strip().lower()
    if key not in lowered:
        raise QueryError(f"the simulated VLM embeds only its class names ({', '.join(names)}), "
                         f"not {phrase.strip()!r}")
    return embeddings[lowered.index(key)]


def _clip(phrase: str, params: dict) -> np.ndarray:
    """Prompt-ensembled CLIP embedding of `phrase`, with the text stage's model and weights."""
    from pipeline.clip.model import load_clip
    from pipeline.clip.templates import PROMPT_TEMPLATES
    from pipeline.clip.text import text_embeddings

    if not phrase.strip():
        raise QueryError("type a phrase to query")
    model, tokenizer = load_clip(params["model_name"], str(params["pretrained"]),
                                 params.get("checkpoint") or None, "cpu",
                                 params.get("model_config") or None)
    return text_embeddings(model, tokenizer, [phrase.strip()], list(PROMPT_TEMPLATES))[0]
