"""The pre-flight checks one by one: store roots, CLIP weights (looked up, never downloaded), and
which stages they apply to. Every test here runs with the network blocked."""
from __future__ import annotations

import socket
from pathlib import Path

import huggingface_hub.constants
import pytest

from pipeline import preflight, store
from pipeline.errors import PipelineError
from pipeline.runner import RunConfig, plan
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
    preflight.check_store_root(str(tmp_path))
    preflight.check_store_root(str(tmp_path / "new" / "stores"))
    assert not (tmp_path / "new").exists()  # checked, not created: a refused run writes nothing
    preflight.check_store_root(f"file://{tmp_path}")
    preflight.check_store_root("memory://somewhere")


@pytest.mark.parametrize("root, message", [
    ("{file}", "store root {file} is a file; --store-root takes a folder"),
    ("file://{file}", "store root {file} is a file; --store-root takes a folder"),
    ("{file}/stores", "store root {file}/stores cannot be created: {file} is a file; "),
    ("nosuch://bucket/x", "store root nosuch://bucket/x: "),
])
def test_store_root_that_cannot_be_a_folder_is_refused(root, message, tmp_path):
    file = tmp_path / "stores.txt"
    file.write_text("")
    with pytest.raises(PipelineError) as err:
        preflight.check_store_root(root.format(file=file))
    assert str(err.value).startswith(message.format(file=file))


@pytest.mark.parametrize("missing", [False, True], ids=["existing", "to be created"])
def test_unwritable_store_root_is_refused(missing, tmp_path, monkeypatch):
    """A folder this user cannot write to (simulated: tests may run as root, who writes anywhere)."""
    def denied(**kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(preflight.tempfile, "TemporaryFile", denied)
    root = tmp_path / "stores" if missing else tmp_path
    what = f"cannot be created in {tmp_path}" if missing else "is not writable"
    with pytest.raises(PipelineError, match=f"^store root {root} {what} \\(Permission denied\\); "):
        preflight.check_store_root(str(root))


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


def test_an_up_to_date_stage_runs_only_for_scenes_not_done(toy):
    """Rebuilt stages always run; an up-to-date one only when a scene of the run is not done."""
    from test_distributed import local_run

    graph = load_graph(toy["stages"])
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"])
    never = {p.stage.name: p for p in plan(graph, cfg)}
    assert preflight.will_run(never["double"], toy["store"], lambda: pytest.fail("scenes asked for"))
    local_run(toy, toy["store"])
    done = {p.stage.name: p for p in plan(graph, cfg)}
    assert done["double"].reason == "up to date"
    assert not preflight.will_run(done["double"], toy["store"], lambda: ["s0", "s1"])
    assert preflight.will_run(done["double"], toy["store"], lambda: ["s0", "s9"])
    assert not preflight.will_run(done["offset"], toy["store"], lambda: [])  # a global stage
    store.filesystem(toy["store"])[0].rm(store.stage_url(toy["store"], "offset"), recursive=True)
    offset = next(p for p in plan(graph, cfg) if p.stage.name == "offset")
    assert offset.reason == "never run" and preflight.will_run(offset, toy["store"], lambda: [])


def test_raise_first_names_the_worker():
    preflight.raise_first({"": None, "tcp://a:1": None})
    with pytest.raises(PipelineError, match=r"^on worker tcp://b:2: missing$"):
        preflight.raise_first({"tcp://a:1": None, "tcp://b:2": "missing", "tcp://c:3": "other"})
    with pytest.raises(PipelineError, match=r"^here$"):
        preflight.raise_first({"": "here"})
