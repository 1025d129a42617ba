"""The `pseudo` stage: each pair's pixel label l_ij = argmax_c <f_ij, T_c> (paper Eq. 1).

Features live at patch resolution; the pixel feature is their bilinear upsampling (PyTorch's
align_corners=False convention) or the nearest patch. Interpolation is linear, so the pixel's
class scores are interpolated from per-patch scores <f_patch, T_c>: the same numbers as dotting
the interpolated (not re-normalised) feature, as MaskCLIP upsamples its logits, at a fraction
of the cost and without materialising full-resolution features.

Optional prompt denoising (MaskCLIP's second refinement, Zhou et al. ECCV 2022, Sec. 3.3): per
frame, a class whose confidence softmax_c(t <f_patch, T>) stays below a threshold on every patch
of the frame is dropped from that frame's candidates before the per-pair argmax.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np

from pipeline.errors import SceneError
from pipeline.labels.pairs import image_size

SAMPLINGS = ("bilinear", "nearest")


@numba.njit(cache=True)
def _source_index(dst: int, scale: float, size: int, bilinear: bool):
    """Lower patch index, upper patch index and upper weight for an image row or column."""
    if not bilinear:
        i = min(int(math.floor((dst + 0.5) * scale)), size - 1)
        return i, i, 0.0
    src = max((dst + 0.5) * scale - 0.5, 0.0)
    lo = min(int(src), size - 1)
    hi = lo + 1 if lo < size - 1 else lo
    return lo, hi, src - lo


@numba.njit(cache=True)
def label_pairs_kernel(scores, candidates, frame_of_pair, pixels, height, width, bilinear,
                       temperature):
    """Pixel label (Eq. 1, first max wins) and max-softmax confidence per pair.

    scores f32[K,h,w,C] are per-patch class scores; candidates bool[K,C] the classes each frame
    may take (at least one per frame; the softmax runs over them); frame_of_pair i64[P] indexes K.
    """
    num_pairs = pixels.shape[0]
    h, w, c = scores.shape[1], scores.shape[2], scores.shape[3]
    labels = np.empty(num_pairs, np.uint8)
    confidence = np.empty(num_pairs, np.float32)
    sy, sx = h / height, w / width
    pixel_scores = np.empty(c, np.float64)
    for p in range(num_pairs):
        k = frame_of_pair[p]
        y0, y1, wy = _source_index(pixels[p, 0], sy, h, bilinear)
        x0, x1, wx = _source_index(pixels[p, 1], sx, w, bilinear)
        best = -1
        for j in range(c):
            if not candidates[k, j]:
                continue
            top = (1.0 - wx) * scores[k, y0, x0, j] + wx * scores[k, y0, x1, j]
            bottom = (1.0 - wx) * scores[k, y1, x0, j] + wx * scores[k, y1, x1, j]
            pixel_scores[j] = (1.0 - wy) * top + wy * bottom
            if best < 0 or pixel_scores[j] > pixel_scores[best]:
                best = j
        total = 0.0
        for j in range(c):
            if candidates[k, j]:
                total += math.exp(temperature * (pixel_scores[j] - pixel_scores[best]))
        labels[p] = best
        confidence[p] = 1.0 / total
    return labels, confidence


def patch_scores(features: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Class scores f32[k,h,w,C] = <f_patch, T_c> for a chunk of frames' patch features."""
    return np.einsum("khwd,cd->khwc", features.astype(np.float32), embeddings, optimize=True)


def denoise_candidates(scores: np.ndarray, threshold: float | None,
                       temperature: float = 100.0) -> np.ndarray:
    """MaskCLIP prompt denoising: the candidate classes bool[k,C] of each frame's scores f32[k,h,w,C].

    Class c stays a candidate of frame k when max over the frame's patches of
    softmax_c(temperature * scores[k,y,x]) >= threshold (MaskCLIP: 0.5 at logit scale 100).
    A frame where no class reaches the threshold keeps all its classes (MaskCLIP would leave
    every score at the same floor there, a meaningless argmax). None: every class everywhere.
    """
    keep = np.ones((scores.shape[0], scores.shape[-1]), dtype=bool)
    if threshold is None or scores.shape[1] * scores.shape[2] == 0:
        return keep
    logits = temperature * scores.astype(np.float64)
    prob = np.exp(logits - logits.max(axis=-1, keepdims=True))
    prob /= prob.sum(axis=-1, keepdims=True)
    keep = prob.max(axis=(1, 2)) >= threshold
    keep[~keep.any(axis=1)] = True
    return keep


def pseudo_labels(features: np.ndarray, embeddings: np.ndarray, pixels: np.ndarray,
                  frame_offsets: np.ndarray, image_hw: tuple[int, int], *,
                  sampling: str = "bilinear", temperature: float = 100.0,
                  denoise_threshold: float | None = None,
                  frames_per_chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Label u8[P] and confidence f16[P] of every pair, a chunk of frames at a time.

    `denoise_threshold` (None: off) restricts each frame to `denoise_candidates`; the argmax and
    the confidence softmax then run over the kept classes only.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if denoise_threshold is not None and not 0.0 <= denoise_threshold <= 1.0:
        raise ValueError(f"denoise_threshold must be in [0, 1] or None, got {denoise_threshold}")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    num_frames = frame_offsets.shape[0] - 1
    labels = np.empty(pixels.shape[0], np.uint8)
    confidence = np.empty(pixels.shape[0], np.float16)
    for start in range(0, num_frames, frames_per_chunk):
        stop = min(start + frames_per_chunk, num_frames)
        a, b = int(frame_offsets[start]), int(frame_offsets[stop])
        if a == b:
            continue
        scores = patch_scores(np.asarray(features[start:stop]), embeddings)
        candidates = denoise_candidates(scores, denoise_threshold, temperature)
        frame_of_pair = np.repeat(np.arange(stop - start, dtype=np.int64),
                                  np.diff(frame_offsets[start:stop + 1]))
        chunk_labels, chunk_conf = label_pairs_kernel(
            scores, candidates, frame_of_pair, np.asarray(pixels[a:b]), int(image_hw[0]),
            int(image_hw[1]), sampling == "bilinear", float(temperature))
        labels[a:b] = chunk_labels
        confidence[a:b] = chunk_conf
    return labels, confidence


def pseudo_stage(inputs: Mapping[str, Mapping[str, np.ndarray]],
                 params: Mapping[str, Any]) -> dict[str, Any]:
    """Pseudo-label every pair from patch features and text embeddings (Eq. 1's l_ij)."""
    features = inputs["features"]["features"]
    embeddings = inputs["text"]["embeddings"]
    pairs = inputs["pairs"]
    frame_offsets = np.asarray(pairs["frame_offsets"])
    if embeddings.shape[0] > 256:
        raise SceneError(f"{embeddings.shape[0]} classes do not fit the u8 pseudo labels")
    if features.shape[0] != frame_offsets.shape[0] - 1:
        raise SceneError(f"features have {features.shape[0]} frames but pairs "
                         f"{frame_offsets.shape[0] - 1}")
    if features.shape[-1] != embeddings.shape[1]:
        raise SceneError(f"feature width {features.shape[-1]} differs from text width "
                         f"{embeddings.shape[1]}")
    labels, confidence = pseudo_labels(
        features, embeddings, pairs["pixel"], frame_offsets, image_size(inputs["scenes"]),
        sampling=params["sampling"], temperature=params["temperature"],
        denoise_threshold=params["denoise_threshold"])
    return {"label": labels, "confidence": confidence}
