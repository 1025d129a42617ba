"""Zarr layout of the stage stores: one store per stage, one group per scene, done markers last.

Layout: ``<store_root>/<stage>.zarr/<scene>/<array>``; global stages write the group ``_global``.
The stage root's attributes hold the stage fingerprint and the last run's failures; a scene
group's ``done`` attribute holds the fingerprint it was written under and is set only after every
array of the scene is written, so a killed run never leaves a scene that looks complete.
A store root is a folder, a ``file://`` URL or any fsspec URL: ``memory://`` (one process only),
``s3://`` / ``gs://`` when s3fs / gcsfs are installed, with credentials and endpoints from
fsspec's configuration (``FSSPEC_S3='{"endpoint_url": ...}'``, ``~/.config/fsspec``) or the
provider's usual environment.
"""
from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import zarr
import zarr.storage
from zarr.codecs import ZstdCodec
from zarr.core.sync import collect_aiterator

from pipeline.errors import PipelineError, SceneError
from pipeline.fields import Fields

GLOBAL = "_global"
CHUNK_BYTES = 4 << 20
_COMPRESSORS = (ZstdCodec(level=3),)


def local_root(store_root: str | Path) -> Path | None:
    """The folder of a local store root (a path or a ``file://`` URL); None for other URLs."""
    root = str(store_root)
    if root.startswith("file://"):
        return Path(root[len("file://"):])
    return None if "://" in root else Path(root)


def in_one_process(store_root: str | Path) -> bool:
    """True for a store that lives in one process's memory (``memory://``): no other process sees it."""
    return str(store_root).startswith("memory://")


def filesystem(store_root: str | Path) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a store root and the root's path on it."""
    local = local_root(store_root)
    try:
        return fsspec.core.url_to_fs(str(local.absolute()) if local is not None else str(store_root))
    except (ImportError, ValueError) as exc:  # e.g. "Install s3fs to access S3"
        raise PipelineError(f"store root {store_root}: {exc}") from exc


def path_in(store_root: str | Path, *parts: str) -> str:
    """Path (or fsspec URL) of an entry under a store root, as users name it."""
    local = local_root(store_root)
    if local is None:
        return posixpath.join(str(store_root), *parts)
    return str(local.joinpath(*parts))


def stage_url(store_root: str | Path, stage: str) -> str:
    """Path (or fsspec URL) of one stage's Zarr store."""
    return path_in(store_root, f"{stage}.zarr")


def _store(store_root: str | Path, stage: str, read_only: bool) -> Any:
    url = stage_url(store_root, stage)
    if local_root(store_root) is None:
        try:
            return zarr.storage.FsspecStore.from_url(url, read_only=read_only)
        except (ImportError, ValueError) as exc:
            raise PipelineError(f"store root {store_root}: {exc}") from exc
    return zarr.storage.LocalStore(url, read_only=read_only)


