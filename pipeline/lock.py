"""A store-wide lock so two pipeline runs never interleave writes into the same stores.

The lock is the object ``<store_root>/.lock``, created with exclusive-create semantics (fsspec's
``mode="xb"``) on any store root. It is atomic where the filesystem implements exclusive create:
local folders (``O_EXCL``), ``memory://``, and object stores whose fsspec package does it with a
conditional write (s3fs 2025.7 or later, whose earlier releases overwrite small files; recent
gcsfs and adlfs); elsewhere it is a check-then-write, and two runs started at the same instant
could both pass. A lock left by a dead process on this host is taken over; one left by a run
killed on another machine must be deleted by hand.
"""
from __future__ import annotations

import json
import os
import posixpath
import socket
from pathlib import Path

from pipeline import store
from pipeline.errors import PipelineError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreLock:
    """Exclusive lock file ``<store_root>/.lock``; a lock left by a dead process on this host is taken over."""

    def __init__(self, store_root: str | Path):
        self.fs, root = store.filesystem(store_root)
        self._root = root
        self._path = posixpath.join(root, ".lock")
        self.path = store.path_in(store_root, ".lock")

    def __enter__(self) -> StoreLock:
        self.fs.makedirs(self._root, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            if self._create(json.dumps(me).encode()):
                return self
            try:
                owner = json.loads(self.fs.cat_file(self._path) or b"{}")
            except (OSError, ValueError):
                owner = {}
            if owner.get("host") == me["host"] and not _alive(int(owner.get("pid", -1))):
                self._remove()
                continue
            raise PipelineError(
                f"store {posixpath.dirname(self.path)} is in use by another run "
                f"(pid {owner.get('pid')} on {owner.get('host')}); wait for it to finish, "
                f"or delete {self.path} if that run is gone"
            )
        raise PipelineError(f"could not take the lock {self.path}")

    def _create(self, data: bytes) -> bool:
        """Create the lock object with ``data``; False when it already exists."""
        if self.fs.exists(self._path):  # the only check where exclusive create is not atomic
            return False
        try:
            with self.fs.open(self._path, "xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        return True

    def _remove(self) -> None:
        """Delete the lock object (gone already is fine)."""
        try:
            self.fs.rm_file(self._path)
        except FileNotFoundError:
            pass

    def __exit__(self, *exc: object) -> None:
        self._remove()
