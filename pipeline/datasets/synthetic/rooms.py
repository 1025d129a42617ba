"""Procedural rooms: the scene grammar that the synthetic ScanNet generator meshes and renders.

A room is ``shell + openings + furniture + wall decor``:

* shell: an axis-aligned floor ``[0, Lx] x [0, Ly]`` at z = 0 and four walls of height H
  (wall 0 at y = 0, 1 at x = Lx, 2 at y = Ly, 3 at x = 0); no ceiling, as in most ScanNet scans.
* openings: one door and one window, rectangles on two different walls. The wall has a hole
  there, filled by real geometry: a door leaf (NYU40 8) set back inside jambs and a head that
  stand proud of the wall; a window pane (NYU40 9) recessed inside linings, with a sill.
* furniture: 4-10 objects drawn from the room type's pool (bedroom, living room, office, kitchen,
  bathroom). Each object is a small tree of parts (boxes, elliptic cylinders, wavy sheets) built
  in its own frame (footprint centred at the origin, front facing -y, standing on z = 0), then
  placed by a pose (x, y, yaw): "wall" objects stand with their back against a wall, "free"
  objects stand in the middle, groups (table + chairs, desk + chair) place dependants around a
  parent. Parts may carry another label than the object (pillows 18, books and props 40,
  clutter 0) so the NYU40 -> benchmark mapping has ids to ignore.
* wall decor: framed pictures hung a little off the walls, and curtains, placed after the furniture.

Placement is rejection sampling of 3D axis-aligned boxes: an object is accepted when its box
(grown by a small margin) meets no other object's box, no opening's keep-out zone and stays in
the room. Objects taller than the camera's lowest height only go against walls, and the camera
loop keeps away from walls, so no camera ever sits inside an object.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Vec3 = tuple[float, float, float]

WALL = 1
FLOOR = 2
CABINET = 3
BED = 4
CHAIR = 5
SOFA = 6
TABLE = 7
DOOR = 8
WINDOW = 9
BOOKSHELF = 10
PICTURE = 11
COUNTER = 12
DESK = 14
CURTAIN = 16
PILLOW = 18  # NYU40 id outside the 20 benchmark classes
REFRIGERATOR = 24
SHOWER_CURTAIN = 28
TOILET = 33
SINK = 34
BATHTUB = 36
OTHERFURNITURE = 39
OTHERPROP = 40  # NYU40 id outside the 20 benchmark classes
UNLABELLED = 0

TALL = 1.15  # objects at least this tall must stand against a wall (camera height is >= 1.2 m)
WALL_CLEARANCE = 1.15  # the camera loop keeps at least this far from every wall
MARGIN = 0.06  # gap kept between placed objects


@dataclass(frozen=True)
class Box:
    """Axis-aligned box ``lo..hi``; the bottom face is left out unless asked (it lies on a support)."""

    lo: Vec3
    hi: Vec3
    bottom: bool = False


@dataclass(frozen=True)
class Cylinder:
    """Vertical elliptic cylinder with centre (x, y), radii (rx, ry), from z0 to z1."""

    center: tuple[float, float]
    radii: tuple[float, float]
    z0: float
    z1: float
    bottom: bool = False


@dataclass(frozen=True)
class Sheet:
    """Hanging wavy sheet: x in cx + [-width/2, width/2], y = cy + amplitude*sin(2 pi x/period + phase)."""

    width: float
    z0: float
    z1: float
    amplitude: float
    period: float
    phase: float
    center: tuple[float, float] = (0.0, 0.0)


Shape = Box | Cylinder | Sheet


@dataclass(frozen=True)
class Part:
    """One shape with its NYU40 label and texture style."""

    shape: Shape
    label: int
    style: str


def shape_bounds(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds (lo, hi) of a shape in its object's frame."""
    if isinstance(shape, Box):
        return np.array(shape.lo, float), np.array(shape.hi, float)
    if isinstance(shape, Cylinder):
        (cx, cy), (rx, ry) = shape.center, shape.radii
        return np.array([cx - rx, cy - ry, shape.z0]), np.array([cx + rx, cy + ry, shape.z1])
    (cx, cy), hw, a = shape.center, shape.width / 2, abs(shape.amplitude)
    return np.array([cx - hw, cy - a, shape.z0]), np.array([cx + hw, cy + a, shape.z1])


