"""Triangle meshes of the room grammar's shapes: regular grids at a target vertex spacing.

Every surface is a grid ``P[i, j]`` of points meshed into two triangles per cell, wound so that
the face normal is ``dP/di x dP/dj``: builders order their axes so this points out of the solid
(into the room for the floor and walls). Grid coordinates are ``lo*(1-t) + hi*t``, which hits the
end points exactly, so faces of one solid share bit-identical edge vertices and welding makes
every object a connected mesh.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.datasets.synthetic.rooms import (
    FLOOR,
    WALL,
    Box,
    Cylinder,
    Instance,
    Room,
    Shape,
    Sheet,
)


@dataclass
class RoomMesh:
    """A welded room mesh with, per vertex and per face, its NYU40 label, and per vertex its material."""

    vertices: np.ndarray  # f64[N, 3], room frame
    faces: np.ndarray  # i32[F, 3]
    labels: np.ndarray  # u16[N]
    face_labels: np.ndarray  # u16[F]
    materials: np.ndarray  # i32[N], index into ``styles``
    styles: list[tuple[str, int]]  # (style name, instance index; -1 for the shell)


def lerp(lo: float, hi: float, n: int) -> np.ndarray:
    """n+1 values from lo to hi, both end points exact."""
    t = np.arange(n + 1) / n
    return lo * (1.0 - t) + hi * t


def axis_coords(breaks: list[float], spacing: float) -> np.ndarray:
    """Sorted coordinates through every break with gaps of at most ``spacing``."""
    b = sorted(set(breaks))
    segs = [lerp(a, c, max(1, math.ceil((c - a) / spacing - 1e-9))) for a, c in zip(b[:-1], b[1:], strict=True)]
    return np.concatenate([segs[0]] + [s[1:] for s in segs[1:]])


def grid_mesh(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of a point grid P[i, j, 3]; normals along dP/di x dP/dj."""
    ni, nj = points.shape[:2]
    idx = np.arange(ni * nj).reshape(ni, nj)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return points.reshape(-1, 3), faces.astype(np.int32)


def _plane(fixed: tuple[int, float], u: tuple[int, np.ndarray], v: tuple[int, np.ndarray]) -> np.ndarray:
    """Grid on an axis-aligned plane: axis ``fixed[0]`` = fixed[1], axes u and v spanned by coords."""
    (ua, uc), (va, vc) = u, v
    p = np.empty((len(uc), len(vc), 3))
    p[..., fixed[0]] = fixed[1]
    p[..., ua] = uc[:, None]
    p[..., va] = vc[None, :]
    return p


