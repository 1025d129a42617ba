"""Camera intrinsics and the scanning path: a loop around the room looking inward and down."""
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


def camera_path(room: Room, frames: int, rng: np.random.Generator) -> np.ndarray:
    """``frames`` camera-to-world poses f64[F,4,4] on one smooth loop around the room centre.

    The loop is an ellipse that keeps WALL_CLEARANCE from the walls at 1.2-1.6 m height; the
    camera looks across the room (through the centre, with some sway) pitched 15-35 degrees down.
    """
    lx, ly = room.size
    ax, ay = max(0.2, lx / 2 - WALL_CLEARANCE), max(0.2, ly / 2 - WALL_CLEARANCE)
    theta0 = rng.uniform(0, 2 * math.pi)
    base_h, base_pitch = rng.uniform(1.3, 1.5), math.radians(rng.uniform(20, 28))
    ph = rng.uniform(0, 2 * math.pi, 4)
    poses = np.empty((frames, 4, 4))
    for k in range(frames):
        th = theta0 + 2 * math.pi * k / frames
        pos = np.array([lx / 2 + ax * math.cos(th), ly / 2 + ay * math.sin(th),
                        base_h + 0.1 * math.sin(2 * th + ph[0])])
        yaw = th + math.pi + math.radians(25) * math.sin(3 * th + ph[1])
        pitch = base_pitch + math.radians(7) * math.sin(2 * th + ph[2])
        roll = math.radians(2) * math.sin(5 * th + ph[3])
        poses[k] = look_pose(pos, yaw, pitch, roll)
    return poses