@dataclass
class Instance:
    """An object: parts in its own frame (front towards -y) and a pose (x, y, yaw) in the room."""

    name: str
    parts: list[Part]
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0

    def local_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of all parts in the object's own frame."""
        bounds = [shape_bounds(p.shape) for p in self.parts]
        return np.min([b[0] for b in bounds], axis=0), np.max([b[1] for b in bounds], axis=0)

    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        """Room-frame axis-aligned bounds (lo, hi) of the object at its pose."""
        lo, hi = self.local_bounds()
        corners = np.array([[x, y] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        xy = corners @ np.array([[c, s], [-s, c]]) + (self.x, self.y)
        return (np.array([*xy.min(axis=0), lo[2]]), np.array([*xy.max(axis=0), hi[2]]))


@dataclass(frozen=True)
class Opening:
    """A door or window: the rectangle s in [s0, s1], z in [z0, z1] on wall ``wall``."""

    wall: int
    s0: float
    s1: float
    z0: float
    z1: float
    label: int
    style: str


@dataclass
class Room:
    """A whole scene: shell size, openings, objects (furniture, trims, decor)."""

    scene_type: str
    size: tuple[float, float]
    height: float
    floor_style: str
    openings: list[Opening]
    instances: list[Instance] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Walls: s runs along x on walls 0 and 2 and along y on walls 1 and 3.

INWARD = {0: (0.0, 1.0), 1: (-1.0, 0.0), 2: (0.0, -1.0), 3: (1.0, 0.0)}
BACK_TO_WALL_YAW = {0: math.pi, 1: -math.pi / 2, 2: 0.0, 3: math.pi / 2}


def wall_length(size: tuple[float, float], wall: int) -> float:
    """Length of a wall along its s axis."""
    return size[0] if wall in (0, 2) else size[1]


def wall_point(size: tuple[float, float], wall: int, s: float, dist: float) -> tuple[float, float]:
    """Room (x, y) at abscissa s along a wall and distance ``dist`` into the room."""
    nx, ny = INWARD[wall]
    if wall in (0, 2):
        base = (s, 0.0 if wall == 0 else size[1])
    else:
        base = (size[0] if wall == 1 else 0.0, s)
    return base[0] + nx * dist, base[1] + ny * dist


def on_wall(inst: Instance, size: tuple[float, float], wall: int, s: float, gap: float = 0.01) -> Instance:
    """Pose an instance with its back (+y side) ``gap`` off a wall, its origin at abscissa s."""
    inst.x, inst.y = wall_point(size, wall, s, gap + inst.local_bounds()[1][1])
    inst.yaw = BACK_TO_WALL_YAW[wall]
    return inst


# ---------------------------------------------------------------------------------------------
# Object builders: each returns an Instance in its own frame (front towards -y).

def _legs(w: float, d: float, h: float, t: float, inset: float, label: int, style: str) -> list[Part]:
    """Four square legs of side t under a w x d top at height h."""
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            cx, cy = sx * (w / 2 - inset - t / 2), sy * (d / 2 - inset - t / 2)
            parts.append(Part(Box((cx - t / 2, cy - t / 2, 0.0), (cx + t / 2, cy + t / 2, h)), label, style))
    return parts


def make_chair(rng: np.random.Generator) -> Instance:
    """Chair: seat + back + four legs, or a swivel chair on a post and a disc base."""
    w, d = rng.uniform(0.42, 0.52), rng.uniform(0.42, 0.50)
    seat, back_h = rng.uniform(0.42, 0.48), rng.uniform(0.35, 0.48)
    parts = [Part(Box((-w / 2, -d / 2, seat - 0.05), (w / 2, d / 2, seat)), CHAIR, "chair"),
             Part(Box((-w / 2, d / 2 - 0.05, seat), (w / 2, d / 2, seat + back_h)), CHAIR, "chair")]
    if rng.random() < 0.3:
        parts += [Part(Cylinder((0.0, 0.0), (0.03, 0.03), 0.05, seat - 0.05), CHAIR, "metal"),
                  Part(Cylinder((0.0, 0.0), (0.27, 0.27), 0.0, 0.05), CHAIR, "metal")]
    else:
        parts += _legs(w, d, seat - 0.05, 0.04, 0.0, CHAIR, "chair_legs")
    return Instance("chair", parts)


def make_table(rng: np.random.Generator) -> Instance:
    """Table: top + four legs, or a round top on a post; sometimes a prop on top."""
    h = rng.uniform(0.72, 0.76)
    if rng.random() < 0.3:
        r = rng.uniform(0.45, 0.6)
        parts = [Part(Cylinder((0.0, 0.0), (r, r), h - 0.04, h, bottom=True), TABLE, "table"),
                 Part(Cylinder((0.0, 0.0), (0.05, 0.05), 0.04, h - 0.04), TABLE, "table"),
                 Part(Cylinder((0.0, 0.0), (0.3, 0.3), 0.0, 0.04), TABLE, "table")]
        w = d = 2 * r
    else:
        w, d = rng.uniform(1.0, 1.7), rng.uniform(0.7, 1.0)
        parts = [Part(Box((-w / 2, -d / 2, h - 0.04), (w / 2, d / 2, h), bottom=True), TABLE, "table")]
        parts += _legs(w, d, h - 0.04, 0.05, 0.04, TABLE, "table")
    if rng.random() < 0.6:  # a lamp or a bowl: NYU40 otherprop
        r, ph = rng.uniform(0.06, 0.12), rng.uniform(0.08, 0.3)
        parts.append(Part(Cylinder((rng.uniform(-0.2, 0.2), rng.uniform(-0.15, 0.15)), (r, r), h, h + ph),
                          OTHERPROP, "prop"))
    return Instance("table", parts)


def make_desk(rng: np.random.Generator) -> Instance:
    """Desk: top on two side panels with a drawer block; a monitor-like prop on top."""
    w, d, h = rng.uniform(1.1, 1.6), rng.uniform(0.6, 0.75), rng.uniform(0.72, 0.76)
    t = 0.03
    parts = [Part(Box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), bottom=True), DESK, "desk"),
             Part(Box((-w / 2, -d / 2 + 0.03, 0.0), (-w / 2 + t, d / 2, h - t)), DESK, "desk"),
             Part(Box((w / 2 - t, -d / 2 + 0.03, 0.0), (w / 2, d / 2, h - t)), DESK, "desk"),
             Part(Box((w / 2 - t - 0.4, -d / 2 + 0.03, h - t - 0.5), (w / 2 - t, d / 2, h - t), bottom=True),
                  DESK, "desk")]
    if rng.random() < 0.7:
        mw = rng.uniform(0.4, 0.6)
        parts += [Part(Box((-mw / 2, d / 2 - 0.2, h + 0.1), (mw / 2, d / 2 - 0.15, h + 0.42), bottom=True),
                       OTHERPROP, "screen"),
                  Part(Box((-0.04, d / 2 - 0.19, h), (0.04, d / 2 - 0.16, h + 0.1)), OTHERPROP, "screen")]
    return Instance("desk", parts)


