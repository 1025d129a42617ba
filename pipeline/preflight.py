"""Pre-flight: refuse a run that cannot work, at the start, before any task is sent.

Without these checks a missing prerequisite surfaces per scene: a CLIP stage without its weights
retries the download in every task (about 46 s per scene without network, some 19 hours on
ScanNet), and a store root that is a file ends in a traceback. The pre-flight reports every
problem it finds, one line each, the most basic first: the store root, the data root and the run's
scenes, the class lists, then the CLIP weights of each stage the plan computes (so a typo in the
data root is not hidden behind a 600 MB download). Param values are checked where a run's params
are resolved (their declared types and ranges, `pipeline.stages.Param.check`). Nothing here
downloads: CLIP weights are looked up where open_clip would read them from.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline import store
from pipeline.classes import read_class_names
from pipeline.errors import PipelineError
from pipeline.plan import Plan, RunConfig, StagePlan
from pipeline.stages import Stage

# A stage loads CLIP (pipeline.clip.model.load_clip) when it declares these params.
CLIP_PARAMS = frozenset({"model_name", "pretrained", "checkpoint", "model_config"})
WeightsCheck = Callable[[StagePlan], Mapping[str, str | None]]  # worker address ("" here) -> problem


class PreflightError(PipelineError):
    """Every problem the pre-flight found, most basic first, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def check(cfg: RunConfig, plan: Plan, weights: WeightsCheck) -> None:
    """Raise a PreflightError listing ``problems(...)`` when there are any."""
    found = problems(cfg, plan, weights)
    if found:
        raise PreflightError(found)


def problems(cfg: RunConfig, plan: Plan, weights: WeightsCheck) -> list[str]:
    """Why the planned run cannot work, most basic first: the store root, the run's scenes (data
    root), each stage's class list, the CLIP weights of each stage that computes something
    (``weights(stage_plan)``: the problem where its tasks run)."""
    found = [store_root_problem(cfg.store_root), plan.scene_problem]
    found += [class_list_problem(p.stage.name, p.params) for p in plan.stages]
    found += [first_problem(weights(p)) for p in plan.stages if uses_clip(p.stage) and p.computes]
    return [line for line in found if line]


def store_root_problem(store_root: str) -> str | None:
    """Why a store root cannot take the stores (a local one must be a writable folder or creatable
    as one; a URL needs its fsspec backend); None when it can."""
    local = store.local_root(store_root)
    if local is None:
        try:
            store.filesystem(store_root)
        except PipelineError as exc:  # an unknown protocol or a missing s3fs/gcsfs
            return str(exc)
        return None
    local = local.absolute()
    existing = next(p for p in (local, *local.parents) if p.exists())
    if not existing.is_dir():
        what = "is a file" if existing == local else f"cannot be created: {existing} is a file"
        return f"store root {local} {what}; --store-root takes a folder (created when missing) or an fsspec URL"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        what = "is not writable" if existing == local else f"cannot be created in {existing}"
        return (f"store root {local} {what} ({exc.strerror or type(exc).__name__}); "
                "choose a folder this user can write to")
    return None


def class_list_problem(stage: str, params: Mapping[str, Any]) -> str | None:
    """Why a stage's class list (its ``classes`` param) cannot be used: missing, invalid or too
    long for the u8 labels of the pseudo and refine stages; None when it can (or it has none)."""
    if "classes" not in params:
        return None
    try:
        read_class_names(params["classes"])
    except PipelineError as exc:
        return f"stage '{stage}': {exc}"
    return None


def uses_clip(stage: Stage) -> bool:
    """Whether a stage loads a CLIP model from its params (its declared params include CLIP_PARAMS)."""
    return CLIP_PARAMS <= set(stage.params)


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


def first_problem(problems: Mapping[str, str | None]) -> str | None:
    """The first problem of a check run in several places (worker address -> problem or None; ""
    for this machine), naming the worker; None when there is none."""
    for where, problem in sorted(problems.items()):
        if problem:
            return f"on worker {where}: {problem}" if where else problem
    return None
