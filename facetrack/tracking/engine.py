"""Landmark engines: what the tracker calls to place landmarks on a face, with per-face state.

The tracker only knows ``start`` (face boxes from the detector, with its five points when it gives them) and
``step`` (the previous estimate), so a temporal model (AOHR's decay, 1DFormer's window) plugs in by keeping its
memory in ``FaceEstimate.state``; the per-frame ``LandmarkerEngine`` keeps none. Both calls take every face of a
frame at once so the network runs one batch per frame.

Geometry is shared (``CropEngine``): every crop is turned by the face's roll so the model sees an upright face.
On a fresh detection the roll comes from the detector's five points, checked against the other eighth turns
when the landmarks come out unsure (detectors name the points of a face lying sideways or upside down
wrongly); each re-crop pass and each tracked frame takes it from the landmarks just predicted, smoothed over
time like the crop box (``CropSmoothing``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from facetrack.data.shape_model import similarity_fit
from facetrack.data.transforms import (CropSmoothing, apply_affine, box_from_landmarks, face_roll, five_points,
                                       points5_residual, roll_from_points5, upright_box, wrap_degrees)
from facetrack.errors import ModelError
from facetrack.landmarker import Landmarker
from facetrack.models.temporal.base import TemporalLandmarkModel, TemporalState
from facetrack.schemes import get_scheme

# A fresh face whose first landmarks have a mean confidence below this is also tried at the other eighth turns
# (``CropEngine._orient``; benchmarks/README.md, "Rolled faces").
ORIENTATION_CHECK = 0.6
# Detector five points further than this from every similarity of an upright face (``points5_residual``) are not
# trusted to place the first crop, and the face's turn is checked.
POINTS5_TRUST = 0.22


@dataclass
class FaceEstimate:
    """One face on one frame: landmarks (N, 2) and confidences (N,) in original pixels, the box the crop came
    from (its upright box, see ``upright_box``), the crop's rotation ``roll`` in degrees, and the engine's
    opaque temporal ``state`` (None for per-frame engines)."""

    landmarks: np.ndarray
    confidences: np.ndarray
    box: np.ndarray
    state: Any = None
    roll: float = 0.0
    # a model's outputs besides the landmarks, in frame terms: ATPN's "pose" (yaw, pitch, roll degrees) and "face"
    aux: dict[str, Any] | None = None

    @property
    def extent(self) -> np.ndarray:
        """Tight axis-aligned ``[x0, y0, x1, y1]`` around the landmarks (frame geometry: overlaps, ids)."""
        return box_from_landmarks(self.landmarks)


class LandmarkEngine(Protocol):
    """Per-face landmark estimation with state; all faces of a frame in one call."""

    name: str
    scheme: str
    num_points: int

    def start(self, image: np.ndarray, boxes: Sequence[np.ndarray],
              points5: np.ndarray | None = None) -> list[FaceEstimate]:
        """Fresh estimates (new temporal state) from detector boxes (and their (K, 5, 2) points, if any)."""
        ...

    def step(self, image: np.ndarray, previous: Sequence[FaceEstimate]) -> list[FaceEstimate]:
        """Estimates on this frame from each face's estimate on the previous one."""
        ...

    def reset(self, estimate: FaceEstimate) -> FaceEstimate:
        """The same face with its temporal state dropped (re-initialisation)."""
        ...