def make_bed(rng: np.random.Generator) -> Instance:
    """Bed: frame + mattress + headboard (at +y) + one or two pillows (NYU40 pillow)."""
    w, d = rng.choice([rng.uniform(0.9, 1.1), rng.uniform(1.4, 1.8)]), rng.uniform(1.95, 2.1)
    head_h = rng.uniform(0.85, 1.1)
    parts = [Part(Box((-w / 2, -d / 2, 0.0), (w / 2, d / 2 - 0.06, 0.3)), BED, "bedframe"),
             Part(Box((-w / 2 + 0.02, -d / 2 + 0.02, 0.3), (w / 2 - 0.02, d / 2 - 0.08, 0.52)), BED, "bed"),
             Part(Box((-w / 2, d / 2 - 0.06, 0.0), (w / 2, d / 2, head_h)), BED, "bedframe")]
    n_pillows = 1 if w < 1.2 else 2
    pw = (w - 0.15) / n_pillows
    for k in range(n_pillows):
        x0 = -w / 2 + 0.075 + k * pw
        parts.append(Part(Box((x0 + 0.03, d / 2 - 0.5, 0.52), (x0 + pw - 0.03, d / 2 - 0.12, 0.64)),
                          PILLOW, "pillow"))
    return Instance("bed", parts)


def make_sofa(rng: np.random.Generator) -> Instance:
    """Sofa: base + seat cushion + back + two arms."""
    w, d = rng.uniform(1.6, 2.3), rng.uniform(0.8, 0.95)
    arm, back_t, arm_h, back_h = 0.18, 0.2, rng.uniform(0.55, 0.65), rng.uniform(0.78, 0.9)
    parts = [Part(Box((-w / 2 + arm, -d / 2, 0.0), (w / 2 - arm, d / 2 - back_t, 0.25)), SOFA, "sofa"),
             Part(Box((-w / 2 + arm, -d / 2, 0.25), (w / 2 - arm, d / 2 - back_t, 0.44)), SOFA, "sofa"),
             Part(Box((-w / 2, d / 2 - back_t, 0.0), (w / 2, d / 2, back_h)), SOFA, "sofa"),
             Part(Box((-w / 2, -d / 2, 0.0), (-w / 2 + arm, d / 2 - back_t, arm_h)), SOFA, "sofa"),
             Part(Box((w / 2 - arm, -d / 2, 0.0), (w / 2, d / 2 - back_t, arm_h)), SOFA, "sofa")]
    if rng.random() < 0.5:
        x0 = rng.uniform(-w / 2 + arm, w / 2 - arm - 0.4)
        parts.append(Part(Box((x0, d / 2 - back_t - 0.15, 0.44), (x0 + 0.4, d / 2 - back_t, 0.8)), PILLOW, "pillow"))
    return Instance("sofa", parts)


