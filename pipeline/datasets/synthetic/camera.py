"""Camera intrinsics and the scanning path: handheld loops around the room at several heights."""
from __future__ import annotations

import math

import numpy as np

from pipeline.datasets.synthetic.rooms import WALL_CLEARANCE, Room

IMAGE_HW = (240, 320)


def intrinsics(rng: np.random.Generator, hw: tuple[int, int] = IMAGE_HW) -> np.ndarray:
    """3x3 pinhole matrix like ScanNet's depth camera at half resolution (fx ~ 288 px at 320 wide)."""
    h, w = hw
    f = rng.uniform(282.0, 294.0) * w / 320
    return np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera 4x4 of a level camera at ``eye`` looking at ``target`` (x right, y down)."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    rotation = np.stack([right, np.cross(forward, right), forward])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, -rotation @ eye
    return pose


def look_pose(position: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world 4x4 for a camera at ``position`` heading ``yaw`` (about +z, 0 = +x),
    ``pitch`` (positive looks down) and ``roll``; camera axes x right, y down, z forward."""
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    c, s = math.cos(roll), math.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    return pose


LOOPS = (  # (height range m, pitch range deg, positive looks down) of the scanning passes
    ((1.20, 1.30), (36.0, 44.0)),
    ((1.45, 1.60), (16.0, 24.0)),
    ((1.75, 1.90), (-6.0, 2.0)),
)


def camera_path(room: Room, frames: int, rng: np.random.Generator) -> np.ndarray:
    """``frames`` camera-to-world poses f64[F,4,4] of a handheld scan: one loop around the room
    per entry of LOOPS (low and steep for the floor and furniture tops, eye height, high and level
    for the upper walls), frames split evenly between them.

    Each loop is an ellipse that keeps WALL_CLEARANCE from the walls, walked in alternating
    directions; the camera looks across the room (through the centre, swaying left and right) with
    the small, smooth wobble of a hand-held sensor.
    """
    lx, ly = room.size
    ax, ay = max(0.2, lx / 2 - WALL_CLEARANCE), max(0.2, ly / 2 - WALL_CLEARANCE)
    poses = np.empty((frames, 4, 4))
    split = np.array_split(np.arange(frames), len(LOOPS))
    for loop, ((h_lo, h_hi), (p_lo, p_hi)) in enumerate(LOOPS):
        theta0, sign = rng.uniform(0, 2 * math.pi), (1.0 if loop % 2 == 0 else -1.0)
        base_h, base_pitch = rng.uniform(h_lo, h_hi), math.radians(rng.uniform(p_lo, p_hi))
        ph = rng.uniform(0, 2 * math.pi, 6)
        n = len(split[loop])
        for j, k in enumerate(split[loop]):
            th = theta0 + sign * 2 * math.pi * j / max(n, 1)
            radius = 1.0 + 0.08 * math.sin(3 * th + ph[4])
            pos = np.array([lx / 2 + radius * ax * math.cos(th), ly / 2 + radius * ay * math.sin(th),
                            base_h + 0.04 * math.sin(5 * th + ph[0])])
            yaw = th + math.pi + math.radians(30) * math.sin(3 * th + ph[1]) + math.radians(2) * math.sin(11 * th + ph[5])
            pitch = base_pitch + math.radians(5) * math.sin(2 * th + ph[2])
            roll = math.radians(3) * math.sin(7 * th + ph[3])
            poses[k] = look_pose(pos, yaw, pitch, roll)
    return poses
