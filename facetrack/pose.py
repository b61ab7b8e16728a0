"""Head pose (yaw, pitch, roll in degrees) of any 68-point face: a generic 3D face fitted to the landmarks by PnP.

Why: every landmark model gives 2D points; a rigid 3D face (``facetrack.face3d68``) fitted to them with OpenCV's
``solvePnP`` turns them into the head's rotation for ~0.2 ms a face (measured on a loaded 2-core machine), whatever
the model. ATPN's pose head is trained on these fits of the annotated shapes (the project's data has no pose
labels).

Conventions (``rotation_from_euler``): camera frame x right, y down, z forward (OpenCV's). The head's rotation is
R = Rz(roll) Ry(yaw) Rx(pitch), applied to the generic face as stored (frontal, nose toward the camera):
- yaw > 0: the nose turns toward the image's left (the person turns to their right);
- pitch > 0: the nose turns down (the person looks down);
- roll > 0: the face turns clockwise in the image (so turning a crop by ``a`` degrees adds exactly ``a`` to roll).
Angles are relative to the line of sight through the face (``relative="view"``, the default): a face looking
straight into the lens reads (0, 0, 0) anywhere in the frame, as a face crop shows it (and as a crop network such
as ATPN can predict it); ``relative="camera"`` gives the rotation in the camera's axes instead.

Camera assumption: no intrinsics are known, so the focal length is ``focal_scale`` x the image's larger side
(1.0: a 53-degree horizontal field of view for a 4:3 frame, a webcam / phone-like lens) with the principal point at
the image centre and no distortion. What this and the generic face put on the angles is measured in
benchmarks/README.md ("Head pose"): the focal assumption, the fit residual and annotation noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facetrack.face3d68 import GENERIC_FACE_68

# Points fitted: brows, nose, eyes and the outer lip contour (17-59). The jaw line (0-16) is a silhouette that
# slides over the 3D face as it turns, and the inner lips (60-67) move with the mouth: neither is rigid.
POSE_POINTS = tuple(range(17, 60))
FOCAL_SCALE = 1.0
MIN_POINTS = 6
_POSE_INDEX = np.array(POSE_POINTS)


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels: focal length and principal point (no distortion)."""

    focal: float
    cx: float
    cy: float

    @classmethod
    def for_image(cls, width: int, height: int, focal_scale: float = FOCAL_SCALE) -> Camera:
        """The assumed camera of a ``width`` x ``height`` image: focal = focal_scale x the larger side, centred."""
        if width < 1 or height < 1 or not focal_scale > 0:
            raise ValueError(f"need a positive image size and focal_scale (got {width}x{height}, {focal_scale})")
        return cls(float(focal_scale) * max(width, height), 0.5 * (width - 1), 0.5 * (height - 1))

    def matrix(self) -> np.ndarray:
        return np.array([[self.focal, 0.0, self.cx], [0.0, self.focal, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class PoseFit:
    """One fit: ``pose`` (yaw, pitch, roll) degrees, OpenCV's ``rvec``/``tvec`` (camera frame, model units, mm),
    and the RMS reprojection residual in pixels of the fitted points."""

    pose: np.ndarray
    rvec: np.ndarray
    tvec: np.ndarray
    residual: float


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) Ry(yaw) Rx(pitch), angles in degrees (see the module docstring for the signs)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of R = Rz(roll) Ry(yaw) Rx(pitch); the inverse of ``rotation_from_euler``."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = math.atan2(r[2, 1], r[2, 2])
    roll = math.atan2(r[1, 0], r[0, 0])
    return np.degrees([yaw, pitch, roll])


def view_rotation(direction: np.ndarray) -> np.ndarray:
    """The smallest rotation taking the optical axis (0, 0, 1) to ``direction`` (the line of sight to a face)."""
    d = np.asarray(direction, dtype=np.float64).reshape(3)
    d = d / np.linalg.norm(d)
    axis = np.array([-d[1], d[0], 0.0])  # (0, 0, 1) x d
    s, c = math.hypot(d[0], d[1]), float(d[2])
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    return rodrigues(axis / s * math.atan2(s, c))


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (numpy: cheaper than a cv2 call for one 3-vector)."""
    r = np.asarray(rvec, dtype=np.float64).reshape(3)
    angle = float(np.linalg.norm(r))
    if angle < 1e-12:
        return np.eye(3)
    k = r / angle
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * (cross @ cross)


def fit_pose(landmarks: np.ndarray, camera: Camera, relative: str = "view") -> PoseFit | None:
    """Fit the generic face to 68 landmarks (pixels); None when fewer than ``MIN_POINTS`` fitted points are finite.

    SQPnP (Terzakis & Lourakis 2020): globally optimal, so no initial guess (and no solution flipping between two
    branches from frame to frame); the solver itself takes ~35 us a face on this project's CPU."""
    if relative not in ("view", "camera"):
        raise ValueError(f"relative must be 'view' or 'camera', got {relative!r}")
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(points) != len(GENERIC_FACE_68):
        raise ValueError(f"head pose needs {len(GENERIC_FACE_68)} iBUG-68 landmarks, got {len(points)}")
    idx = _POSE_INDEX[np.isfinite(points[_POSE_INDEX]).all(axis=1)]
    if len(idx) < MIN_POINTS:
        return None
    obj, img = GENERIC_FACE_68[idx], points[idx]
    try:
        ok, rvec, tvec = cv2.solvePnP(obj, img, camera.matrix(), None, flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        return None
    if not ok or not (np.isfinite(rvec).all() and np.isfinite(tvec).all()) or tvec[2, 0] <= 0:
        return None
    rotation = rodrigues(rvec)
    cam = obj @ rotation.T + tvec.reshape(1, 3)
    projected = camera.focal * cam[:, :2] / cam[:, 2:3] + np.array([camera.cx, camera.cy])
    residual = float(np.sqrt(np.mean(np.sum((projected - img) ** 2, axis=1))))
    if relative == "view":
        rotation = view_rotation(tvec.reshape(3)).T @ rotation
    return PoseFit(euler_from_rotation(rotation), rvec.reshape(3), tvec.reshape(3), residual)


def head_pose(landmarks: np.ndarray, image_size: tuple[int, int], focal_scale: float = FOCAL_SCALE,
              relative: str = "view") -> np.ndarray:
    """(yaw, pitch, roll) degrees of one face's 68 landmarks in a (width, height) image; NaN when it cannot fit."""
    fit = fit_pose(landmarks, Camera.for_image(image_size[0], image_size[1], focal_scale), relative=relative)
    return np.full(3, np.nan) if fit is None else fit.pose


def with_roll(pose: np.ndarray, turn_deg: float) -> np.ndarray:
    """A pose read in a crop turned by ``turn_deg`` (``crop_matrix``'s rotation) expressed in the image: roll
    changes by exactly the crop's turn (R = Rz(roll) ...), yaw and pitch do not."""
    out = np.asarray(pose, dtype=np.float64).copy()
    out[2] = (out[2] + turn_deg + 180.0) % 360.0 - 180.0
    return out


def pose_axes(pose: np.ndarray, origin: np.ndarray, length: float) -> np.ndarray:
    """End points (3, 2) of the head's x (to its left ear, image right when frontal), y (down) and z (out of the
    nose) axes drawn from ``origin`` with ``length`` pixels, in orthographic projection (for ``--render``)."""
    rotation = rotation_from_euler(*np.asarray(pose, dtype=np.float64).reshape(3))
    axes = rotation @ np.diag([1.0, 1.0, -1.0])  # columns: x, y, and the nose direction (-z of the model)
    return np.asarray(origin, dtype=np.float64).reshape(1, 2) + length * axes[:2].T


def render_face(pose: np.ndarray, camera: Camera, distance: float, offset: tuple[float, float] = (0.0, 0.0),
                relative: str = "view") -> np.ndarray:
    """The generic face's 68 points (pixels) seen at ``pose`` from ``distance`` model units, its centre moved by
    ``offset`` units across the line of sight: synthetic landmarks with a known pose (tests, label studies)."""
    position = np.array([offset[0], offset[1], distance], dtype=np.float64)
    rotation = rotation_from_euler(*np.asarray(pose, dtype=np.float64).reshape(3))
    if relative == "view":
        rotation = view_rotation(position) @ rotation
    points = GENERIC_FACE_68 @ rotation.T + position
    return np.stack([camera.focal * points[:, 0] / points[:, 2] + camera.cx,
                     camera.focal * points[:, 1] / points[:, 2] + camera.cy], axis=1)


def face_pose(landmarks: np.ndarray, image_size: tuple[int, int], model_pose: np.ndarray | None = None
              ) -> np.ndarray | None:
    """A face's (yaw, pitch, roll) degrees for the outputs: the model's own estimate when it has one (ATPN's pose
    head), else the generic face's fit to its 68 landmarks; None for other schemes (NaN where a fit fails)."""
    if model_pose is not None:
        return np.asarray(model_pose, dtype=np.float64).reshape(3)
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    return head_pose(points, image_size) if len(points) == len(GENERIC_FACE_68) else None