class CropEngine:
    """What both engines share: roll-aware crops, the re-crop passes on a fresh detection, the crop policy of
    tracked frames. Subclasses implement ``_predict`` (one batched network call on the final crops).

    ``start`` makes ``landmarker.refine`` per-frame passes, each re-cropping around the landmarks of the last
    (detector boxes are cut differently from the landmark-extent boxes models are trained on), then the engine's
    own pass; ``step`` crops around the previous landmarks, smoothed over time by ``crop_smoothing``.
    """

    def __init__(self, landmarker: Landmarker, crop_smoothing: CropSmoothing | None = None,
                 orientation_check: float = ORIENTATION_CHECK) -> None:
        self.landmarker = landmarker
        self.crop_smoothing = crop_smoothing or CropSmoothing()
        self.orientation_check = float(orientation_check)
        self.name = landmarker.name
        self.scheme = landmarker.scheme
        self.num_points = landmarker.num_points
        self._scheme = get_scheme(landmarker.scheme)
        self._rolls = self._scheme.five is not None  # schemes without reference points are cropped unturned

    def _predict(self, image: np.ndarray, boxes: np.ndarray, rolls: np.ndarray,
                 states: Sequence[Any]) -> list[FaceEstimate]:
        raise NotImplementedError

    def _roll(self, points: np.ndarray) -> float:
        return face_roll(points, self._scheme) if self._rolls else 0.0

    def _recrop(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rolls = np.array([self._roll(p) for p in points])
        return np.stack([_crop_box(p, r) for p, r in zip(points, rolls)]), rolls

    def _boxes_from_points5(self, points5: np.ndarray, rolls: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """First crop boxes cut in the face's own frame: the mean face placed on the detector's five points (a
        similarity fit), boxed upright at ``rolls``. The detector's own box runs along the image axes, so for a face
        rolled by 30-60 degrees it is a much larger, shifted square than the face's upright box."""
        mean = _mean_face(self._scheme.name)
        if mean is None:
            return boxes
        five = five_points(mean, self._scheme)
        out = boxes.copy()
        for i, (p5, roll) in enumerate(zip(points5, rolls)):
            if np.isfinite(p5).all() and np.ptp(p5, axis=0).max() > 0:
                out[i] = upright_box(apply_affine(mean, similarity_fit(five, p5)), roll)
        return out

    def _orient(self, image: np.ndarray, boxes: np.ndarray, rolls: np.ndarray, detector_boxes: np.ndarray,
                doubtful: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First pass at the detector's roll. An unsure face is also tried on the detector's own box (which does not
        depend on reading its points right) at that roll and the seven other eighth turns; the two most confident
        tries are each re-cropped once at the roll of their own landmarks, and the more confident after that wins
        (a face upside down can look confident at first; the wrong turn does not survive a re-crop). ``doubtful`` faces
        (detector points no similarity of a face explains) are checked whatever their first confidence."""
        points, conf = self.landmarker.predict_boxes(image, boxes, rolls)
        unsure = np.flatnonzero((np.nanmean(conf, axis=1) < self.orientation_check) | doubtful) if self._rolls else []
        turns = np.arange(0.0, 360.0, 45.0)
        for i in unsure:
            tried_rolls = wrap_degrees(rolls[i] + turns)
            tried, tried_conf = self.landmarker.predict_boxes(
                image, np.repeat(detector_boxes[i:i + 1], len(turns), 0), tried_rolls)
            options = np.concatenate([points[i:i + 1], tried])
            scores = np.nanmean(np.concatenate([conf[i:i + 1], tried_conf]), axis=1)
            best = np.argsort(-scores)[:2]
            again_boxes, again_rolls = self._recrop(options[best])
            again, again_conf = self.landmarker.predict_boxes(image, again_boxes, again_rolls)
            k = int(np.argmax(np.nanmean(again_conf, axis=1)))
            points[i], conf[i] = again[k], again_conf[k]
        return points, conf

    def start(self, image: np.ndarray, boxes: Sequence[np.ndarray],
              points5: np.ndarray | None = None) -> list[FaceEstimate]:
        boxes_np = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes_np) == 0:
            return []
        rolls = np.zeros(len(boxes_np))
        if points5 is not None and self._rolls:
            points5 = np.asarray(points5, dtype=np.float64).reshape(-1, 5, 2)
            rolls = np.array([roll_from_points5(p) for p in points5])
            trusted = np.array([points5_residual(p) <= POINTS5_TRUST for p in points5])
            first = np.where(trusted[:, None], self._boxes_from_points5(points5, rolls, boxes_np), boxes_np)
        else:
            first, trusted = boxes_np, np.ones(len(boxes_np), dtype=bool)
        crop_boxes = first
        with torch.inference_mode():
            for k in range(self.landmarker.refine):
                if k == 0:
                    points, _ = self._orient(image, first, rolls, boxes_np, ~trusted)
                else:
                    points, _ = self.landmarker.predict_boxes(image, crop_boxes, rolls)
                crop_boxes, rolls = self._recrop(points)
        return self._predict(image, crop_boxes, rolls, [None] * len(crop_boxes))

    def step(self, image: np.ndarray, previous: Sequence[FaceEstimate]) -> list[FaceEstimate]:
        if not previous:
            return []
        smoothing = self.crop_smoothing
        rolls = np.array([smoothing.next_roll(p.roll, self._roll(p.landmarks)) if self._rolls else 0.0
                          for p in previous])
        boxes = np.stack([smoothing.next_box(p.box, _crop_box(p.landmarks, r)) for p, r in zip(previous, rolls)])
        return self._predict(image, boxes, rolls, [p.state for p in previous])

    def reset(self, estimate: FaceEstimate) -> FaceEstimate:
        return FaceEstimate(estimate.landmarks, estimate.confidences, estimate.box, None, estimate.roll)


class LandmarkerEngine(CropEngine):
    """The per-frame engine: a ``Landmarker`` on each frame's crops, no memory."""

    def _predict(self, image: np.ndarray, boxes: np.ndarray, rolls: np.ndarray,
                 states: Sequence[Any]) -> list[FaceEstimate]:
        if len(boxes) == 0:
            return []
        with torch.inference_mode():
            points, conf = self.landmarker.predict_boxes(image, boxes, rolls)
        extra = getattr(self.landmarker, "aux", None)
        aux = _face_aux(extra, rolls) if extra else [None] * len(boxes)
        return [FaceEstimate(p, c, b.copy(), None, float(r), a)
                for p, c, b, r, a in zip(points, conf, boxes, rolls, aux)]


def _face_aux(aux: dict[str, np.ndarray], rolls: np.ndarray) -> list[dict[str, Any]]:
    """Per face, a model's extra outputs for its crop, the pose turned from the crop's frame to the frame's."""
    from facetrack.pose import with_roll

    out: list[dict[str, Any]] = [{} for _ in rolls]
    for key, values in aux.items():
        for i, roll in enumerate(rolls):
            out[i][key] = with_roll(values[i], float(roll)) if key == "pose" else values[i]
    return out


class TemporalEngine(CropEngine):
    """Runs ``model.step`` on every tracked face with that face's state.

    The model needs ``init_state(batch)``, ``step(images, state) -> (outputs, state)`` and ``decode(outputs)``
    (a ``TemporalLandmarkModel``); each face's ``FaceEstimate.state`` holds its ``TemporalState`` (O(W) tensors),
    all faces of a frame run as one batch, and a face started or re-initialised from a detector box starts with an
    empty history. Predictions, less the card's calibration offsets, map back through the inverse crop.
    """

    def __init__(self, landmarker: Landmarker, crop_smoothing: CropSmoothing | None = None,
                 orientation_check: float = ORIENTATION_CHECK) -> None:
        model = landmarker.model
        if not all(callable(getattr(model, name, None)) for name in ("init_state", "step", "decode")):
            raise TypeError(f"{type(model).__name__} is not a temporal model (needs init_state, step and decode)")
        super().__init__(landmarker, crop_smoothing, orientation_check)
        self.model: Any = model

    def _predict(self, image: np.ndarray, boxes: np.ndarray, rolls: np.ndarray,
                 states: Sequence[Any]) -> list[FaceEstimate]:
        if len(boxes) == 0:
            return []
        tensor, matrices = self.landmarker.crops(image, boxes, rolls)
        fresh = [s if s is not None else self.model.init_state(1) for s in states]
        # one face (the usual case) needs no batching of states: no concatenation now, no split after (0.2 ms)
        state = (fresh[0].to(tensor.device) if len(fresh) == 1
                 else TemporalState.cat([s.to(tensor.device) for s in fresh]))
        with torch.inference_mode():
            outputs, state = self.landmarker.predictor.step(tensor, state)
            # an onnxruntime step graph decodes in the graph; PyTorch's step leaves it to the model
            coords, conf = ((outputs["decoded_coords"], outputs["decoded_conf"]) if "decoded_coords" in outputs
                            else self.model.decode(outputs))
        points = self.landmarker.to_image(self.landmarker.calibrated(coords), matrices)
        conf_np = conf.cpu().numpy().astype(np.float64)
        per_face = [state] if len(boxes) == 1 else state.split()
        return [FaceEstimate(p, c, b.copy(), s, float(r))
                for p, c, b, s, r in zip(points, conf_np, boxes, per_face, rolls)]


MIN_CROP_SIDE = 2.0  # px: a shape collapsed to a point (a failed model) still gives a crop, which the checks reject


def _crop_box(points: np.ndarray, roll: float) -> np.ndarray:
    """The next crop's box: the landmarks' upright box, at least ``MIN_CROP_SIDE`` wide and high, so that a collapsed
    shape leaves a face to be judged (and lost) by the face checks instead of a crop that cannot be cut."""
    box = upright_box(points, roll)
    centre, half = 0.5 * (box[:2] + box[2:]), np.maximum(0.5 * (box[2:] - box[:2]), 0.5 * MIN_CROP_SIDE)
    return np.concatenate([centre - half, centre + half])


@lru_cache(maxsize=None)
def _mean_face(scheme: str) -> np.ndarray | None:
    """The packaged shape model's mean face (model frame) for iBUG-68, None for other schemes or without it."""
    from facetrack.tracking.plausibility import load_shape_check

    check = load_shape_check() if scheme == "ibug68" else None
    return None if check is None else check.model.mean


def engine_for(landmarker: Landmarker, crop_smoothing: CropSmoothing | None = None) -> LandmarkEngine:
    """The engine a model needs: ``TemporalEngine`` for temporal models, ``LandmarkerEngine`` for the rest."""
    if isinstance(landmarker.model, TemporalLandmarkModel) or callable(getattr(landmarker.model, "init_state", None)):
        if landmarker.flip:
            raise ModelError(f"{landmarker.name} is a temporal model: test-time flip is for per-frame models "
                             "(a mirrored crop would need its own recurrent state)")
        return TemporalEngine(landmarker, crop_smoothing)
    return LandmarkerEngine(landmarker, crop_smoothing)
