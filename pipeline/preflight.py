"""Pre-flight: refuse a run that cannot work, once and at the start, before any task is sent.

Without these checks a missing prerequisite surfaces per scene: a CLIP stage without its weights
retries the download in every task (about 46 s per scene without network, some 19 hours on
ScanNet), and a store root that is a file ends in a traceback. Each check here raises one
PipelineError line that names what is wrong and how to fix it. Param values are checked where a
run's params are resolved (their declared types and ranges, `pipeline.stages.Param.check`).
Nothing here downloads: CLIP weights are looked up where open_clip would read them from.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import store
from pipeline.classes import read_class_names
from pipeline.errors import PipelineError
from pipeline.stages import Stage

if TYPE_CHECKING:
    from pipeline.runner import StagePlan

# A stage loads CLIP (pipeline.clip.model.load_clip) when it declares these params.
CLIP_PARAMS = frozenset({"model_name", "pretrained", "checkpoint", "model_config"})


def check_store_root(store_root: str) -> None:
    """A local store root must be a writable folder or creatable as one; a URL needs its fsspec backend."""
    local = store.local_root(store_root)
    if local is None:
        store.filesystem(store_root)  # an unknown protocol or a missing s3fs/gcsfs: one line
        return
    local = local.absolute()
    existing = next(p for p in (local, *local.parents) if p.exists())
    if not existing.is_dir():
        what = "is a file" if existing == local else f"cannot be created: {existing} is a file"
        raise PipelineError(f"store root {local} {what}; --store-root takes a folder (created when "
                            "missing) or an fsspec URL")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        what = "is not writable" if existing == local else f"cannot be created in {existing}"
        raise PipelineError(f"store root {local} {what} ({exc.strerror or type(exc).__name__}); "
                            "choose a folder this user can write to") from exc


def check_class_list(stage: str, params: Mapping[str, Any]) -> None:
    """A stage's class list (its ``classes`` param) must exist, be valid and fit the u8 labels of
    the pseudo and refine stages: one line naming the stage and the list otherwise."""
    if "classes" not in params:
        return
    try:
        read_class_names(params["classes"])
    except PipelineError as exc:
        raise PipelineError(f"stage '{stage}': {exc}") from exc


def uses_clip(stage: Stage) -> bool:
    """Whether a stage loads a CLIP model from its params (its declared params include CLIP_PARAMS)."""
    return CLIP_PARAMS <= set(stage.params)


def will_run(plan: StagePlan, store_root: str, scenes: Callable[[], Sequence[str]]) -> bool:
    """Whether a run computes anything in this stage: it is rebuilt, or a scene of the run is not
    done (``scenes()``, the run's scenes, is called only for a stage that is up to date)."""
    if plan.reason != "up to date":
        return True
    if plan.stage.kind == "global":
        try:
            store.open_global(store_root, plan.stage.name)
        except PipelineError:
            return True
        return False
    return bool(set(scenes()) - set(store.done_scenes(store_root, plan.stage.name)))


def weights_problem(stage: str, params: Mapping[str, Any]) -> str | None:
    """Why a CLIP stage cannot load its weights here without network; None when it can.

    Runs where the stage's tasks run (a Dask worker of a cluster), so it takes plain values.
    """
    model, tag = str(params["model_name"]), str(params["pretrained"])
    local = f"--set {stage}.checkpoint=/path/{model}.pt"
    if params["checkpoint"]:
        path = Path(params["checkpoint"]).expanduser()
        try:
            with path.open("rb"):
                return None
        except OSError as exc:
            return (f"stage '{stage}': CLIP checkpoint {path} (param {stage}.checkpoint) cannot be read "
                    f"({exc.strerror or type(exc).__name__}); give a weights file on this machine for {model}")
    if tag.lower() == "none":
        return None
    if params["model_config"] is not None:
        return (f"stage '{stage}': model_config builds an unlisted model, so pretrained tag {tag!r} cannot "
                f"apply; pass {local} or --set {stage}.pretrained=none")
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        return (f"stage '{stage}': open_clip has no pretrained weights {tag!r} for {model} (its tags: {tags}); "
                f"pass {local} or --set {stage}.pretrained=none")
    found, looked = cached_weights(cfg)
    if found:
        return None
    return (f"stage '{stage}': CLIP weights {model} pretrained={tag} are not on this machine (looked for "
            f"{looked}) and would be downloaded for every scene; download them once into that cache, or "
            f"copy the weights file here and pass {local}")


def cached_weights(cfg: Mapping[str, Any]) -> tuple[str | None, str]:
    """The file open_clip would load for a pretrained config without downloading (None when it
    would download), and where it looked: the Hugging Face hub cache, else ~/.cache/clip."""
    from open_clip import pretrained

    if cfg.get("file"):
        return (cfg["file"] if Path(cfg["file"]).is_file() else None), cfg["file"]
    if cfg.get("hf_hub") and pretrained.has_hf_hub():
        from huggingface_hub import constants, try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(cfg["hf_hub"])
        names = [filename or HF_WEIGHTS_NAME]  # and the .safetensors file open_clip tries first
        if names[0] == HF_WEIGHTS_NAME:
            names.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif names[0].endswith((".bin", ".pth")):
            names.insert(0, names[0][:-4] + ".safetensors")
        for name in names:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str):
                return hit, hit
        return None, f"{' or '.join(names)} of {repo} in the Hugging Face cache {constants.HF_HUB_CACHE}"
    target = Path("~/.cache/clip").expanduser() / os.path.basename(cfg.get("url", ""))
    return (str(target) if target.is_file() else None), str(target)


def raise_first(problems: Mapping[str, str | None]) -> None:
    """Raise the first problem of a check run in several places (worker address -> problem or
    None; "" for this machine), naming the worker."""
    for where, problem in sorted(problems.items()):
        if problem:
            raise PipelineError(f"on worker {where}: {problem}" if where else problem)
