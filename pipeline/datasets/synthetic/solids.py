"""Coarse triangle meshes of the street's parts, for ray casting LiDAR sweeps and camera images.

Boxes are 10 or 12 triangles (the bottom face only when the part floats above its item's
ground), vertical cylinders and cones are ``SIDES``-gons with caps, quads are two triangles.
Boxes and quads longer than ``TILE`` are cut into tiles first: huge triangles (the ground plane
spans hundreds of metres) would make every bounding volume of the BVH that holds them huge too.
Every triangle remembers its item, so a ray hit gives the category, the instance and the colour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.datasets.synthetic import render
from pipeline.datasets.synthetic.street import Item, Part, Street

SIDES = 12
TILE = 16.0  # metres

# Box corners (0..7: bit 0 = x high, bit 1 = y high, bit 2 = z high) and outward-wound faces.
_BOX_FACES = np.array([
    [4, 5, 7], [4, 7, 6],  # top
    [0, 1, 5], [0, 5, 4],  # y low
    [2, 6, 7], [2, 7, 3],  # y high
    [0, 4, 6], [0, 6, 2],  # x low
    [1, 3, 7], [1, 7, 5],  # x high
    [0, 2, 3], [0, 3, 1],  # bottom
], np.int32)


@dataclass
class StreetMesh:
    """The street as one triangle soup with the item of every face, ready for ray casting."""

    vertices: np.ndarray  # f64[V, 3] street frame
    faces: np.ndarray  # i32[F, 3]
    face_item: np.ndarray  # i32[F] index into Street.items
    colors: np.ndarray  # f64[V, 3]
    render: render.RenderMesh  # BVH of the mesh in the frame it was prepared in


def part_mesh(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of one part in its item's frame."""
    (x0, y0, z0), (x1, y1, z1) = part.lo, part.hi
    if part.shape == "quad":
        v = np.array([[x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], float)
        return v, np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    if part.shape == "box":
        bits = np.arange(8)
        v = np.stack([np.where(bits & 1, x1, x0), np.where(bits & 2, y1, y0), np.where(bits & 4, z1, z0)], axis=1)
        return v.astype(float), _BOX_FACES if z0 > 1e-3 else _BOX_FACES[:10]
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    ang = 2 * math.pi * np.arange(SIDES) / SIDES
    ring = np.stack([cx + rx * np.cos(ang), cy + ry * np.sin(ang)], axis=1)
    bottom = np.column_stack([ring, np.full(SIDES, z0)])
    i = np.arange(SIDES)
    j = (i + 1) % SIDES
    if part.shape == "cone":
        v = np.vstack([bottom, [[cx, cy, z1], [cx, cy, z0]]])
        apex, base = SIDES, SIDES + 1
        faces = np.vstack([np.stack([i, j, np.full(SIDES, apex)], 1), np.stack([j, i, np.full(SIDES, base)], 1)])
        return v, faces.astype(np.int32)
    if part.shape == "cylinder":
        top = np.column_stack([ring, np.full(SIDES, z1)])
        v = np.vstack([bottom, top, [[cx, cy, z1], [cx, cy, z0]]])
        tc, bc = 2 * SIDES, 2 * SIDES + 1
        faces = np.vstack([np.stack([i, j, j + SIDES], 1), np.stack([i, j + SIDES, i + SIDES], 1),
                           np.stack([i + SIDES, j + SIDES, np.full(SIDES, tc)], 1),
                           np.stack([j, i, np.full(SIDES, bc)], 1)])
        return v, faces.astype(np.int32)
    raise ValueError(f"unknown part shape {part.shape!r}")


def tiles(part: Part) -> list[Part]:
    """A box or quad cut along x and y into pieces no longer than TILE (others unchanged)."""
    if part.shape not in ("box", "quad"):
        return [part]
    edges = [np.linspace(part.lo[a], part.hi[a], max(1, math.ceil((part.hi[a] - part.lo[a]) / TILE)) + 1)
             for a in (0, 1)]
    return [Part(part.shape, (x0, y0, part.lo[2]), (x1, y1, part.hi[2]), part.shade)
            for x0, x1 in zip(edges[0][:-1], edges[0][1:], strict=True)
            for y0, y1 in zip(edges[1][:-1], edges[1][1:], strict=True)]


def item_mesh(item: Item) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Street-frame vertices, triangles and per-vertex colours of one item."""
    parts = [t for p in item.parts for t in tiles(p)]
    meshes = [part_mesh(p) for p in parts]
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes])
    vertices = np.vstack([v for v, _ in meshes])
    faces = np.vstack([f + o for (_, f), o in zip(meshes, offsets[:-1], strict=True)])
    shade = np.concatenate([np.full(len(v), p.shade) for (v, _), p in zip(meshes, parts, strict=True)])
    x, y, z, yaw = item.pose
    c, s = math.cos(yaw), math.sin(yaw)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    colors = np.clip(np.outer(shade, item.color), 0, 255)
    return vertices @ rotation.T + (x, y, z), faces.astype(np.int32), colors


def street_mesh(street: Street, to_frame: np.ndarray) -> StreetMesh:
    """Mesh every item and build the BVH in the frame given by the 4x4 ``to_frame`` (street -> it)."""
    parts = [item_mesh(item) for item in street.items]
    offsets = np.cumsum([0] + [len(v) for v, _, _ in parts])
    vertices = np.vstack([v for v, _, _ in parts])
    vertices = vertices @ to_frame[:3, :3].T + to_frame[:3, 3]
    faces = np.vstack([f + o for (_, f, _), o in zip(parts, offsets[:-1], strict=True)]).astype(np.int32)
    face_item = np.concatenate([np.full(len(f), k, np.int32) for k, (_, f, _) in enumerate(parts)])
    colors = np.vstack([c for _, _, c in parts])
    return StreetMesh(vertices, faces, face_item, colors, render.prepare(vertices, faces, colors))
