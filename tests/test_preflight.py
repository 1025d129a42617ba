"""The pre-flight checks one by one: store roots, CLIP weights (looked up, never downloaded), which
stages they apply to (those the plan computes), and every problem of a run reported together, the
most basic first. Every test here runs with the network blocked."""
from __future__ import annotations

import socket
from pathlib import Path

import huggingface_hub.constants
import pytest

from pipeline import preflight
from pipeline.plan import RunConfig, Status, plan_run
from pipeline.stages import load_graph

OPENAI_REPO = "timm/vit_base_patch16_clip_224.openai"  # where open_clip keeps ViT-B-16 'openai' on the hub
CLIP = {"model_name": "ViT-B-16", "pretrained": "openai", "checkpoint": None, "model_config": None,
        "device": "cpu"}


def block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test instead of reaching out."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty Hugging Face and open_clip caches, and no network."""
    hub, home = tmp_path / "hf-hub", tmp_path / "home"
    hub.mkdir()
    home.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HOME", str(home))
    block_network(monkeypatch)
    return {"hub": hub, "home": home}


def fake_hub_file(hub: Path, repo: str, filename: str) -> Path:
    """A file laid out as the hub cache keeps a download: refs/main -> snapshots/<commit>/<file>."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    path = folder / "snapshots" / ("0" * 40) / filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    return path


def test_store_root_folder_missing_folder_and_url_pass(tmp_path):
    assert preflight.store_root_problem(str(tmp_path)) is None
    assert preflight.store_root_problem(str(tmp_path / "new" / "stores")) is None
    assert not (tmp_path / "new").exists()  # checked, not created: a refused run writes nothing
    assert preflight.store_root_problem(f"file://{tmp_path}") is None
    assert preflight.store_root_problem("memory://somewhere") is None


@pytest.mark.parametrize("root, message", [
    ("{file}", "store root {file} is a file; --store-root takes a folder"),
    ("file://{file}", "store root {file} is a file; --store-root takes a folder"),
    ("{file}/stores", "store root {file}/stores cannot be created: {file} is a file; "),
    ("nosuch://bucket/x", "store root nosuch://bucket/x: "),
])
def test_store_root_that_cannot_be_a_folder_is_refused(root, message, tmp_path):
    file = tmp_path / "stores.txt"
    file.write_text("")
    assert preflight.store_root_problem(root.format(file=file)).startswith(message.format(file=file))


@pytest.mark.parametrize("missing", [False, True], ids=["existing", "to be created"])
def test_unwritable_store_root_is_refused(missing, tmp_path, monkeypatch):
    """A folder this user cannot write to (simulated: tests may run as root, who writes anywhere)."""
    def denied(**kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(preflight.tempfile, "TemporaryFile", denied)
    root = tmp_path / "stores" if missing else tmp_path
    what = f"cannot be created in {tmp_path}" if missing else "is not writable"
    assert preflight.store_root_problem(str(root)).startswith(f"store root {root} {what} (Permission denied); ")


def test_checkpoint_must_be_a_readable_file(tmp_path):
    missing = tmp_path / "ViT-B-16.pt"
    assert preflight.weights_problem("features", {**CLIP, "checkpoint": str(missing)}) == (
        f"stage 'features': CLIP checkpoint {missing} (param features.checkpoint) cannot be read (No such "
        "file or directory); give a weights file on this machine for ViT-B-16")
    missing.write_bytes(b"weights")  # its content is the loader's business, not the pre-flight's
    assert preflight.weights_problem("features", {**CLIP, "checkpoint": str(missing)}) is None


def test_random_weights_need_nothing():
    assert preflight.weights_problem("text", {**CLIP, "pretrained": "none"}) is None


def test_pretrained_tag_missing_from_the_cache_names_model_tag_cache_and_param(caches):
    problem = preflight.weights_problem("features", CLIP)
    assert problem == (
        "stage 'features': CLIP weights ViT-B-16 pretrained=openai are not on this machine (looked for "
        f"open_clip_model.safetensors or open_clip_pytorch_model.bin of {OPENAI_REPO} in the Hugging Face "
        f"cache {caches['hub']}) and would be downloaded for every scene; download them once into that "
        "cache, or copy the weights file here and pass --set features.checkpoint=/path/ViT-B-16.pt")
    assert not list(caches["hub"].iterdir())  # looked up, nothing fetched


@pytest.mark.parametrize("filename", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_pretrained_tag_in_the_hub_cache_passes(filename, caches):
    path = fake_hub_file(caches["hub"], OPENAI_REPO, filename)
    assert preflight.weights_problem("features", CLIP) is None
    import open_clip

    assert preflight.cached_weights(open_clip.get_pretrained_cfg("ViT-B-16", "openai")) == (str(path), str(path))


def test_url_weights_are_looked_for_in_open_clips_own_cache(caches):
    """A pretrained config without a hub id is downloaded by URL into ~/.cache/clip."""
    cfg = {"url": "https://example.invalid/clip/models/abc/ViT-B-16.pt"}
    target = caches["home"] / ".cache" / "clip" / "ViT-B-16.pt"
    assert preflight.cached_weights(cfg) == (None, str(target))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    assert preflight.cached_weights(cfg) == (str(target), str(target))


@pytest.mark.parametrize("params, message", [
    ({"pretrained": "no-such-tag"}, "stage 'text': open_clip has no pretrained weights 'no-such-tag' for ViT-B-16 "
                                    "(its tags: openai, "),
    ({"model_config": {"embed_dim": 32}}, "stage 'text': model_config builds an unlisted model, so pretrained "
                                          "tag 'openai' cannot apply; pass --set text.checkpoint="),
])
def test_tags_that_cannot_apply_are_named(params, message):
    assert preflight.weights_problem("text", {**CLIP, **params}).startswith(message)


def test_clip_stages_are_those_declaring_clip_params():
    graph = load_graph()
    assert [n for n in graph.order if preflight.uses_clip(graph.stages[n])] == ["text", "features"]
    assert not preflight.uses_clip(graph.stages["features"].variants["simulated"])


def test_weights_are_checked_for_the_stages_the_plan_computes(toy, tmp_path, monkeypatch):
    """A rebuilt stage is checked; an up-to-date one only when a scene of the run is not done."""
    from test_distributed import local_run

    local_run(toy, toy["store"])
    monkeypatch.setattr(preflight, "uses_clip", lambda stage: stage.name in ("double", "offset"))
    graph = load_graph(toy["stages"])
    checked: list[str] = []

    def weights(p):
        checked.append(p.stage.name)
        return {"": f"{p.stage.name} has no weights"}

    fresh = RunConfig(dataset="toy", data_root=toy["raw"], store_root=str(tmp_path / "fresh"))
    assert sorted(preflight.problems(fresh, plan_run(graph, fresh), weights)) == [
        "double has no weights", "offset has no weights"]
    checked.clear()
    done = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"])
    assert preflight.problems(done, plan_run(graph, done), weights) == [] and checked == []
    more = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"], scenes=("s0", "s9"))
    plan = plan_run(graph, more)
    assert plan.stage("double").status is Status.RESUME and plan.stage("offset").status is Status.UP_TO_DATE
    assert preflight.problems(more, plan, weights) == ["double has no weights"]


def test_every_problem_is_reported_most_basic_first(toy, tmp_path, monkeypatch):
    """A store root that is a file, a data root that does not exist, a bad class list and missing
    weights: all four, one line each, in that order (not only the weights, as before)."""
    graph = load_graph(toy["stages"])
    file = tmp_path / "stores.txt"
    file.write_text("")
    cfg = RunConfig(dataset="toy", data_root=tmp_path / "raw-typo", store_root=str(file))
    plan = plan_run(graph, cfg)
    plan.stages[1].params = {**plan.stages[1].params, "classes": "no-such-list"}
    monkeypatch.setattr(preflight, "uses_clip", lambda stage: stage.name == "offset")
    with pytest.raises(preflight.PreflightError) as err:
        preflight.check(cfg, plan, lambda p: {"": "stage 'offset': no weights", "tcp://w:1": "other"})
    lines = err.value.problems
    assert str(err.value) == "\n".join(lines) and len(lines) == 4
    assert lines[0].startswith(f"store root {file} is a file; ")
    assert lines[1] == f"data root {tmp_path / 'raw-typo'} does not exist; --data-root takes the folder of the raw dataset 'toy'"
    assert lines[2].startswith(f"stage '{plan.stages[1].stage.name}': ") and "no-such-list" in lines[2]
    assert lines[3] == "stage 'offset': no weights"


def test_first_problem_names_the_worker():
    assert preflight.first_problem({"": None, "tcp://a:1": None}) is None
    assert preflight.first_problem({"tcp://a:1": None, "tcp://b:2": "missing", "tcp://c:3": "other"}) == (
        "on worker tcp://b:2: missing")
    assert preflight.first_problem({"": "here"}) == "here"
