"""Fixtures of the tracking tests. ``fakes`` gives the test doubles: drawn 'faces' with exact boxes, a
landmark model that finds them in its crop, and a detector that finds them in the frame. The model sees only the crop the tracker cuts, so a tracker
that crops in the wrong place loses the face: geometry and control flow are tested, not accuracy."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import cv2
import numpy as np
import pytest
import torch

from facetrack.landmarker import Landmarker
from facetrack.models.base import LandmarkModel
from facetrack.data.transforms import face_roll
from facetrack.schemes import get_scheme
from facetrack.tracking.engine import LandmarkerEngine
from facetrack.tracking.plausibility import load_shape_check

N_POINTS = 68
# Landmark template in the unit square: the packaged shape check's mean face, spanning the blob's box exactly, so
# the doubles' shapes are face-like (the tracker's shape check passes them) and upright (roll 0).
def _upright_unit_face() -> np.ndarray:
    shape = load_shape_check().model.mean
    for _ in range(5):  # turn to roll 0 and stretch onto the unit square until both hold
        shape = (shape - shape.min(axis=0)) / np.ptp(shape, axis=0)
        a = np.radians(face_roll(shape, get_scheme("ibug68")))
        shape = shape @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]).T
    return (shape - shape.min(axis=0)) / np.ptp(shape, axis=0)


TEMPLATE = _upright_unit_face()
assert abs(face_roll(TEMPLATE, get_scheme("ibug68"))) < 1e-3
assert TEMPLATE.shape == (N_POINTS, 2)
BACKGROUND = 40


class BlobModel(LandmarkModel):
    """Finds the bright blob in a crop and puts the template on its box; confidence 0 without a blob."""

    arch = "test-blob"

    def __init__(self, input_size: int = 64) -> None:
        super().__init__(num_points=N_POINTS, scheme="ibug68", input_size=input_size)
        self.calls = 0
        self.batch_sizes: list[int] = []

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        self.batch_sizes.append(int(images.shape[0]))
        return {"images": images}

    def decode(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images = outputs["images"].numpy()
        coords, conf = [], []
        for img in images:
            mask = img.mean(axis=0) > 0.5
            ys, xs = np.nonzero(mask)
            if len(xs) < 20:
                c = (self.input_size - 1) / 2
                coords.append(np.full((N_POINTS, 2), c))
                conf.append(np.zeros(N_POINTS))
                continue
            lo = np.array([xs.min(), ys.min()], float)
            hi = np.array([xs.max(), ys.max()], float)
            coords.append(lo + TEMPLATE * (hi - lo))
            conf.append(np.ones(N_POINTS))
        return torch.tensor(np.array(coords)), torch.tensor(np.array(conf))


def blob_engine(refine: int = 1) -> LandmarkerEngine:
    return LandmarkerEngine(Landmarker(BlobModel(), crop_scale=1.25, refine=refine, runtime="torch"))


@dataclass
class Detections:
    boxes: np.ndarray
    scores: np.ndarray
    points5: np.ndarray | None = None


class BlobDetector:
    """Bright connected components, their boxes grown by 10% (detectors do not cut boxes like landmarks)."""

    name = "blob-detector"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame: np.ndarray) -> Detections:
        self.calls += 1
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        count, _, stats, _ = cv2.connectedComponentsWithStats((gray > 128).astype(np.uint8))
        boxes = []
        for x, y, w, h, area in stats[1:count]:
            if area >= 4:
                g = 0.05 * max(w, h)
                boxes.append([x - g, y - g, x + w - 1 + g, y + h - 1 + g])
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        return Detections(boxes, np.full(len(boxes), 0.99))


def draw_frame(size: tuple[int, int], blobs: Sequence[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    """A (H, W, 3) frame with white discs ``(cx, cy, radius)`` on a dark, slightly noisy background."""
    w, h = size
    rng = np.random.default_rng(seed)
    frame = np.clip(BACKGROUND + rng.normal(0, 3, (h, w, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    for cx, cy, r in blobs:
        cv2.circle(frame, (int(round(cx * 16)), int(round(cy * 16))), int(round(r * 16)), (230, 230, 230), -1,
                   cv2.LINE_AA, 4)
    return frame


def blob_box(cx: float, cy: float, r: float) -> np.ndarray:
    return np.array([cx - r, cy - r, cx + r, cy + r])


def moving_video(num_frames: int, size: tuple[int, int], paths: Sequence, radius: float = 30.0) -> list[np.ndarray]:
    """Frames where blob k is at ``paths[k](t)`` (a (cx, cy) or None when absent)."""
    frames = []
    for t in range(num_frames):
        blobs = [(*p(t), radius) for p in paths if p(t) is not None]
        frames.append(draw_frame(size, blobs, seed=t))
    return frames


@pytest.fixture
def fakes() -> SimpleNamespace:
    """The test doubles above (pytest's importlib mode does not let test files import helper modules)."""
    return SimpleNamespace(BlobModel=BlobModel, BlobDetector=BlobDetector, Detections=Detections,
                           blob_engine=blob_engine, draw_frame=draw_frame, blob_box=blob_box,
                           moving_video=moving_video, TEMPLATE=TEMPLATE)
