"""The one import point of MinkowskiEngine: 0.5.4 still imports ABCs from `collections`."""
from __future__ import annotations

import collections
import collections.abc
import warnings

for _name in ("Sequence", "Mapping", "MutableMapping", "Iterable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

with warnings.catch_warnings():  # CPU-only builds warn on every import; that is expected here
    warnings.filterwarnings("ignore", message=".*compiled with CPU_ONLY.*")
    import MinkowskiEngine as ME  # noqa: E402

__all__ = ["ME"]