def make_cabinet(rng: np.random.Generator) -> Instance:
    """Cabinet: a box (low sideboard or tall wardrobe) with handles on its front."""
    w, d = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.6)
    h = rng.uniform(0.6, 0.95) if rng.random() < 0.6 else rng.uniform(1.6, 1.95)
    parts = [Part(Box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h)), CABINET, "cabinet")]
    for sx in ((-0.06, 0.06) if w > 0.7 else (0.0,)):
        parts.append(Part(Box((sx - 0.015, -d / 2 - 0.025, h * 0.55), (sx + 0.015, -d / 2, h * 0.55 + 0.12)),
                          CABINET, "handle"))
    return Instance("cabinet", parts)


def make_bookshelf(rng: np.random.Generator) -> Instance:
    """Bookshelf: sides, back, top, shelves, with runs of books (NYU40 otherprop) on the shelves."""
    w, d, h = rng.uniform(0.7, 1.2), rng.uniform(0.3, 0.4), rng.uniform(1.4, 2.0)
    t = 0.02
    parts = [Part(Box((-w / 2, -d / 2, 0.0), (-w / 2 + t, d / 2, h)), BOOKSHELF, "bookshelf"),
             Part(Box((w / 2 - t, -d / 2, 0.0), (w / 2, d / 2, h)), BOOKSHELF, "bookshelf"),
             Part(Box((-w / 2 + t, d / 2 - t, 0.0), (w / 2 - t, d / 2, h)), BOOKSHELF, "bookshelf"),
             Part(Box((-w / 2 + t, -d / 2, h - t), (w / 2 - t, d / 2 - t, h)), BOOKSHELF, "bookshelf")]
    n_shelves = int(h // 0.36)
    gap = h / (n_shelves + 1)
    for k in range(n_shelves + 1):
        z = 0.05 + k * gap
        if k:
            parts.append(Part(Box((-w / 2 + t, -d / 2, z - t), (w / 2 - t, d / 2 - t, z), bottom=True),
                              BOOKSHELF, "bookshelf"))
        x = -w / 2 + t + rng.uniform(0.0, 0.1)
        while x < w / 2 - t - 0.06 and rng.random() < 0.93:
            bw, bh = rng.uniform(0.025, 0.06), rng.uniform(0.15, min(0.3, gap - t - 0.03))
            parts.append(Part(Box((x, -d / 2 + rng.uniform(0.02, 0.06), z), (x + bw, d / 2 - t, z + bh)),
                              OTHERPROP, "book"))
            x += bw + (rng.uniform(0.05, 0.2) if rng.random() < 0.1 else 0.0)
    return Instance("bookshelf", parts)


def make_refrigerator(rng: np.random.Generator) -> Instance:
    """Refrigerator: tall box, a door seam strip and a vertical handle."""
    w, d, h = rng.uniform(0.6, 0.8), rng.uniform(0.65, 0.75), rng.uniform(1.7, 1.9)
    parts = [Part(Box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h)), REFRIGERATOR, "refrigerator"),
             Part(Box((-w / 2, -d / 2 - 0.01, h * 0.62), (w / 2, -d / 2, h * 0.63)), REFRIGERATOR, "metal"),
             Part(Box((w / 2 - 0.08, -d / 2 - 0.05, h * 0.35), (w / 2 - 0.05, -d / 2, h * 0.58)), REFRIGERATOR, "metal")]
    return Instance("refrigerator", parts)


def make_counter(rng: np.random.Generator) -> Instance:
    """Kitchen counter: cabinet base (NYU40 cabinet), worktop slab (counter), sometimes a sink."""
    w, d, h = rng.uniform(1.5, 2.6), rng.uniform(0.58, 0.65), rng.uniform(0.88, 0.92)
    parts = [Part(Box((-w / 2, -d / 2 + 0.03, 0.0), (w / 2, d / 2, h - 0.04)), CABINET, "cabinet"),
             Part(Box((-w / 2, -d / 2, h - 0.04), (w / 2, d / 2, h), bottom=True), COUNTER, "counter")]
    if rng.random() < 0.6:
        cx = rng.uniform(-w / 2 + 0.35, w / 2 - 0.35)
        parts += [Part(Cylinder((cx, 0.0), (0.25, 0.18), h, h + 0.03), SINK, "steel"),
                  Part(Cylinder((cx, 0.22), (0.02, 0.02), h, h + 0.25), OTHERPROP, "metal")]
    return Instance("counter", parts)


