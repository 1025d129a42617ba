"""The one import point of MinkowskiEngine: 0.5.4 still imports ABCs from `collections`, and its
CPU build's BLAS (OpenBLAS) must be told the CPU's vector width where it cannot tell it itself.

OpenBLAS 0.3.21 does not know recent Xeons and falls back to its SSE3 ("Prescott") kernels there,
on which MinkowskiEngine's CPU convolutions run 2-3x slower (benchmarks/bench_trainer.py);
OPENBLAS_CORETYPE, read once when the library loads, names the kernels to use instead. It is set
only while MinkowskiEngine loads its BLAS, after numpy and torch have loaded theirs, and then
restored, so that no other library and no child process sees it. A value already set is kept.
"""
from __future__ import annotations

import collections
import collections.abc
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy  # noqa: F401  (loaded first: its own BLAS keeps the machine's default kernels)
import torch  # noqa: F401  (the same for the libraries torch loads)

for _name in ("Sequence", "Mapping", "MutableMapping", "Iterable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))


def openblas_coretype(flags: set[str]) -> str | None:
    """OpenBLAS kernels for CPU feature flags: SkylakeX (AVX-512), Haswell (AVX2 + FMA), else None."""
    if "avx512f" in flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU listed (empty where there is no /proc/cpuinfo)."""
    if not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@contextmanager
def openblas_kernels(core: str | None) -> Iterator[None]:
    """OPENBLAS_CORETYPE=`core` inside the block (unless already set or None), as before after it."""
    if core is None or "OPENBLAS_CORETYPE" in os.environ:
        yield
        return
    os.environ["OPENBLAS_CORETYPE"] = core
    try:
        yield
    finally:
        del os.environ["OPENBLAS_CORETYPE"]


with openblas_kernels(openblas_coretype(cpu_flags())), warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*compiled with CPU_ONLY.*")  # expected of CPU-only builds
    import MinkowskiEngine as ME  # noqa: E402

__all__ = ["ME"]