def stage_exists(store_root: str | Path, stage: str) -> bool:
    """True when the stage's store has been created."""
    try:
        zarr.open_group(_store(store_root, stage, True), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return False
    return True


def open_stage(store_root: str | Path, stage: str, mode: str = "r") -> zarr.Group:
    """The root group of a stage's store (``mode='a'`` creates it)."""
    try:
        return zarr.open_group(_store(store_root, stage, mode == "r"), mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise PipelineError(
            f"stage '{stage}' has no store at {stage_url(store_root, stage)}: run the pipeline first"
        ) from exc


def reset_stage(store_root: str | Path, stage: str, attrs: Mapping[str, Any]) -> None:
    """Delete a stage's store and start it anew with ``attrs`` (fingerprint, params...)."""
    root = zarr.open_group(_store(store_root, stage, False), mode="w")
    root.attrs.update(dict(attrs))


def _chunks(arr: np.ndarray) -> tuple[int, ...]:
    """Chunk along the first axis only, about CHUNK_BYTES per chunk (one frame per chunk for images)."""
    if arr.ndim == 0:
        return ()
    row_bytes = max(1, arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64)))
    rows = int(max(1, min(arr.shape[0], CHUNK_BYTES // row_bytes)))
    return (max(rows, 1),) + tuple(max(1, s) for s in arr.shape[1:])


def write_scene(
    store_root: str | Path, stage: str, scene: str, outputs: Mapping[str, Any], fingerprint: str, *,
    declared: Fields | None,
) -> None:
    """Check one scene's outputs against what the stage declares (``declared``; None: a stage that
    declares nothing), then write them: arrays as
    Zarr arrays, other values as attributes, ``done`` last. A mismatch is a SceneError of one line."""
    if declared is not None:
        declared.check(outputs)
    root = open_stage(store_root, stage, mode="a")
    group = root.create_group(scene, overwrite=True)
    attrs: dict[str, Any] = {}
    for name, value in outputs.items():
        if isinstance(value, np.ndarray):
            group.create_array(
                name, data=np.ascontiguousarray(value), chunks=_chunks(value),
                compressors=_COMPRESSORS,
            )
        else:
            attrs[name] = value
    group.attrs.update(attrs)
    group.attrs["done"] = fingerprint


def _done_marker(root: zarr.Group, scene: str) -> str | None:
    """A scene group's ``done`` fingerprint; None when missing, unfinished or unreadable (corrupt metadata)."""
    try:
        return root[scene].attrs.get("done")
    except Exception:  # zarr raises KeyError, JSON and validation errors: none of them proves the scene done
        return None


def scene_done(store_root: str | Path, stage: str, scene: str, fingerprint: str) -> bool:
    """True when ``scene`` was completely written under ``fingerprint`` (a corrupt group is not done)."""
    try:
        root = open_stage(store_root, stage)
    except PipelineError:
        return False
    return _done_marker(root, scene) == fingerprint


def done_scenes(store_root: str | Path, stage: str) -> list[str]:
    """Scenes of a stage whose writing finished (a changed stage fingerprint resets the store)."""
    if not stage_exists(store_root, stage):
        return []
    root = open_stage(store_root, stage)
    try:
        marks = {name: group.attrs.get("done") for name, group in root.groups()}
    except Exception:  # a group's metadata is unreadable: look at each scene on its own
        names = collect_aiterator(root.store.list_dir(root.path))
        marks = {name: _done_marker(root, name) for name in names if name != "zarr.json"}
    return sorted(name for name, done in marks.items() if name != GLOBAL and done)


def open_scene(store_root: str | Path, stage: str, scene: str) -> dict[str, zarr.Array]:
    """Lazy arrays of one finished scene; refuses a half-written or stale one."""
    root = open_stage(store_root, stage)
    if scene not in root:
        raise PipelineError(f"scene {scene}: not in stage '{stage}' at {stage_url(store_root, stage)}")
    group = root[scene]
    if not group.attrs.get("done"):
        raise PipelineError(f"scene {scene}: stage '{stage}' is incomplete for this scene; rerun the pipeline")
    return dict(group.arrays())


def open_global(store_root: str | Path, stage: str) -> dict[str, zarr.Array]:
    """Lazy arrays of a global stage (e.g. the text embeddings)."""
    return open_scene(store_root, stage, GLOBAL)


def stage_attrs(store_root: str | Path, stage: str, scene: str | None = None) -> dict[str, Any]:
    """Attributes of a stage root, or of one scene group when ``scene`` is given."""
    root = open_stage(store_root, stage)
    node = root if scene is None else root[scene]
    return dict(node.attrs)


def read_arrays(store_root: str | Path, stage: str, scene: str,
                names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of one finished scene (all, or ``names``) in memory; an unreadable chunk is a SceneError."""
    handles = open_scene(store_root, stage, scene)
    out = {}
    for name in names if names is not None else list(handles):
        path = posixpath.join(stage_url(store_root, stage), scene, name)
        if name not in handles:
            raise SceneError(f"stage '{stage}' has no array '{name}'", path, scene)
        try:
            out[name] = handles[name][...]
        except Exception as exc:  # codecs raise RuntimeError, ValueError...: a damaged chunk or store
            group = posixpath.join(stage_url(store_root, stage), scene)
            raise SceneError(f"cannot read array '{name}' of stage '{stage}' ({type(exc).__name__}: {exc}); "
                             f"if the store is damaged, delete {group} and rerun to recompute this scene",
                             path, scene) from exc
    return out


def read_scene(store_root: str | Path, stage: str, scene: str) -> dict[str, Any]:
    """One finished scene fully in memory: arrays and attributes in one dict."""
    arrays = read_arrays(store_root, stage, scene)
    attrs = {k: v for k, v in stage_attrs(store_root, stage, scene).items() if k != "done"}
    return {**attrs, **arrays}
