"""A store-wide lock so two pipeline runs never interleave writes into the same stores."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

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
        self.path = Path(store_root) / ".lock"

    def __enter__(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    owner = {}
                if owner.get("host") == me["host"] and not _alive(int(owner.get("pid", -1))):
                    self.path.unlink(missing_ok=True)
                    continue
                raise PipelineError(
                    f"store {self.path.parent} is in use by another run "
                    f"(pid {owner.get('pid')} on {owner.get('host')}); wait for it to finish, "
                    f"or delete {self.path} if that run is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise PipelineError(f"could not take the lock {self.path}")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