def make_toilet(rng: np.random.Generator) -> Instance:
    """Toilet: pedestal and bowl (elliptic cylinders), seat lid, tank box at the back."""
    rx, ry = rng.uniform(0.17, 0.2), rng.uniform(0.23, 0.27)
    tank_w = rng.uniform(0.4, 0.48)
    d = 2 * ry + 0.2
    by = -d / 2 + ry
    parts = [Part(Cylinder((0.0, by + 0.03), (0.12, 0.16), 0.0, 0.3), TOILET, "porcelain"),
             Part(Cylinder((0.0, by), (rx, ry), 0.3, 0.4, bottom=True), TOILET, "porcelain"),
             Part(Cylinder((0.0, by), (rx - 0.01, ry - 0.01), 0.4, 0.43), TOILET, "porcelain"),
             Part(Box((-tank_w / 2, d / 2 - 0.2, 0.4), (tank_w / 2, d / 2, 0.8), bottom=True), TOILET, "porcelain"),
             Part(Box((-0.05, by, 0.0), (0.05, d / 2 - 0.2, 0.3)), TOILET, "porcelain")]
    return Instance("toilet", parts)


def make_sink(rng: np.random.Generator) -> Instance:
    """Bathroom sink: a basin on a pedestal, or on a vanity cabinet (NYU40 cabinet); a tap prop."""
    if rng.random() < 0.5:
        rx, ry = rng.uniform(0.25, 0.3), rng.uniform(0.2, 0.24)
        parts = [Part(Cylinder((0.0, 0.02), (0.09, 0.09), 0.0, 0.72), SINK, "porcelain"),
                 Part(Cylinder((0.0, 0.0), (rx, ry), 0.72, 0.86, bottom=True), SINK, "porcelain")]
        w, d, top = 2 * rx, 2 * ry + 0.06, 0.86
    else:
        w, d, top = rng.uniform(0.6, 0.9), rng.uniform(0.45, 0.55), 0.82
        rx, ry = w / 2 - 0.08, d / 2 - 0.08
        parts = [Part(Box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, 0.78)), CABINET, "cabinet"),
                 Part(Cylinder((0.0, -0.02), (rx, ry), 0.78, top), SINK, "porcelain")]
    parts.append(Part(Cylinder((0.0, d / 2 - 0.04), (0.015, 0.015), top, top + 0.18), OTHERPROP, "metal"))
    return Instance("sink", parts)


def make_bathtub(rng: np.random.Generator) -> Instance:
    """Bathtub: hollow tub (four rim walls and a floor) and a shower curtain along its front."""
    w, d, h, t = rng.uniform(1.5, 1.7), rng.uniform(0.7, 0.8), rng.uniform(0.5, 0.58), 0.08
    parts = [Part(Box((-w / 2, -d / 2, 0.0), (w / 2, -d / 2 + t, h)), BATHTUB, "porcelain"),
             Part(Box((-w / 2, d / 2 - t, 0.0), (w / 2, d / 2, h)), BATHTUB, "porcelain"),
             Part(Box((-w / 2, -d / 2 + t, 0.0), (-w / 2 + t, d / 2 - t, h)), BATHTUB, "porcelain"),
             Part(Box((w / 2 - t, -d / 2 + t, 0.0), (w / 2, d / 2 - t, h)), BATHTUB, "porcelain"),
             Part(Box((-w / 2 + t, -d / 2 + t, 0.0), (w / 2 - t, d / 2 - t, 0.12)), BATHTUB, "porcelain")]
    cw = w * rng.uniform(0.45, 0.7)
    curtain = Sheet(cw, h + 0.3, 1.95, 0.03, rng.uniform(0.12, 0.2), rng.uniform(0, 2 * math.pi),
                    (-w / 2 + cw / 2 + 0.02, -d / 2 + 0.05))
    parts.append(Part(curtain, SHOWER_CURTAIN, "shower_curtain"))
    return Instance("bathtub", parts)


def make_otherfurniture(rng: np.random.Generator) -> Instance:
    """Other furniture: a round ottoman or a bench on legs."""
    if rng.random() < 0.5:
        r = rng.uniform(0.22, 0.32)
        parts = [Part(Cylinder((0.0, 0.0), (r, r), 0.0, rng.uniform(0.38, 0.45)), OTHERFURNITURE, "otherfurniture")]
        return Instance("otherfurniture", parts)
    w, d, h = rng.uniform(0.8, 1.3), rng.uniform(0.35, 0.45), rng.uniform(0.42, 0.48)
    parts = [Part(Box((-w / 2, -d / 2, h - 0.06), (w / 2, d / 2, h), bottom=True), OTHERFURNITURE, "otherfurniture")]
    parts += _legs(w, d, h - 0.06, 0.05, 0.03, OTHERFURNITURE, "otherfurniture")
    return Instance("otherfurniture", parts)


def make_clutter(rng: np.random.Generator) -> Instance:
    """Unannotated floor clutter (a box or a bag): NYU40 0."""
    w, d, h = rng.uniform(0.25, 0.5), rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.45)
    return Instance("clutter", [Part(Box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h)), UNLABELLED, "clutter")])


