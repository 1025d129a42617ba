"""Sorting kernels (Numba): a stable LSD radix argsort of unsigned integer keys."""
from __future__ import annotations

import numba
import numpy as np

_DIGIT_BITS = 11


@numba.njit(cache=True)
def radix_argsort(keys: np.ndarray, key_bits: int) -> np.ndarray:
    """Stable argsort of unsigned integer keys below 2**key_bits (LSD radix, 11-bit digits)."""
    n = keys.shape[0]
    perm = np.arange(n, dtype=np.int64)
    cur = keys.copy()
    nxt_perm = np.empty(n, dtype=np.int64)
    nxt = np.empty(n, dtype=np.uint64)
    radix = 1 << _DIGIT_BITS
    mask = np.uint64(radix - 1)
    counts = np.empty(radix, dtype=np.int64)
    for shift in range(0, key_bits, _DIGIT_BITS):
        s = np.uint64(shift)
        counts[:] = 0
        for i in range(n):
            counts[(cur[i] >> s) & mask] += 1
        if n == 0 or counts[(cur[0] >> s) & mask] == n:
            continue  # every key has this digit: the pass would not move anything
        total = 0
        for d in range(radix):
            c = counts[d]
            counts[d] = total
            total += c
        for i in range(n):
            d = (cur[i] >> s) & mask
            k = counts[d]
            counts[d] = k + 1
            nxt[k] = cur[i]
            nxt_perm[k] = perm[i]
        cur, nxt = nxt, cur
        perm, nxt_perm = nxt_perm, perm
    return perm
