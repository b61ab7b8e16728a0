"""The landmark engine for temporal models (1DFormer, the AOHR tracker): per-face state through the tracker.

Geometry is the per-frame engine's: frame t is cropped from the landmark extent of t - 1 with the model's crop
policy (``Landmarker.crops``); predictions, less the card's calibration offsets (``Landmarker.calibrated``), are
mapped back with the inverse crop. The difference is memory: each face's ``FaceEstimate.state`` holds its ``TemporalState`` (O(W) tensors), all faces of a frame run as one batch, and
a face started or re-initialised from a detector box starts with an empty history.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from facetrack.data.transforms import CropSmoothing, box_from_landmarks
from facetrack.errors import ModelError
from facetrack.landmarker import Landmarker
from facetrack.models.temporal.base import TemporalLandmarkModel, TemporalState
from facetrack.tracking.engine import FaceEstimate, LandmarkerEngine, LandmarkEngine


class TemporalEngine:
    """Runs ``model.step`` on every tracked face with that face's state.

    The model needs ``init_state(batch)``, ``step(images, state) -> (outputs, state)`` and ``decode(outputs)``
    (a ``TemporalLandmarkModel``). ``start`` first re-crops ``landmarker.refine`` times per frame (no history:
    detector boxes are cut unlike training crops), then takes the first temporal step from the refined box.
    """

    def __init__(self, landmarker: Landmarker, crop_smoothing: CropSmoothing | None = None) -> None:
        model = landmarker.model
        if not all(callable(getattr(model, name, None)) for name in ("init_state", "step", "decode")):
            raise TypeError(f"{type(model).__name__} is not a temporal model (needs init_state, step and decode)")
        self.landmarker = landmarker
        self.crop_smoothing = crop_smoothing or CropSmoothing()
        self.model: Any = model
        self.name = landmarker.name
        self.scheme = landmarker.scheme
        self.num_points = landmarker.num_points

    def _run(self, image: np.ndarray, boxes: np.ndarray, states: Sequence[TemporalState | None]) -> list[FaceEstimate]:
        if len(boxes) == 0:
            return []
        tensor, matrices = self.landmarker.crops(image, boxes)
        fresh = [s if s is not None else self.model.init_state(1) for s in states]
        state = TemporalState.cat([s.to(tensor.device) for s in fresh])
        with torch.inference_mode():
            outputs, state = self.model.step(tensor, state)
            coords, conf = self.model.decode(outputs)
        points = self.landmarker.to_image(self.landmarker.calibrated(coords), matrices)
        conf_np = conf.cpu().numpy().astype(np.float64)
        return [FaceEstimate(p, c, b.copy(), s) for p, c, b, s in zip(points, conf_np, boxes, state.split())]

    def start(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[FaceEstimate]:
        boxes_np = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes_np) == 0:
            return []
        with torch.inference_mode():
            for _ in range(self.landmarker.refine):
                points, _ = self.landmarker.predict_boxes(image, boxes_np)
                boxes_np = box_from_landmarks(points)
        return self._run(image, boxes_np, [None] * len(boxes_np))

    def step(self, image: np.ndarray, previous: Sequence[FaceEstimate]) -> list[FaceEstimate]:
        if not previous:
            return []
        boxes = np.stack([self.crop_smoothing.next_box(p.box, p.extent) for p in previous])
        return self._run(image, boxes, [p.state for p in previous])

    def reset(self, estimate: FaceEstimate) -> FaceEstimate:
        return FaceEstimate(estimate.landmarks, estimate.confidences, estimate.box, None)


def engine_for(landmarker: Landmarker, crop_smoothing: CropSmoothing | None = None) -> LandmarkEngine:
    """The engine a model needs: ``TemporalEngine`` for temporal models, ``LandmarkerEngine`` for the rest."""
    if isinstance(landmarker.model, TemporalLandmarkModel):
        if landmarker.flip:
            raise ModelError(f"{landmarker.name} is a temporal model: test-time flip is for per-frame models "
                             "(a mirrored crop would need its own recurrent state)")
        return TemporalEngine(landmarker, crop_smoothing)
    return LandmarkerEngine(landmarker, crop_smoothing)
