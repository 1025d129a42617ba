"""Vertex colours: a base colour per style, a tint per instance and a procedural pattern.

Colour carries class signal without being a label: every style has a few base colours, each
instance draws one and tints it, patterns (wood grain, fabric noise, stripes, tiles, multicolour
fields) vary it over the surface, and several classes share materials (wood furniture, white
porcelain) so colour alone cannot separate them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Style:
    """Candidate base colours and the name of the pattern applied over them."""

    bases: tuple[RGB, ...]
    pattern: str


WOOD = ((150, 108, 68), (178, 140, 98), (105, 75, 48), (222, 218, 210))
STYLES: dict[str, Style] = {
    "wall": Style(((205, 200, 188), (188, 198, 204), (214, 204, 182), (182, 192, 176), (228, 226, 220)), "plain"),
    "floor_wood": Style(((152, 112, 72), (120, 86, 56), (178, 140, 100)), "wood"),
    "floor_tile": Style(((182, 182, 176), (150, 140, 128), (205, 200, 190)), "tile"),
    "floor_carpet": Style(((110, 100, 95), (92, 100, 118), (140, 128, 110)), "carpet"),
    "door": Style(((160, 112, 70), (205, 200, 190), (118, 80, 50)), "wood"),
    "door_frame": Style(((235, 232, 225), (150, 110, 72)), "plain"),
    "window": Style(((180, 208, 232), (198, 220, 236), (160, 190, 210)), "sky"),
    "window_frame": Style(((240, 240, 238), (92, 92, 95)), "plain"),
    "cabinet": Style(WOOD, "wood"),
    "table": Style(WOOD, "wood"),
    "desk": Style(WOOD, "wood"),
    "bookshelf": Style(WOOD[:3] + ((60, 58, 56),), "wood"),
    "bedframe": Style(((110, 80, 55), (62, 48, 38), (215, 212, 205)), "wood"),
    "bed": Style(((222, 222, 230), (176, 194, 216), (230, 214, 188), (190, 160, 170)), "fabric"),
    "pillow": Style(((240, 240, 234), (202, 184, 204), (180, 200, 190)), "fabric"),
    "chair": Style(((62, 62, 68), (140, 100, 66), (150, 44, 42), (52, 82, 130)), "fabric"),
    "chair_legs": Style(((40, 40, 42), (140, 100, 66), (170, 170, 175)), "plain"),
    "sofa": Style(((112, 112, 122), (122, 82, 62), (72, 92, 72), (162, 150, 130)), "fabric"),
    "otherfurniture": Style(((132, 112, 92), (92, 112, 132), (162, 140, 112)), "fabric"),
    "counter": Style(((192, 186, 176), (62, 62, 64), (222, 216, 206)), "speckle"),
    "refrigerator": Style(((226, 226, 228), (190, 192, 196), (60, 62, 66)), "plain"),
    "porcelain": Style(((242, 242, 240), (232, 236, 240)), "plain"),
    "steel": Style(((172, 174, 178),), "plain"),
    "metal": Style(((172, 172, 176), (40, 40, 42)), "plain"),
    "handle": Style(((182, 182, 186), (40, 40, 42)), "plain"),
    "curtain": Style(((170, 62, 60), (72, 92, 142), (202, 190, 160), (92, 122, 82)), "stripes"),
    "shower_curtain": Style(((200, 220, 230), (236, 236, 236), (220, 200, 220)), "stripes"),
    "picture": Style(((180, 160, 140), (120, 150, 180)), "multicolor"),
    "picture_frame": Style(((40, 36, 32), (200, 170, 100)), "plain"),
    "book": Style(((170, 120, 110), (110, 130, 160)), "multicolor"),
    "screen": Style(((28, 28, 32),), "plain"),
    "prop": Style(((200, 180, 120), (120, 160, 150), (190, 120, 130)), "multicolor"),
    "clutter": Style(((150, 130, 100), (90, 90, 100), (170, 150, 120)), "multicolor"),
}


def _hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) from integer lattice coordinates (splitmix64 finaliser)."""
    h = (ix.astype(np.uint64) * np.uint64(0x9E3779B185EBCA87)) ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= (iz.astype(np.uint64) * np.uint64(0x165667B19E3779F9)) ^ np.uint64(seed)
    for shift, mult in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53)):
        h ^= h >> np.uint64(shift)
        h *= np.uint64(mult)
    h ^= h >> np.uint64(33)
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def value_noise(points: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth 3D value noise in [0, 1) with features of size ``scale`` metres."""
    q = points / scale
    i = np.floor(q).astype(np.int64)
    f = q - i
    f = f * f * (3.0 - 2.0 * f)
    out = np.zeros(len(points))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                out += w * _hash01(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def pattern(name: str, p: np.ndarray, seed: int) -> np.ndarray:
    """Per-vertex colour factor f64[N, 3] of a pattern at room-frame points p."""
    def n(scale: float, k: int = 0) -> np.ndarray:
        return value_noise(p, scale, seed + 7919 * k) - 0.5

    along = p[:, 0] + p[:, 1]  # horizontal abscissa for furniture at near-axis yaws
    if name == "wood":
        f = 1 + 0.08 * np.sin(2 * np.pi * along / 0.05 + 6 * n(0.4)) + 0.12 * n(0.5, 1)
    elif name == "fabric":
        f = 1 + 0.16 * n(0.03) + 0.12 * n(0.35, 1)
    elif name == "carpet":
        f = 1 + 0.3 * n(0.025) + 0.1 * n(0.6, 1)
    elif name == "tile":
        checker = (np.floor(p[:, 0] / 0.3) + np.floor(p[:, 1] / 0.3)) % 2
        f = 1 + 0.08 * (checker - 0.5) + 0.1 * n(0.05)
    elif name == "speckle":
        f = 1 + 0.3 * n(0.015) + 0.06 * n(0.4, 1)
    elif name == "stripes":
        f = 1 + 0.16 * np.sign(np.sin(2 * np.pi * along / 0.16)) + 0.1 * n(0.05)
    elif name == "sky":
        f = 1 + 0.25 * n(0.4) - 0.15 * np.clip(1.6 - p[:, 2], 0, 1)
    elif name == "multicolor":
        return np.stack([0.45 + 1.1 * (n(0.12, k) + 0.5) for k in range(3)], axis=1)
    else:  # plain
        f = 1 + 0.1 * n(0.6) + 0.06 * n(0.07, 1)
    return np.repeat(f[:, None], 3, axis=1)


def vertex_colors(vertices: np.ndarray, materials: np.ndarray, styles: list[tuple[str, int]],
                  rng: np.random.Generator) -> np.ndarray:
    """u8[N, 3] colours: per material a tinted base colour times its style's pattern."""
    colors = np.zeros((len(vertices), 3))
    for m, (name, _) in enumerate(styles):
        style = STYLES[name]
        base = np.array(style.bases[int(rng.integers(len(style.bases)))], float)
        base *= np.exp(rng.normal(0.0, 0.06, 3) + rng.normal(0.0, 0.08))
        seed = int(rng.integers(2**31))
        sel = materials == m
        if sel.any():
            colors[sel] = base * pattern(style.pattern, vertices[sel], seed)
    return np.clip(np.round(colors), 0, 255).astype(np.uint8)