BUILDERS: dict[str, Callable[[np.random.Generator], Instance]] = {
    "chair": make_chair, "table": make_table, "desk": make_desk, "bed": make_bed, "sofa": make_sofa,
    "cabinet": make_cabinet, "bookshelf": make_bookshelf, "refrigerator": make_refrigerator,
    "counter": make_counter, "toilet": make_toilet, "sink": make_sink, "bathtub": make_bathtub,
    "otherfurniture": make_otherfurniture, "clutter": make_clutter,
}
WALL_OBJECTS = {"bed", "desk", "cabinet", "bookshelf", "refrigerator", "counter", "toilet", "sink",
                "bathtub", "sofa"}

# Room types: (ScanNet sceneType, (Lx range), (Ly range), required objects, optional pool).
ROOM_TYPES: dict[str, tuple[str, tuple[float, float], tuple[float, float], list[str], list[str]]] = {
    "bedroom": ("Bedroom / Hotel", (3.8, 5.0), (3.4, 4.5), ["bed", "cabinet"],
                ["cabinet", "desk", "bookshelf", "otherfurniture", "chair", "clutter", "sofa"]),
    "living": ("Living room / Lounge", (4.6, 6.2), (4.0, 5.2), ["sofa", "table"],
               ["chair", "bookshelf", "cabinet", "otherfurniture", "sofa", "clutter", "table"]),
    "office": ("Office", (3.8, 5.6), (3.6, 4.8), ["desk", "bookshelf"],
               ["desk", "cabinet", "table", "chair", "bookshelf", "clutter", "refrigerator"]),
    "kitchen": ("Kitchen", (3.6, 5.2), (3.4, 4.4), ["counter", "refrigerator"],
                ["table", "cabinet", "chair", "otherfurniture", "counter", "clutter"]),
    "bathroom": ("Bathroom", (3.0, 3.6), (2.8, 3.4), ["toilet", "sink"],
                 ["bathtub", "cabinet", "clutter", "otherfurniture"]),
}
SCENE_TYPES = tuple(ROOM_TYPES)


# ---------------------------------------------------------------------------------------------
# Placement

