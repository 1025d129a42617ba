"""The loss table drives the schedule, the engine, the run logs and the quality benchmark's switches:
the terms computed in a phase are the table's rows on in it, a switch removes exactly its row, and
one more row is one more term everywhere."""
from __future__ import annotations

import dataclasses
from itertools import product

import pytest
import torch
from benchmark_module import load_benchmark

from trainer import terms
from trainer.config import TrainConfig, from_dict
from trainer.data import ITEM_KEYS, OFFSETS, Batch, SceneDataset, collate
from trainer.distributed import Context
from trainer.engine import build_models, compute_losses, element_counts, step_loss
from trainer.schedule import active_terms, phase_starts
from trainer.synthetic import write_synthetic_store
from trainer.terms import PHASES, TERMS, LossTerm, cross_modal_term, switches, term_names

ONE_PROCESS = Context(0, 1, torch.device("cpu"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A two-room store, a config whose three phases start at epochs 1, 2 and 3, and a batch."""
    root = tmp_path_factory.mktemp("table") / "store"
    scenes = write_synthetic_store(root, num_scenes=2, seed=5, embed_dim=16, density=80.0,
                                   size=(2.0, 2.0, 1.5), label_noise=0.2)
    cfg = from_dict({"store_root": str(root), "voxel_size": 0.2, "epochs": 3, "phase_epochs": [2, 3],
                     "samples_per_scene": 32, "transformer_depth": 1, "num_workers": 0,
                     "device": "cpu", "progress": False})
    items = SceneDataset(cfg, scenes, 5, train=True)
    batch = collate([items[(1, i, i)] for i in range(len(scenes))])
    return cfg, batch


def computed(cfg: TrainConfig, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
    models = build_models(cfg, torch.device("cpu"))
    return compute_losses(models, batch, active_terms(cfg, epoch), terms.loss_context(cfg))


def expected(cfg: TrainConfig, phase: int) -> list[str]:
    """The table read by hand: switched on, begun, and with a teacher on where one is needed."""
    on: list[str] = []
    for term in TERMS:
        if ((term.switch is None or getattr(cfg, term.switch)) and term.first_phase <= phase
                and (not term.needs_any or set(term.needs_any) & set(on))):
            on.append(term.name)
    return on


def test_rows_are_well_formed():
    names = term_names()
    assert names == ["cross_modal", "intra_scene", "inter_scene", "feedback"]
    assert len(set(names)) == len(names)
    bools = {f.name for f in dataclasses.fields(TrainConfig) if f.type in (bool, "bool")}
    batch_fields = {*ITEM_KEYS, *OFFSETS}
    for i, term in enumerate(TERMS):
        assert term.switch is None or term.switch in bools, term.name
        assert term.elements in batch_fields and 1 <= term.first_phase <= PHASES, term.name
        assert set(term.needs_any) <= set(names[:i]), term.name
        assert term.equation.startswith("Eq. "), term.name


def test_rows_declare_the_batch_fields_and_config_keys_they_read():
    batch_fields = {*ITEM_KEYS, *OFFSETS}
    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for term in TERMS:
        assert term.elements in term.reads and set(term.reads) <= batch_fields, term.name
        assert term.config and set(term.config) <= keys, term.name


def test_batch_keys_read_as_attributes():
    assert not {*ITEM_KEYS, *OFFSETS} & set(dir(Batch))  # no key hidden by a dict method


def test_schedule_follows_the_table_for_every_switch_setting():
    for values in product((False, True), repeat=len(switches())):
        cfg = dataclasses.replace(TrainConfig(phase_epochs=[2, 3]), **dict(zip(switches(), values, strict=True)))
        for epoch, phase in ((1, 1), (2, 2), (3, 3)):
            assert active_terms(cfg, epoch).names() == expected(cfg, phase), (values, epoch)


def test_logged_terms_are_the_active_rows_of_each_phase(setup):
    cfg, batch = setup
    assert phase_starts(cfg) == (2, 3)
    for epoch in (1, 2, 3):
        losses = computed(cfg, batch, epoch)
        assert list(losses) == active_terms(cfg, epoch).names() == expected(cfg, epoch)
        counts = element_counts(batch, losses)
        assert counts == {n: len(getattr(batch, terms.term_named(n).elements)) for n in losses}
        part, values = step_loss(ONE_PROCESS, losses, counts)
        assert list(values) == list(losses)  # the logged keys
        assert part.item() == pytest.approx(sum(v.item() for v in losses.values()) / len(losses), rel=1e-6)


@pytest.mark.parametrize("switch", switches())
def test_switching_one_row_off_removes_exactly_that_term(setup, switch):
    cfg, batch = setup
    full = list(computed(cfg, batch, 3))
    assert full == term_names()
    off = computed(dataclasses.replace(cfg, **{switch: False}), batch, 3)
    assert list(off) == [n for n in full if n != switch]


def test_feedback_needs_a_transformer_as_teacher(setup):
    cfg, batch = setup
    lone = dataclasses.replace(cfg, intra_scene=False, inter_scene=False)
    assert list(computed(lone, batch, 3)) == ["cross_modal"] and not lone.uses_samples
    assert cfg.uses_samples


def test_one_more_row_is_one_more_term_everywhere(setup, monkeypatch):
    cfg, batch = setup

    def doubled(x: terms.TermInputs) -> torch.Tensor:
        return 2 * cross_modal_term(x)

    row = LossTerm("doubled", "Eq. 1", 2, "pair_voxel", None, doubled)
    monkeypatch.setattr(terms, "TERMS", (*TERMS[:1], row, *TERMS[1:]))
    assert active_terms(cfg, 1).names() == ["cross_modal"]
    losses = computed(cfg, batch, 3)
    assert list(losses) == ["cross_modal", "doubled", "intra_scene", "inter_scene", "feedback"]
    assert losses["doubled"].item() == pytest.approx(2 * losses["cross_modal"].item())
    _, values = step_loss(ONE_PROCESS, losses, element_counts(batch, losses))
    assert list(values) == list(losses)


def test_the_quality_benchmark_reads_its_switches_from_the_table():
    module = load_benchmark("bench_quality")
    assert module.SWITCHES == ("intra_set", *switches()) == ("intra_set", "intra_scene", "inter_scene", "feedback")
