"""The synthetic drive's sensor rig and motion: nuScenes-like calibrations, ego poses, timing.

Sensor layout after nuScenes' Renault Zoe (approximate values): LIDAR_TOP 1.84 m above the rear
axle, rotated -90 degrees about z (sensor x points right, y forward); six cameras about 1.5 m
high looking at yaws 0 (FRONT), -55 (FRONT_RIGHT), -110 (BACK_RIGHT), 180 (BACK), 110
(BACK_LEFT) and 55 (FRONT_LEFT) degrees, each with a small random mounting error; the back
camera is wider (focal length 0.64x). Native nuScenes images are 1600x900 with fx about 1266 px;
the synthetic cameras keep that field of view at a smaller size (intrinsics scaled).

Cameras fire when the spinning LiDAR sweeps past them, so a camera's timestamp differs from the
LiDAR keyframe's by up to about +-25 ms (plus jitter) and its ego pose is taken at its own time:
the projection chain lidar -> ego(t_lidar) -> global -> ego(t_cam) -> camera is exercised.
Rotations are pyquaternion Quaternions (w, x, y, z), as in nuScenes' tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyquaternion import Quaternion

NATIVE_HW = (900, 1600)
IMAGE_HW = (225, 400)  # the synthetic cameras' size: nuScenes' field of view at a quarter of 1600x900
# name: (yaw deg, x, y, z in the ego frame, fx at 1600 px wide, firing offset in ms)
CAMERAS: dict[str, tuple[float, float, float, float, float, float]] = {
    "CAM_FRONT": (0.0, 1.70, 0.02, 1.51, 1266.4, 0.0),
    "CAM_FRONT_RIGHT": (-55.0, 1.55, -0.49, 1.50, 1260.8, 8.0),
    "CAM_BACK_RIGHT": (-110.0, 1.03, -0.48, 1.57, 1256.7, 17.0),
    "CAM_BACK": (180.0, 0.03, 0.00, 1.57, 809.2, 25.0),
    "CAM_BACK_LEFT": (110.0, 1.04, 0.48, 1.57, 1256.7, -17.0),
    "CAM_FRONT_LEFT": (55.0, 1.52, 0.49, 1.51, 1272.6, -8.0),
}
LIDAR_TRANSLATION = (0.943, 0.0, 1.840)
LIDAR_YAW_DEG = -90.0
# Camera axes (x right, y down, z forward) in the ego frame (x forward, y left, z up) at yaw 0.
EGO_FROM_CAMERA_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Calibration:
    """A sensor's mounting in the ego frame (and its intrinsics when it is a camera)."""

    translation: tuple[float, float, float]
    rotation: Quaternion
    intrinsics: np.ndarray | None = None  # f64[3, 3]


def lidar_calibration() -> Calibration:
    """LIDAR_TOP on the roof, x to the right."""
    return Calibration(LIDAR_TRANSLATION, Quaternion(axis=[0.0, 0.0, 1.0], degrees=LIDAR_YAW_DEG))


def camera_calibration(name: str, rng: np.random.Generator, hw: tuple[int, int]) -> Calibration:
    """A camera's mounting with a random error of about half a degree, and its intrinsics at hw."""
    yaw, x, y, z, fx, _ = CAMERAS[name]
    error = (Quaternion(axis=[0.0, 0.0, 1.0], degrees=yaw + rng.normal(0.0, 0.5))
             * Quaternion(axis=[0.0, 1.0, 0.0], degrees=rng.normal(0.0, 0.5))
             * Quaternion(axis=[1.0, 0.0, 0.0], degrees=rng.normal(0.0, 0.3)))
    rotation = error * Quaternion(matrix=EGO_FROM_CAMERA_AXES)
    h, w = hw
    scale = w / NATIVE_HW[1]
    f = fx * scale * rng.uniform(0.995, 1.005)
    k = np.array([[f, 0.0, (w - 1) / 2 + rng.normal(0.0, 3.0) * scale],
                  [0.0, f, (h - 1) / 2 + rng.normal(0.0, 3.0) * scale],
                  [0.0, 0.0, 1.0]])
    return Calibration((x, y, z), rotation.normalised, k)


def camera_offset_us(name: str, rng: np.random.Generator) -> int:
    """Microseconds between a camera's exposure and its LiDAR keyframe."""
    return int(round(1000.0 * (CAMERAS[name][5] + rng.uniform(-3.0, 3.0))))


@dataclass(frozen=True)
class Trajectory:
    """The ego's path in the street frame: along +x at a varying speed, swaying in its lane."""

    x0: float
    speed: float
    accel: float
    lane_y: float
    sway: float
    period: float
    phase: float

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        """Street-frame position (x, y, 0) and heading of the ego at ``t`` seconds."""
        x = self.x0 + self.speed * t + 0.5 * self.accel * t * t
        w = 2 * math.pi / self.period
        y = self.lane_y + self.sway * math.sin(w * t + self.phase)
        dx = self.speed + self.accel * t
        dy = self.sway * w * math.cos(w * t + self.phase)
        return np.array([x, y, 0.0]), math.atan2(dy, dx)


def trajectory(rng: np.random.Generator, lane_y: float, duration: float) -> Trajectory:
    """A drive of ``duration`` seconds centred on the street's middle."""
    speed = rng.uniform(4.0, 9.0)
    accel = rng.uniform(-0.4, 0.4)
    travel = speed * duration + 0.5 * accel * duration ** 2
    return Trajectory(-travel / 2 + rng.uniform(-10.0, 10.0), speed, accel, lane_y, rng.uniform(0.0, 0.3),
                      rng.uniform(6.0, 12.0), rng.uniform(0.0, 2 * math.pi))

