"""Procedural streets: the scene grammar that the synthetic nuScenes drive ray-casts.

A street runs along +x of its own frame (z up, road surface at z = 0). Across y, from the centre:

* road ``|y| < road_half`` (flat.driveable_surface), on some stretches with a raised median island
  (flat.other); the outer ``PARKING`` metres of each side are a parking lane;
* curb and sidewalk ``road_half < |y| < walk_out``, raised ``CURB`` (flat.sidewalk);
* a verge (flat.terrain: the ground plane, ``GROUND_DROP`` below the road, which also extends far
  beyond the street), then building frontages (static.manmade) with gaps;
* trees and hedges (static.vegetation) in the verge and the gaps; lamp posts and traffic signs
  (static.manmade) and bins (static.other, an ignored class) on the sidewalks.

Things, annotated with boxes: parked cars, trucks, buses, trailers and construction vehicles in
the parking lanes, bicycles and motorcycles at the curb, pedestrians on the sidewalks, and a road
works zone (barriers, traffic cones, a construction vehicle and a worker) on the far (+y) side.
The ego lane (``ego_lane_y``, -y side) is kept clear, so the ego vehicle never meets an object.

Every item is a few parts (boxes, vertical cylinders and cones, flat quads) in its own frame
(x forward, y left, z up) placed by a pose (x, y, z, yaw) in the street frame; categories are
nuScenes-lidarseg fine category names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Vec3 = tuple[float, float, float]
RGB = tuple[int, int, int]

DRIVEABLE = "flat.driveable_surface"
SIDEWALK = "flat.sidewalk"
TERRAIN = "flat.terrain"
OTHER_FLAT = "flat.other"
MANMADE = "static.manmade"
VEGETATION = "static.vegetation"
STATIC_OTHER = "static.other"
CAR = "vehicle.car"
TRUCK = "vehicle.truck"
BUS = "vehicle.bus.rigid"
TRAILER = "vehicle.trailer"
CONSTRUCTION = "vehicle.construction"
MOTORCYCLE = "vehicle.motorcycle"
BICYCLE = "vehicle.bicycle"
ADULT = "human.pedestrian.adult"
CHILD = "human.pedestrian.child"
WORKER = "human.pedestrian.construction_worker"
BARRIER = "movable_object.barrier"
CONE = "movable_object.trafficcone"

PARKING = 2.2  # parking lane width (m)
CURB = 0.15  # sidewalk height above the road (m)
GROUND_DROP = 0.05  # the terrain plane lies this far below the road (no coplanar surfaces)
MEDIAN_HALF = 0.8  # half width of a median island (m)
GROUND_MARGIN = 150.0  # the terrain plane reaches this far beyond the street's ends

# Base colours per category (flat shading is enough: the images only need to agree with geometry).
PALETTE: dict[str, tuple[RGB, ...]] = {
    DRIVEABLE: ((72, 72, 76),),
    SIDEWALK: ((168, 164, 156),),
    TERRAIN: ((112, 138, 70),),
    OTHER_FLAT: ((150, 124, 96),),
    MANMADE: ((196, 176, 150), (160, 92, 72), (140, 140, 146), (214, 206, 190), (110, 106, 100)),
    VEGETATION: ((48, 112, 44), (70, 128, 52), (36, 92, 40)),
    STATIC_OTHER: ((40, 70, 52), (90, 90, 96)),
    CAR: ((200, 30, 30), (30, 60, 160), (230, 230, 230), (30, 30, 34), (150, 152, 158), (20, 120, 90)),
    TRUCK: ((240, 240, 236), (40, 90, 170), (200, 120, 30)),
    BUS: ((230, 190, 30), (200, 40, 40), (40, 120, 200)),
    TRAILER: ((220, 220, 215), (170, 60, 40)),
    CONSTRUCTION: ((240, 180, 20),),
    MOTORCYCLE: ((20, 20, 24), (180, 20, 30), (50, 50, 140)),
    BICYCLE: ((30, 110, 200), (40, 40, 40), (220, 60, 40)),
    ADULT: ((60, 60, 90), (120, 60, 50), (40, 80, 60), (150, 140, 120)),
    CHILD: ((220, 80, 120), (70, 130, 210)),
    WORKER: ((255, 120, 0),),
    BARRIER: ((235, 235, 235), (200, 40, 40)),
    CONE: ((255, 110, 20),),
}
TYRE, GLASS = 0.25, 0.45  # colour factors of tyres and windows


@dataclass(frozen=True)
class Part:
    """A solid in its item's frame: ``box``, vertical ``cylinder`` or ``cone`` filling lo..hi,
    or a ``quad`` (the top face of lo..hi only, for ground surfaces)."""

    shape: str
    lo: Vec3
    hi: Vec3
    shade: float = 1.0


@dataclass(frozen=True)
class Item:
    """One object or surface: category, pose (x, y, z, yaw) in the street frame, parts, colour."""

    category: str
    pose: tuple[float, float, float, float]
    parts: tuple[Part, ...]
    color: RGB
    annotated: bool = False  # a thing that gets a sample_annotation box
    attribute: str | None = None  # its nuScenes attribute name

    def local_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds (lo, hi) of all parts in the item's own frame."""
        return (np.min([p.lo for p in self.parts], axis=0).astype(float),
                np.max([p.hi for p in self.parts], axis=0).astype(float))

    def footprint(self) -> tuple[np.ndarray, np.ndarray]:
        """Street-frame axis-aligned (x, y) bounds of the item at its pose."""
        lo, hi = self.local_bounds()
        corners = np.array([[x, y] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
        c, s = math.cos(self.pose[3]), math.sin(self.pose[3])
        xy = corners @ np.array([[c, s], [-s, c]]) + self.pose[:2]
        return xy.min(axis=0), xy.max(axis=0)


@dataclass
class Street:
    """A generated street: its cross-section and every item on it."""

    length: float
    road_half: float
    walk_out: float
    ego_lane_y: float
    items: list[Item] = field(default_factory=list)


def _box(lo: Vec3, hi: Vec3, shade: float = 1.0) -> Part:
    return Part("box", lo, hi, shade)


def _color(rng: np.random.Generator, category: str) -> RGB:
    """A palette colour of the category with a small brightness jitter."""
    bases = PALETTE[category]
    base = np.array(bases[int(rng.integers(len(bases)))], float) * rng.uniform(0.9, 1.1)
    return tuple(int(c) for c in np.clip(np.round(base), 0, 255))


# ---------------------------------------------------------------------------------------------
# Things: each builder returns parts centred on the origin, length along x, standing on z = 0.

def _wheels(length: float, width: float, radius: float, inset: float) -> list[Part]:
    """Four tyre boxes at the corners of a length x width footprint."""
    xs = (-length / 2 + inset, length / 2 - inset)
    ys = (-width / 2, width / 2 - 0.25)
    return [_box((x - radius, y, 0.0), (x + radius, y + 0.25, 2 * radius), TYRE) for x in xs for y in ys]


def vehicle_parts(rng: np.random.Generator, category: str) -> tuple[Part, ...]:
    """Boxes of a car, truck, bus, trailer or construction vehicle with realistic dimensions."""
    if category == CAR:
        length, w, h = rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.95), rng.uniform(1.4, 1.7)
        return (_box((-length / 2, -w / 2, 0.3), (length / 2, w / 2, 0.55 * h + 0.2)),
                _box((-0.3 * length, -w / 2 + 0.08, 0.55 * h + 0.2), (0.22 * length, w / 2 - 0.08, h), GLASS),
                *_wheels(length, w, 0.32, 0.75))
    if category == TRUCK:
        length, w, h = rng.uniform(6.0, 9.0), rng.uniform(2.3, 2.5), rng.uniform(2.8, 3.6)
        return (_box((length / 2 - 2.0, -w / 2, 0.5), (length / 2, w / 2, 0.8 * h)),
                _box((length / 2 - 1.2, -w / 2 + 0.05, 0.8 * h - 0.9), (length / 2 + 0.02, w / 2 - 0.05, 0.8 * h - 0.1), GLASS),
                _box((-length / 2, -w / 2, 0.8), (length / 2 - 2.1, w / 2, h), 0.95),
                *_wheels(length, w, 0.5, 1.0))
    if category == BUS:
        length, w, h = rng.uniform(10.0, 12.5), 2.55, rng.uniform(3.0, 3.3)
        return (_box((-length / 2, -w / 2, 0.35), (length / 2, w / 2, h)),
                _box((-length / 2 + 0.5, -w / 2 - 0.02, 1.3), (length / 2 - 0.3, w / 2 + 0.02, h - 0.45), GLASS),
                *_wheels(length, w, 0.5, 2.2))
    if category == TRAILER:
        length, w, h = rng.uniform(6.0, 10.0), 2.45, rng.uniform(3.2, 3.9)
        return (_box((-length / 2, -w / 2, 1.0), (length / 2, w / 2, h)), *_wheels(length - 1.5, w, 0.5, 0.6))
    if category == CONSTRUCTION:
        length, w = rng.uniform(5.0, 7.0), rng.uniform(2.3, 2.8)
        return (_box((-length / 2, -w / 2, 0.0), (length / 2, w / 2, 0.9), 0.5),  # tracks
                _box((-length / 2 + 0.5, -w / 2, 0.9), (length / 2 - 1.5, w / 2, 2.0)),
                _box((-0.5, -w / 2 + 0.2, 2.0), (1.0, w / 2 - 0.2, 3.1), GLASS),
                _box((1.0, -0.25, 1.6), (length / 2 + 1.0, 0.25, 2.4)))  # boom
    raise ValueError(f"not a vehicle category: {category}")


def cycle_parts(rng: np.random.Generator, category: str) -> tuple[Part, ...]:
    """Thin boxes of a bicycle or a motorcycle (no rider)."""
    if category == BICYCLE:
        length, r, t = rng.uniform(1.6, 1.8), 0.34, 0.05
        return (_box((-length / 2, -t / 2, 0.0), (-length / 2 + 2 * r, t / 2, 2 * r), TYRE),
                _box((length / 2 - 2 * r, -t / 2, 0.0), (length / 2, t / 2, 2 * r), TYRE),
                _box((-length / 2 + r, -t / 2, r), (length / 2 - r, t / 2, r + 0.35)),
                _box((length / 2 - r - 0.05, -0.3, 0.95), (length / 2 - r, 0.3, 1.0)))
    length, r, w = rng.uniform(1.9, 2.2), 0.32, rng.uniform(0.6, 0.8)
    return (_box((-length / 2, -0.07, 0.0), (-length / 2 + 2 * r, 0.07, 2 * r), TYRE),
            _box((length / 2 - 2 * r, -0.07, 0.0), (length / 2, 0.07, 2 * r), TYRE),
            _box((-length / 2 + r, -0.2, 0.3), (length / 2 - r, 0.2, 0.85)),
            _box((length / 2 - r - 0.1, -w / 2, 1.0), (length / 2 - r, w / 2, 1.1)))


def pedestrian_parts(rng: np.random.Generator, category: str) -> tuple[Part, ...]:
    """Legs, torso and head boxes of an adult, a child or a construction worker."""
    h = rng.uniform(1.0, 1.4) if category == CHILD else rng.uniform(1.55, 1.95)
    w, d = 0.22 * h + rng.uniform(0.0, 0.1), 0.14 * h
    return (_box((-d / 2, -w / 2 + 0.03, 0.0), (d / 2, w / 2 - 0.03, 0.47 * h), 0.6),
            _box((-d / 2 - 0.02, -w / 2, 0.47 * h), (d / 2 + 0.02, w / 2, 0.85 * h)),
            _box((-0.06 * h, -0.06 * h, 0.86 * h), (0.06 * h, 0.06 * h, h), 1.3))


def barrier_parts(rng: np.random.Generator) -> tuple[Part, ...]:
    """A jersey-style barrier block."""
    length, w, h = rng.uniform(1.5, 2.0), rng.uniform(0.35, 0.5), rng.uniform(0.8, 1.1)
    return (_box((-length / 2, -w / 2, 0.0), (length / 2, w / 2, h)),)


def cone_parts(rng: np.random.Generator) -> tuple[Part, ...]:
    """A traffic cone on a square base."""
    r, h = rng.uniform(0.14, 0.2), rng.uniform(0.5, 0.8)
    return (_box((-r - 0.04, -r - 0.04, 0.0), (r + 0.04, r + 0.04, 0.04), 0.4),
            Part("cone", (-r, -r, 0.04), (r, r, h)))


def thing(rng: np.random.Generator, category: str, x: float, y: float, yaw: float,
          attribute: str | None, z: float = 0.0) -> Item:
    """An annotated thing of ``category`` at a pose."""
    if category in (CAR, TRUCK, BUS, TRAILER, CONSTRUCTION):
        parts = vehicle_parts(rng, category)
    elif category in (BICYCLE, MOTORCYCLE):
        parts = cycle_parts(rng, category)
    elif category in (ADULT, CHILD, WORKER):
        parts = pedestrian_parts(rng, category)
    elif category == BARRIER:
        parts = barrier_parts(rng)
    else:
        parts = cone_parts(rng)
    return Item(category, (x, y, z, yaw), parts, _color(rng, category), True, attribute)


# ---------------------------------------------------------------------------------------------
# Stuff: surfaces, buildings, vegetation and street furniture.

def tree(rng: np.random.Generator, x: float, y: float, z: float) -> Item:
    """A trunk and a round or conical crown."""
    trunk = rng.uniform(1.8, 3.0)
    r = rng.uniform(1.2, 2.6)
    top = trunk + rng.uniform(2.5, 5.5)
    crown = Part("cone" if rng.random() < 0.3 else "cylinder", (-r, -r, trunk), (r, r, top))
    t = rng.uniform(0.12, 0.2)
    return Item(VEGETATION, (x, y, z, rng.uniform(0, 2 * math.pi)),
                (Part("cylinder", (-t, -t, 0.0), (t, t, trunk + 0.3), 0.55), crown),
                _color(rng, VEGETATION))


def lamp_post(rng: np.random.Generator, x: float, side: float, y: float, z: float) -> Item:
    """A pole with an arm and a lamp head reaching over the road (``side`` = +1 or -1)."""
    h = rng.uniform(6.0, 8.0)
    arm = rng.uniform(1.2, 2.0)
    return Item(MANMADE, (x, y, z, 0.0),
                (Part("cylinder", (-0.09, -0.09, 0.0), (0.09, 0.09, h)),
                 _box((-0.05, min(0.0, -side * arm), h - 0.1), (0.05, max(0.0, -side * arm), h)),
                 _box((-0.15, -side * arm - 0.3, h - 0.25), (0.15, -side * arm + 0.3, h - 0.05), 1.2)),
                (120, 122, 128))


def sign(rng: np.random.Generator, x: float, y: float, z: float) -> Item:
    """A traffic sign: a thin pole and a plate."""
    h = rng.uniform(2.2, 2.8)
    return Item(MANMADE, (x, y, z, 0.0),
                (Part("cylinder", (-0.04, -0.04, 0.0), (0.04, 0.04, h)),
                 _box((-0.03, -0.35, h - 0.2), (0.03, 0.35, h + 0.5))),
                (220, 220, 225) if rng.random() < 0.5 else (40, 90, 200))


def building_row(rng: np.random.Generator, side: float, y0: float, x_lo: float, x_hi: float,
                 items: list[Item]) -> list[tuple[float, float]]:
    """Buildings along one side from x_lo to x_hi, facades at |y| = y0; returns the gaps."""
    gaps = []
    x = x_lo
    while x < x_hi:
        if rng.random() < 0.25:
            gap = rng.uniform(4.0, 12.0)
            gaps.append((x, x + gap))
            x += gap
            continue
        length, depth, height = rng.uniform(8.0, 30.0), rng.uniform(8.0, 16.0), rng.uniform(5.0, 24.0)
        lo_y, hi_y = (y0, y0 + depth) if side > 0 else (-y0 - depth, -y0)
        parts = [_box((0.0, lo_y, -GROUND_DROP), (length, hi_y, height))]
        if height > 8.0 and rng.random() < 0.5:  # a darker band of windows on the street facade
            face = lo_y - 0.02 if side > 0 else hi_y
            parts.append(_box((0.5, face, 3.0), (length - 0.5, face + 0.02, height - 1.0), 0.7))
        items.append(Item(MANMADE, (x, 0.0, 0.0, 0.0), tuple(parts), _color(rng, MANMADE)))
        x += length
    return gaps


def surfaces(length: float, road_half: float, walk_out: float,
             medians: list[tuple[float, float]]) -> list[Item]:
    """Terrain plane, road, sidewalks (with curbs) and median islands."""
    g = length / 2 + GROUND_MARGIN
    half = length / 2
    out = [Item(TERRAIN, (0.0, 0.0, 0.0, 0.0), (Part("quad", (-g, -g, -2 * GROUND_DROP), (g, g, -GROUND_DROP)),),
                PALETTE[TERRAIN][0]),
           Item(DRIVEABLE, (0.0, 0.0, 0.0, 0.0), (Part("quad", (-half, -road_half, -1.0), (half, road_half, 0.0)),),
                PALETTE[DRIVEABLE][0])]
    for side in (-1.0, 1.0):
        lo, hi = sorted((side * road_half, side * walk_out))
        out.append(Item(SIDEWALK, (0.0, 0.0, 0.0, 0.0), (_box((-half, lo, -GROUND_DROP), (half, hi, CURB)),),
                        PALETTE[SIDEWALK][0]))
    for x0, x1 in medians:
        out.append(Item(OTHER_FLAT, (0.0, 0.0, 0.0, 0.0),
                        (_box((x0, -MEDIAN_HALF, -GROUND_DROP), (x1, MEDIAN_HALF, CURB)),), PALETTE[OTHER_FLAT][0]))
    return out


# ---------------------------------------------------------------------------------------------
# Placement.

class Occupancy:
    """Street-frame footprints taken so far; a new item must keep ``margin`` off all of them."""

    def __init__(self, margin: float = 0.3):
        self.margin = margin
        self.boxes: list[tuple[np.ndarray, np.ndarray]] = []

    def try_add(self, item: Item, items: list[Item]) -> bool:
        """Add the item when its footprint is free; True when added."""
        lo, hi = item.footprint()
        for a, b in self.boxes:
            if (lo < b + self.margin).all() and (a - self.margin < hi).all():
                return False
        self.boxes.append((lo, hi))
        items.append(item)
        return True


def parked_vehicles(rng: np.random.Generator, street: Street, side: float, x_lo: float, x_hi: float,
                    occupancy: Occupancy) -> None:
    """Fill one parking lane from x_lo to x_hi with parked vehicles and gaps."""
    kinds = (CAR, TRUCK, BUS, TRAILER, CONSTRUCTION)
    weights = np.array([0.72, 0.1, 0.06, 0.06, 0.06])
    y = side * (street.road_half - PARKING / 2)
    x = x_lo
    while x < x_hi - 4.0:
        if rng.random() < 0.3:
            x += rng.uniform(3.0, 10.0)
            continue
        category = kinds[int(rng.choice(len(kinds), p=weights))]
        item = thing(rng, category, 0.0, y, (0.0 if side < 0 else math.pi) + rng.normal(0, 0.03), "vehicle.parked")
        lo, hi = item.local_bounds()
        if x + hi[0] - lo[0] > x_hi:
            break
        item = thing_at(item, x - lo[0], y)
        occupancy.try_add(item, street.items)
        x += hi[0] - lo[0] + rng.uniform(0.8, 2.5)


def thing_at(item: Item, x: float, y: float) -> Item:
    """The item moved to (x, y), keeping its height and yaw."""
    return Item(item.category, (x, y, item.pose[2], item.pose[3]), item.parts, item.color,
                item.annotated, item.attribute)


def sidewalk_things(rng: np.random.Generator, street: Street, occupancy: Occupancy) -> None:
    """Pedestrians, parked cycles, lamp posts, signs and bins on both sidewalks."""
    half = street.length / 2
    for side in (-1.0, 1.0):
        curb_y = side * (street.road_half + 0.45)
        for x in np.arange(-half + rng.uniform(2, 10), half - 2, rng.uniform(18.0, 30.0)):
            occupancy.try_add(lamp_post(rng, float(x), side, curb_y, CURB), street.items)
        for _ in range(int(rng.integers(1, 4))):
            occupancy.try_add(sign(rng, rng.uniform(-half, half), curb_y, CURB), street.items)
        for _ in range(int(rng.integers(1, 4))):
            r = rng.uniform(0.25, 0.35)
            bin_ = Item(STATIC_OTHER, (rng.uniform(-half, half), side * (street.walk_out - 0.5), CURB, 0.0),
                        (Part("cylinder", (-r, -r, 0.0), (r, r, rng.uniform(0.9, 1.2))),), _color(rng, STATIC_OTHER))
            occupancy.try_add(bin_, street.items)
        for _ in range(int(rng.integers(1, 4))):
            category = BICYCLE if rng.random() < 0.6 else MOTORCYCLE
            y = side * (street.road_half + 0.9)
            occupancy.try_add(thing(rng, category, rng.uniform(-half, half), y, rng.normal(0, 0.1),
                                    "cycle.without_rider", CURB), street.items)
        for _ in range(int(rng.integers(3, 9))):
            category = CHILD if rng.random() < 0.2 else ADULT
            y = side * rng.uniform(street.road_half + 0.8, street.walk_out - 0.4)
            occupancy.try_add(thing(rng, category, rng.uniform(-half, half), y, rng.uniform(0, 2 * math.pi),
                                    "pedestrian.standing", CURB), street.items)


def road_works(rng: np.random.Generator, street: Street, x0: float, x1: float, inner: float,
               occupancy: Occupancy) -> None:
    """Cones along the far travel lane, barriers in the far parking lane, a machine and a worker."""
    for x in np.arange(x0, x1, rng.uniform(2.0, 3.5)):
        occupancy.try_add(thing(rng, CONE, float(x), inner + 0.5, 0.0, None), street.items)
    y_barrier = street.road_half - PARKING / 2
    for x in np.arange(x0 + 1.0, x1, rng.uniform(2.2, 3.0)):
        occupancy.try_add(thing(rng, BARRIER, float(x), y_barrier, rng.normal(0, 0.05), None), street.items)
    y_mid = (inner + 0.5 + y_barrier) / 2
    occupancy.try_add(thing(rng, CONSTRUCTION, (x0 + x1) / 2, y_mid, math.pi + rng.normal(0, 0.1),
                            "vehicle.stopped"), street.items)
    occupancy.try_add(thing(rng, WORKER, rng.uniform(x0, x1), y_mid, rng.uniform(0, 2 * math.pi),
                            "pedestrian.standing"), street.items)


def greenery(rng: np.random.Generator, street: Street, verges: dict[float, float],
             gaps: dict[float, list[tuple[float, float]]], occupancy: Occupancy) -> None:
    """Trees and hedges in each side's verge and in the gaps between buildings."""
    half = street.length / 2 + 20.0
    for side, width in verges.items():
        y = side * (street.walk_out + width / 2)
        if width >= 1.5:
            for x in np.arange(-half, half, rng.uniform(7.0, 14.0)):
                occupancy.try_add(tree(rng, float(x) + rng.normal(0, 1.0), y, -GROUND_DROP), street.items)
        elif width >= 0.8:
            for x in np.arange(-half, half, 12.0):
                hedge = Item(VEGETATION, (float(x), y, -GROUND_DROP, 0.0),
                             (_box((0.0, -0.4, 0.0), (rng.uniform(3.0, 9.0), 0.4, rng.uniform(0.8, 1.5))),),
                             _color(rng, VEGETATION))
                occupancy.try_add(hedge, street.items)
        for g0, g1 in gaps[side]:
            y_gap = side * (street.walk_out + width + rng.uniform(3.0, 8.0))
            occupancy.try_add(tree(rng, (g0 + g1) / 2, y_gap, -GROUND_DROP), street.items)


def generate_street(rng: np.random.Generator, length: float = 160.0) -> Street:
    """A random street of ``length`` metres with everything on it (see the module docstring)."""
    road_half = rng.uniform(5.6, 8.0)
    walk_out = road_half + rng.uniform(2.5, 4.5)
    inner = MEDIAN_HALF if road_half >= 7.0 else 0.0
    street = Street(length, road_half, walk_out, -(inner + road_half - PARKING) / 2)
    half = length / 2
    medians = []
    if inner:
        x = -half
        while x < half:
            seg = rng.uniform(15.0, 40.0)
            medians.append((x, min(half, x + seg)))
            x += seg + rng.uniform(10.0, 30.0)
    street.items.extend(surfaces(length, road_half, walk_out, medians))
    occupancy = Occupancy()
    works = rng.uniform(-half + 20.0, half - 50.0)
    works_end = works + rng.uniform(15.0, 30.0)
    parked_vehicles(rng, street, -1.0, -half, half, occupancy)
    parked_vehicles(rng, street, 1.0, -half, works - 3.0, occupancy)
    parked_vehicles(rng, street, 1.0, works_end + 3.0, half, occupancy)
    road_works(rng, street, works, works_end, inner, occupancy)
    sidewalk_things(rng, street, occupancy)
    verges = {side: float(rng.choice([0.0, 1.0, rng.uniform(2.0, 6.0)])) for side in (-1.0, 1.0)}
    gaps = {side: building_row(rng, side, walk_out + verges[side], -half - 30.0, half + 30.0, street.items)
            for side in (-1.0, 1.0)}
    greenery(rng, street, verges, gaps, occupancy)
    return street