def _overlaps(lo: np.ndarray, hi: np.ndarray, boxes: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether the box lo..hi, grown by MARGIN in x and y, meets any of ``boxes``."""
    g = np.array([MARGIN, MARGIN, 0.0])
    return any(bool(np.all(lo - g < bhi) and np.all(blo < hi + g)) for blo, bhi in boxes)


def _half_width(inst: Instance) -> float:
    """Largest distance of the object's extent from its origin along its own x axis."""
    lo, hi = inst.local_bounds()
    return float(max(-lo[0], hi[0]))


class Placer:
    """Accepts instances whose 3D bounds stay inside the room and clear of everything placed."""

    def __init__(self, size: tuple[float, float], rng: np.random.Generator):
        self.size, self.rng = size, rng
        self.boxes: list[tuple[np.ndarray, np.ndarray]] = []

    def reserve(self, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> None:
        """Keep a zone free (in front of the door, around the window)."""
        self.boxes.append((np.asarray(lo, float), np.asarray(hi, float)))

    def fits(self, inst: Instance) -> bool:
        """Inside the room (1 mm tolerance for wall decor) and clear of every placed box."""
        lo, hi = inst.aabb()
        inside = min(lo[0], lo[1]) > -1e-3 and hi[0] < self.size[0] + 1e-3 and hi[1] < self.size[1] + 1e-3
        return inside and not _overlaps(lo, hi, self.boxes)

    def accept(self, inst: Instance) -> None:
        self.boxes.append(inst.aabb())

    def against_wall(self, inst: Instance, gap: float = 0.01, tries: int = 40) -> bool:
        """Try random walls and abscissae until the instance fits; keep it there."""
        hw = _half_width(inst)
        for _ in range(tries):
            wall = int(self.rng.integers(4))
            length = wall_length(self.size, wall)
            if 2 * hw + 0.1 > length:
                continue
            on_wall(inst, self.size, wall, self.rng.uniform(hw + 0.02, length - hw - 0.02), gap)
            if self.fits(inst):
                self.accept(inst)
                return True
        return False

    def free(self, inst: Instance, tries: int = 40) -> bool:
        """Try random positions and near-axis yaws on the open floor; keep the first that fits."""
        for _ in range(tries):
            inst.yaw = float(self.rng.integers(4)) * math.pi / 2 + self.rng.uniform(-0.2, 0.2)
            inst.x = self.rng.uniform(0.3, self.size[0] - 0.3)
            inst.y = self.rng.uniform(0.3, self.size[1] - 0.3)
            if self.fits(inst):
                self.accept(inst)
                return True
        return False

    def facing(self, parent: Instance, inst: Instance, side: int, gap: float = 0.08) -> bool:
        """Place ``inst`` beside side ``side`` (0 front, 1 right, 2 back, 3 left) of ``parent``,
        its front turned towards the parent."""
        plo, phi = parent.local_bounds()
        ox, oy = [(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)][side]
        edge = [-plo[1], phi[0], phi[1], -plo[0]][side]
        reach = edge + gap - inst.local_bounds()[0][1]
        along = self.rng.uniform(-0.2, 0.2) * (phi[0] - plo[0] if side in (0, 2) else phi[1] - plo[1])
        lx, ly = ox * reach + (along if side in (0, 2) else 0.0), oy * reach + (along if side in (1, 3) else 0.0)
        c, s = math.cos(parent.yaw), math.sin(parent.yaw)
        inst.x, inst.y = parent.x + c * lx - s * ly, parent.y + s * lx + c * ly
        # the child's +y (its back) points away from the parent, so its front faces it
        inst.yaw = parent.yaw + math.atan2(-ox, oy) + self.rng.uniform(-0.15, 0.15)
        if self.fits(inst):
            self.accept(inst)
            return True
        return False


def _place_object(name: str, placer: Placer, rng: np.random.Generator, budget: int) -> list[Instance]:
    """Build and place one object and up to ``budget - 1`` dependants; empty when it does not fit."""
    inst = BUILDERS[name](rng)
    tall = inst.local_bounds()[1][2] >= TALL
    if not (placer.against_wall(inst) if name in WALL_OBJECTS or tall else placer.free(inst)):
        return []
    placed = [inst]
    sides = {"desk": [0], "table": [0, 1, 2, 3]}.get(name, [])
    for side in sides:
        if len(placed) < budget and (name == "desk" or rng.random() < 0.7):
            chair = make_chair(rng)
            if placer.facing(inst, chair, side):
                placed.append(chair)
    return placed


def _openings(size: tuple[float, float], height: float, rng: np.random.Generator) -> list[Opening]:
    """One door and one window on two different walls."""
    door_wall, window_wall = (int(w) for w in rng.permutation(4)[:2])
    dw = rng.uniform(0.8, 0.95)
    ds = rng.uniform(0.15 + dw / 2, wall_length(size, door_wall) - 0.15 - dw / 2)
    ww = rng.uniform(0.9, min(1.8, wall_length(size, window_wall) - 1.6))
    ws = rng.uniform(0.8 + ww / 2, wall_length(size, window_wall) - 0.8 - ww / 2)
    sill = rng.uniform(0.8, 1.0)
    return [Opening(door_wall, ds - dw / 2, ds + dw / 2, 0.0, min(2.1, height - 0.2), DOOR, "door"),
            Opening(window_wall, ws - ww / 2, ws + ww / 2, sill, min(sill + rng.uniform(1.0, 1.3), height - 0.2),
                    WINDOW, "window")]


DOOR_RECESS, WINDOW_RECESS = 0.05, 0.12  # how far the leaf / the pane sit behind the wall's face
FRAME_PROUD = 0.025  # how far door and window casings stand out of the wall


def _opening_parts(size: tuple[float, float], op: Opening) -> Instance:
    """What fills an opening's hole in the wall: a door leaf set back inside jambs and a head that
    stand proud of the wall, or a window pane recessed inside linings with a protruding sill.

    Built in a wall frame (x along the wall from the opening's centre, y = 0 the wall's face, -y
    into the room, +y into the wall), then posed with y = 0 on the wall.
    """
    hw, p = (op.s1 - op.s0) / 2, FRAME_PROUD
    if op.label == DOOR:
        r, t, back = DOOR_RECESS, 0.07, DOOR_RECESS + 0.04
        parts = [Part(Box((-hw, r, op.z0), (hw, back, op.z1)), DOOR, "door"),
                 Part(Box((hw - 0.14, r - 0.06, op.z0 + 0.95), (hw - 0.08, r, op.z0 + 1.0)), DOOR, "handle"),
                 Part(Box((-hw - t, -p, op.z0), (-hw, back, op.z1 + t)), DOOR, "door_frame"),
                 Part(Box((hw, -p, op.z0), (hw + t, back, op.z1 + t)), DOOR, "door_frame"),
                 Part(Box((-hw, -p, op.z1), (hw, back, op.z1 + t), bottom=True), DOOR, "door_frame")]
    else:
        r, t, back = WINDOW_RECESS, 0.05, WINDOW_RECESS + 0.02
        parts = [Part(Box((-hw, r, op.z0), (hw, back, op.z1)), WINDOW, "window"),
                 Part(Box((-0.025, r - 0.04, op.z0), (0.025, r, op.z1)), WINDOW, "window_frame"),
                 Part(Box((-hw - t, -p, op.z0), (-hw, back, op.z1 + t)), WINDOW, "window_frame"),
                 Part(Box((hw, -p, op.z0), (hw + t, back, op.z1 + t)), WINDOW, "window_frame"),
                 Part(Box((-hw, -p, op.z1), (hw, back, op.z1 + t), bottom=True), WINDOW, "window_frame"),
                 Part(Box((-hw - 0.08, -0.07, op.z0 - 0.04), (hw + 0.08, back, op.z0), bottom=True), WINDOW,
                      "window_frame")]
    inst = Instance("opening", parts)
    return on_wall(inst, size, op.wall, op.s0 + hw, gap=-inst.local_bounds()[1][1])


def _keep_out(size: tuple[float, float], op: Opening, depth: float, placer: Placer) -> None:
    """Reserve the space in front of an opening (door swing, window reach)."""
    (ax, ay), (bx, by) = wall_point(size, op.wall, op.s0 - 0.1, 0.0), wall_point(size, op.wall, op.s1 + 0.1, depth)
    placer.reserve((min(ax, bx), min(ay, by), op.z0 - 0.1 if op.label == WINDOW else 0.0),
                   (max(ax, bx), max(ay, by), op.z1 + 0.1))


def _curtains(size: tuple[float, float], op: Opening, rng: np.random.Generator) -> list[Instance]:
    """Two wavy curtains hanging at the sides of a window, a few centimetres off the wall."""
    cw = rng.uniform(0.35, 0.55)
    z0, z1 = max(0.05, op.z0 - rng.uniform(0.1, 0.6)), op.z1 + 0.08
    period, phase = rng.uniform(0.1, 0.18), rng.uniform(0, 2 * math.pi)
    out = []
    for s in (op.s0 - 0.06 + cw * 0.35, op.s1 + 0.06 - cw * 0.35):
        sheet = Sheet(cw, z0, z1, 0.035, period, phase)
        out.append(on_wall(Instance("curtain", [Part(sheet, CURTAIN, "curtain")]), size, op.wall, s, gap=0.08))
    return out


def _picture(rng: np.random.Generator, height: float) -> Instance:
    """A framed picture: a canvas inside four frame bars that stand out of it, back at y = 0
    (hung a little off the wall)."""
    w, h = rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.7)
    z0 = rng.uniform(1.2, min(1.6, height - h - 0.2))
    t, d = 0.035, 0.035
    return Instance("picture", [
        Part(Box((-w / 2, -0.02, z0), (w / 2, 0.0, z0 + h)), PICTURE, "picture"),
        Part(Box((-w / 2 - t, -d, z0 - t), (w / 2 + t, 0.0, z0), bottom=True), PICTURE, "picture_frame"),
        Part(Box((-w / 2 - t, -d, z0 + h), (w / 2 + t, 0.0, z0 + h + t)), PICTURE, "picture_frame"),
        Part(Box((-w / 2 - t, -d, z0), (-w / 2, 0.0, z0 + h)), PICTURE, "picture_frame"),
        Part(Box((w / 2, -d, z0), (w / 2 + t, 0.0, z0 + h)), PICTURE, "picture_frame")])


def generate_room(rng: np.random.Generator, scene_type: str) -> Room:
    """Draw one room of the given type: shell, openings, curtains, 4-10 objects, pictures."""
    label, xr, yr, required, pool = ROOM_TYPES[scene_type]
    size = (round(float(rng.uniform(*xr)), 2), round(float(rng.uniform(*yr)), 2))
    height = round(float(rng.uniform(2.5, 2.9)), 2)
    floors = ["floor_wood", "floor_carpet", "floor_wood", "floor_tile"]
    floor_style = "floor_tile" if scene_type in ("bathroom", "kitchen") else str(rng.choice(floors))
    room = Room(label, size, height, floor_style, _openings(size, height, rng))
    placer = Placer(size, rng)
    for op in room.openings:
        _keep_out(size, op, 0.95 if op.label == DOOR else 0.3, placer)
        room.instances.append(_opening_parts(size, op))
        if op.label == WINDOW and rng.random() < 0.7:
            for curtain in _curtains(size, op, rng):
                placer.accept(curtain)
                room.instances.append(curtain)
    target = int(rng.integers(4, 11))
    furniture: list[Instance] = []
    for name in list(required) + [str(n) for n in rng.choice(pool, size=3 * target)]:
        if len(furniture) < target:
            furniture += _place_object(name, placer, rng, target - len(furniture))
    for _ in range(50):  # small rooms: top up with small objects
        if len(furniture) >= 4:
            break
        furniture += _place_object(str(rng.choice(["clutter", "otherfurniture", "chair"])), placer, rng, 1)
    room.instances += furniture
    for _ in range(int(rng.integers(0, 3))):
        pic = _picture(rng, height)
        if placer.against_wall(pic, gap=0.012, tries=30):
            room.instances.append(pic)
    return room


def furniture_count(room: Room) -> int:
    """Number of placed furniture objects (trims, curtains and pictures excluded)."""
    return sum(inst.name in BUILDERS for inst in room.instances)
