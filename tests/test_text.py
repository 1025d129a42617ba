"""Prompt-ensembled text embeddings and the `text` stage, checked against a hand ensemble."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.classes import read_class_names
from pipeline.clip.model import TINY_CONFIG, load_clip
from pipeline.clip.stages import text_stage
from pipeline.clip.templates import PROMPT_TEMPLATES
from pipeline.clip.text import text_embeddings
from pipeline.errors import PipelineError
from pipeline.stages import stage_params

PARAMS = stage_params("text", {"model_name": "tiny", "pretrained": "none", "model_config": TINY_CONFIG,
                               "device": "cpu"})
SCANNET20 = Path(__file__).resolve().parents[1] / "data" / "classes" / "scannet20.txt"


@pytest.fixture(scope="module")
def tiny():
    return load_clip("tiny", pretrained="none", model_config=TINY_CONFIG)


def test_templates_are_clip_imagenet_plus_scene():
    assert len(PROMPT_TEMPLATES) == 85 and len(set(PROMPT_TEMPLATES)) == 85
    assert all(t.count("{}") == 1 for t in PROMPT_TEMPLATES)
    assert PROMPT_TEMPLATES[80:] == (
        "there is a {} in the scene.", "there is the {} in the scene.", "this is a {} in the scene.",
        "this is the {} in the scene.", "this is one {} in the scene.",
    )
    metadata = pytest.importorskip("open_clip.zero_shot_metadata")
    assert list(PROMPT_TEMPLATES[:80]) == [t("{}") for t in metadata.OPENAI_IMAGENET_TEMPLATES]


def test_text_embeddings_equal_hand_ensemble(tiny):
    model, tokenizer = tiny
    names = ["chair", "shower curtain"]
    emb = text_embeddings(model, tokenizer, names, list(PROMPT_TEMPLATES))
    assert emb.dtype == np.float32 and emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    with torch.no_grad():
        for c, name in enumerate(names):
            total = np.zeros(32)
            for template in PROMPT_TEMPLATES:
                e = model.encode_text(tokenizer([template.format(name)]))[0].double().numpy()
                total += e / np.sqrt((e * e).sum())
            mean = total / len(PROMPT_TEMPLATES)
            np.testing.assert_allclose(emb[c], mean / np.sqrt((mean * mean).sum()), atol=1e-5)
    assert not np.allclose(emb[0], emb[1], atol=1e-3)


@pytest.mark.parametrize("names, needle", [
    (["chair", "table", "chair"], "chair"),
    (["chair", " chair "], "chair"),
    (["chair", ""], "empty"),
    (["chair", "  "], "empty"),
    ([], "empty"),
])
def test_bad_class_lists_are_rejected(tiny, names, needle):
    model, tokenizer = tiny
    with pytest.raises(PipelineError, match=needle):
        text_embeddings(model, tokenizer, names, list(PROMPT_TEMPLATES))
    with pytest.raises(PipelineError, match=needle):
        text_stage({}, {**PARAMS, "classes": names})


def test_templates_need_one_slot(tiny):
    model, tokenizer = tiny
    with pytest.raises(PipelineError, match="slot"):
        text_embeddings(model, tokenizer, ["chair"], ["a photo."])


def test_text_stage_reads_class_set_in_label_order(tiny):
    model, tokenizer = tiny
    out = text_stage({}, {**PARAMS, "classes": "scannet20"})
    names = SCANNET20.read_text().splitlines()
    assert out["class_names"] == names and len(names) == 20
    emb = out["embeddings"]
    assert emb.dtype == np.float32 and emb.shape == (20, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    picked = text_embeddings(model, tokenizer, [names[15], names[3]], list(PROMPT_TEMPLATES))
    np.testing.assert_allclose(emb[[15, 3]], picked, atol=1e-6)


def test_text_stage_inline_list_and_unknown_set():
    out = text_stage({}, {**PARAMS, "classes": ["car", "road"]})
    assert out["class_names"] == ["car", "road"] and out["embeddings"].shape == (2, 32)
    with pytest.raises(PipelineError, match="scannet20"):
        read_class_names("no_such_set")
