"""Landmark engines: what the tracker calls to place landmarks on a face, with per-face state.

The tracker only knows ``start`` (a face box from the detector) and ``step`` (the previous estimate), so a
temporal model (AOHR's decay, 1DFormer's window) plugs in by keeping its memory in ``FaceEstimate.state``;
the per-frame ``LandmarkerEngine`` keeps none and re-crops from the previous landmarks instead. Both calls take
every face of a frame at once so the network runs one batch per frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from facetrack.data.transforms import CropSmoothing, box_from_landmarks
from facetrack.landmarker import Landmarker


@dataclass
class FaceEstimate:
    """One face on one frame: landmarks (N, 2) and confidences (N,) in original pixels, the box the crop
    came from, and the engine's opaque temporal ``state`` (None for per-frame engines)."""

    landmarks: np.ndarray
    confidences: np.ndarray
    box: np.ndarray
    state: Any = None

    @property
    def extent(self) -> np.ndarray:
        """Tight ``[x0, y0, x1, y1]`` around the landmarks (the next crop follows it, ``CropSmoothing``)."""
        return box_from_landmarks(self.landmarks)


class LandmarkEngine(Protocol):
    """Per-face landmark estimation with state; all faces of a frame in one call."""

    name: str
    scheme: str
    num_points: int

    def start(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[FaceEstimate]:
        """Fresh estimates (new temporal state) from detector boxes."""
        ...

    def step(self, image: np.ndarray, previous: Sequence[FaceEstimate]) -> list[FaceEstimate]:
        """Estimates on this frame from each face's estimate on the previous one."""
        ...

    def reset(self, estimate: FaceEstimate) -> FaceEstimate:
        """The same face with its temporal state dropped (re-initialisation)."""
        ...


class LandmarkerEngine:
    """The per-frame engine: a ``Landmarker`` run on detector boxes, then on landmark-extent boxes.

    ``start`` refines detector boxes ``landmarker.refine`` times (detector boxes are cut differently from the
    landmark-extent boxes models are trained on); ``step`` needs no refinement because the previous landmarks
    already give a training-like box, smoothed over time by ``crop_smoothing``.
    """

    def __init__(self, landmarker: Landmarker, crop_smoothing: CropSmoothing | None = None) -> None:
        self.landmarker = landmarker
        self.crop_smoothing = crop_smoothing or CropSmoothing()
        self.name = landmarker.name
        self.scheme = landmarker.scheme
        self.num_points = landmarker.num_points

    def _run(self, image: np.ndarray, boxes: np.ndarray, passes: int) -> list[FaceEstimate]:
        if len(boxes) == 0:
            return []
        with torch.inference_mode():
            points, conf = self.landmarker.predict_boxes(image, boxes)
            for _ in range(passes):
                boxes = box_from_landmarks(points)
                points, conf = self.landmarker.predict_boxes(image, boxes)
        return [FaceEstimate(p, c, b.copy()) for p, c, b in zip(points, conf, boxes)]

    def start(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[FaceEstimate]:
        boxes_np = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return self._run(image, boxes_np, self.landmarker.refine)

    def step(self, image: np.ndarray, previous: Sequence[FaceEstimate]) -> list[FaceEstimate]:
        if not previous:
            return []
        boxes = np.stack([self.crop_smoothing.next_box(p.box, p.extent) for p in previous])
        return self._run(image, boxes, 0)

    def reset(self, estimate: FaceEstimate) -> FaceEstimate:
        return FaceEstimate(estimate.landmarks, estimate.confidences, estimate.box, None)