def box_mesh(box: Box, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Box faces with outward normals (bottom face only when ``box.bottom``)."""
    (x0, y0, z0), (x1, y1, z1) = box.lo, box.hi
    xs, ys, zs = (axis_coords([a, b], spacing) for a, b in ((x0, x1), (y0, y1), (z0, z1)))
    grids = [_plane((2, z1), (0, xs), (1, ys)),  # top: x cross y = +z
             _plane((1, y0), (0, xs), (2, zs)),  # front: x cross z = -y
             _plane((1, y1), (2, zs), (0, xs)),  # back: z cross x = +y
             _plane((0, x0), (2, zs), (1, ys)),  # left: z cross y = -x
             _plane((0, x1), (1, ys), (2, zs))]  # right: y cross z = +x
    if box.bottom:
        grids.append(_plane((2, z0), (1, ys), (0, xs)))  # y cross x = -z
    return merge([grid_mesh(g) for g in grids])


def cylinder_mesh(cyl: Cylinder, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Elliptic cylinder: side, top cap, optional bottom cap; outward normals."""
    (cx, cy), (rx, ry) = cyl.center, cyl.radii
    n_ang = max(16, math.ceil(2 * math.pi * max(rx, ry) / spacing))
    ang = 2 * math.pi * np.arange(n_ang) / n_ang
    ang = np.concatenate([ang, ang[:1]])  # closing column, welded away
    ca, sa = np.cos(ang), np.sin(ang)
    zs = axis_coords([cyl.z0, cyl.z1], spacing)
    rings = lerp(0.0, 1.0, max(1, math.ceil(max(rx, ry) / spacing)))

    def ring_grid(radial: np.ndarray, z: float) -> np.ndarray:
        p = np.empty((len(radial), len(ang), 3))
        p[..., 0] = cx + rx * radial[:, None] * ca[None, :]
        p[..., 1] = cy + ry * radial[:, None] * sa[None, :]
        p[..., 2] = z
        return p

    side = np.empty((len(ang), len(zs), 3))
    side[..., 0] = (cx + rx * ca)[:, None]
    side[..., 1] = (cy + ry * sa)[:, None]
    side[..., 2] = zs[None, :]
    parts = [grid_mesh(side), grid_mesh(ring_grid(rings, cyl.z1))]  # tangent x z = out; radial x tangent = +z
    if cyl.bottom:
        parts.append(grid_mesh(ring_grid(rings, cyl.z0).transpose(1, 0, 2)))  # tangent x radial = -z
    return merge(parts)


def sheet_mesh(sheet: Sheet, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Wavy hanging sheet; its front (-y side) normal faces away from the wall behind it."""
    cx, cy = sheet.center
    xs = axis_coords([-sheet.width / 2, sheet.width / 2], spacing / 2)
    zs = axis_coords([sheet.z0, sheet.z1], spacing)
    p = np.empty((len(xs), len(zs), 3))
    p[..., 0] = (cx + xs)[:, None]
    p[..., 1] = (cy + sheet.amplitude * np.sin(2 * math.pi * xs / sheet.period + sheet.phase))[:, None]
    p[..., 2] = zs[None, :]
    return grid_mesh(p)  # x cross z = -y


def shape_mesh(shape: Shape, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of one shape in its object's frame."""
    if isinstance(shape, Box):
        return box_mesh(shape, spacing)
    if isinstance(shape, Cylinder):
        return cylinder_mesh(shape, spacing)
    return sheet_mesh(shape, spacing)


def merge(meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate meshes, offsetting face indices."""
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes])
    return (np.concatenate([v for v, _ in meshes]),
            np.concatenate([f + o for (_, f), o in zip(meshes, offsets[:-1], strict=True)]).astype(np.int32))


def weld(vertices: np.ndarray, faces: np.ndarray, tol: float = 1e-6
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge coincident vertices (first occurrence order kept) and drop collapsed triangles.

    Returns (vertices, faces, kept, face_ok) where ``kept`` indexes the input vertices that
    survive and ``face_ok`` marks the input faces that survive.
    """
    keys = np.round(vertices / tol).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    new_faces = rank[inverse.reshape(-1)][faces]
    ok = (new_faces[:, 0] != new_faces[:, 1]) & (new_faces[:, 1] != new_faces[:, 2]) & (new_faces[:, 0] != new_faces[:, 2])
    kept = first[order]
    return vertices[kept], new_faces[ok].astype(np.int32), kept, ok


def shell_mesh(room: Room, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floor and four inward-facing walls with a hole at every opening (its door or window is an
    object of its own, set into the hole), gridded through the openings' edges.

    Returns (vertices, faces, face labels) with labels WALL / FLOOR.
    """
    lx, ly = room.size
    ops = room.openings
    xs = axis_coords([0.0, lx] + [e for o in ops if o.wall in (0, 2) for e in (o.s0, o.s1)], spacing)
    ys = axis_coords([0.0, ly] + [e for o in ops if o.wall in (1, 3) for e in (o.s0, o.s1)], spacing)
    zs = axis_coords([0.0, room.height] + [e for o in ops for e in (o.z0, o.z1)], spacing)
    grids = [_plane((2, 0.0), (0, xs), (1, ys)),  # floor: +z
             _plane((1, 0.0), (2, zs), (0, xs)),  # wall 0 (y = 0): z cross x = +y
             _plane((0, lx), (2, zs), (1, ys)),  # wall 1 (x = lx): z cross y = -x
             _plane((1, ly), (0, xs), (2, zs)),  # wall 2 (y = ly): x cross z = -y
             _plane((0, 0.0), (1, ys), (2, zs))]  # wall 3 (x = 0): y cross z = +x
    vertices, faces, _, _ = weld(*merge([grid_mesh(g) for g in grids]))
    centre = vertices[faces].mean(axis=1)
    hole = np.zeros(len(faces), bool)
    for op in ops:
        axis, fixed_axis = (0, 1) if op.wall in (0, 2) else (1, 0)
        plane = {0: 0.0, 1: lx, 2: ly, 3: 0.0}[op.wall]
        hole |= ((np.abs(centre[:, fixed_axis] - plane) < 1e-9) & (centre[:, axis] > op.s0) & (centre[:, axis] < op.s1)
                 & (centre[:, 2] > op.z0) & (centre[:, 2] < op.z1))
    faces = faces[~hole]
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    vertices, faces = vertices[used], remap[faces].astype(np.int32)
    is_floor = np.all(vertices[faces][:, :, 2] <= 1e-9, axis=1)
    return vertices, faces, np.where(is_floor, FLOOR, WALL).astype(np.uint16)


def instance_mesh(inst: Instance, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Welded mesh of an object, moved to its room pose; also the part index of each vertex and face."""
    meshes = [shape_mesh(p.shape, spacing) for p in inst.parts]
    part = np.concatenate([np.full(len(v), k, np.int32) for k, (v, _) in enumerate(meshes)])
    face_part = np.concatenate([np.full(len(f), k, np.int32) for k, (_, f) in enumerate(meshes)])
    vertices, faces, kept, face_ok = weld(*merge(meshes))
    c, s = math.cos(inst.yaw), math.sin(inst.yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return vertices @ rot.T + (inst.x, inst.y, 0.0), faces, part[kept], face_part[face_ok]


def build_room_mesh(room: Room, spacing: float) -> RoomMesh:
    """Mesh the whole room: shell then every instance, with labels and materials per vertex."""
    styles: list[tuple[str, int]] = [("wall", -1), (room.floor_style, -1)]
    v, f, face_lab = shell_mesh(room, spacing)
    lab = np.full(len(v), WALL, np.uint16)
    lab[np.unique(f[face_lab == FLOOR])] = FLOOR
    verts, faces, labels, face_labels = [v], [f], [lab], [face_lab]
    mats = [np.where(lab == FLOOR, 1, 0).astype(np.int32)]
    offset = len(v)
    for k, inst in enumerate(room.instances):
        v, f, part, face_part = instance_mesh(inst, spacing)
        keys = {}
        for p in inst.parts:
            keys.setdefault(p.style, len(styles) + len(keys))
        styles += [(name, k) for name in keys]
        part_labels = np.array([p.label for p in inst.parts], np.uint16)
        verts.append(v)
        faces.append(f + offset)
        labels.append(part_labels[part])
        face_labels.append(part_labels[face_part])
        mats.append(np.array([keys[p.style] for p in inst.parts], np.int32)[part])
        offset += len(v)
    return RoomMesh(np.concatenate(verts), np.concatenate(faces).astype(np.int32),
                    np.concatenate(labels), np.concatenate(face_labels), np.concatenate(mats), styles)
