"""The two-line Python interface: ``facetrack.Tracker`` for videos and ``facetrack.Detector`` for still images.

    tracker = facetrack.Tracker(model="aohr-lite-128", max_faces=2)
    for result in tracker.track("video.mp4"):          # or a folder of frames, a camera index, an iterable
        for face in result.faces:                         # empty on frames without a face
            face.track_id, face.box, face.score, face.landmarks, face.confidences

Every result has the same shape whatever the options (no return types that change with flags), and each
face carries its ``track_id`` so landmark sets can always be matched to faces across frames.
"""
from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.errors import ModelError
from facetrack.landmarker import REFINE
from facetrack.tracking.pipeline import FaceTracker, TrackedFace, TrackerConfig, TrackerStats

logger = logging.getLogger(__name__)


__all__ = ["Detector", "Face", "FrameResult", "TrackedFace", "Tracker"]


@dataclass
class FrameResult:
    """The faces on one frame. ``timings`` are milliseconds spent on decode / detection / landmarks / total;
    ``image`` is the frame itself only when ``track(..., with_frames=True)`` asked for it."""

    index: int
    time_s: float
    faces: list[TrackedFace]
    timings: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = None


@dataclass
class Face:
    """One face of a still image: detector box and score, landmarks (N, 2) pixels, confidences (N,)."""

    box: np.ndarray
    score: float | None
    landmarks: np.ndarray
    confidences: np.ndarray


def resolve_engine(model: Any = None, refine: int = REFINE, device: str = "cpu", default: str = "DEFAULT_MODEL",
                   runtime: str = "auto", flip: bool = False, calibrate: bool = True) -> Any:
    """A landmark engine from an engine, a ``Landmarker``, a ``LandmarkModel``, a weights name or path.

    ``None`` means the packaged model named by ``facetrack.models.<default>`` (``DEFAULT_MODEL`` for stills,
    ``DEFAULT_TRACKER`` for video). ``runtime``, ``flip`` (test-time flip averaging) and ``calibrate`` (the card's
    offsets) are the Landmarker's.
    """
    from facetrack.landmarker import Landmarker
    from facetrack.models.base import LandmarkModel
    from facetrack.tracking.temporal_engine import engine_for

    if model is not None and hasattr(model, "start") and hasattr(model, "step"):
        return model
    if isinstance(model, Landmarker):
        return engine_for(model)
    if model is None:
        import facetrack.models as models

        model = getattr(models, default, None)
        if model is None:
            raise ModelError("no default landmark model is packaged yet: pass model=<weights name or path>")
    if isinstance(model, (LandmarkModel, str, Path)):
        return engine_for(Landmarker(model, refine=refine, device=device, runtime=runtime, flip=flip,
                                     calibrate=calibrate))
    raise ModelError(f"cannot use {type(model).__name__} as a landmark model")


def resolve_detector(detector: Any = None) -> Any:
    """A face detector from an object with ``detect(frame)``, a registered detector name, or the default."""
    if detector is not None and hasattr(detector, "detect"):
        return detector
    if detector is not None and not isinstance(detector, str):
        raise ModelError(f"cannot use {type(detector).__name__} as a face detector (it has no detect method)")
    try:
        from facetrack.tracking.detectors import DEFAULT_DETECTOR, build_detector
    except ImportError as exc:
        raise ModelError(f"face detectors are not available ({exc}); pass detector=<object with detect()>") from exc
    return build_detector(detector or DEFAULT_DETECTOR)


def resolve_validator(validator: Any = "default") -> Any:
    """The face validator: ``"default"`` (packaged weights, warning and confidence-only when absent), a
    weights path, an object with ``score(image, landmarks)``, or None (landmark confidences only)."""
    from facetrack.tracking.validator import load_validator

    if validator is None or hasattr(validator, "score"):
        return validator
    if validator == "default":
        found = load_validator()
        if found is None:
            warnings.warn("face validator weights are missing: tracks are validated by landmark confidences only",
                          RuntimeWarning, stacklevel=3)
        return found
    return load_validator(validator)


def iterate_frames(source: Any) -> tuple[Iterator[tuple[int, float, np.ndarray]], Any]:
    """``(frames, opened)``: (index, time_s, BGR uint8 frame) from a path, camera index, ``FrameSource``, or an
    iterable of frames or of (index, time_s, frame) tuples; ``opened`` is the FrameSource to close, if any."""
    from facetrack.data.sample import to_bgr8
    from facetrack.io.video import DEFAULT_FPS, FrameSource, open_source

    if isinstance(source, (str, Path, int)):
        opened = open_source(source)
        return iter(opened), opened
    if isinstance(source, FrameSource):
        return iter(source), None
    if isinstance(source, np.ndarray) and source.ndim in (2, 3) and source.dtype != object:
        raise TypeError("track() takes a video; for one image use facetrack.Detector")

    def frames(items: Iterable[Any]) -> Iterator[tuple[int, float, np.ndarray]]:
        for count, item in enumerate(items):
            if isinstance(item, tuple) and len(item) == 3:
                index, time_s, image = item
            else:
                index, time_s, image = count, count / DEFAULT_FPS, item
            yield int(index), float(time_s), to_bgr8(np.asarray(image))

    return frames(source), None


class Tracker:
    """Landmarks of every face on every frame: detect, track from the previous landmarks, validate, re-detect.

    ``model``: weights name/path, ``LandmarkModel``, ``Landmarker`` or engine (default: the packaged model);
    ``detector``: detector name or object with ``detect``; ``detect_every``: also detect every N frames to pick
    up faces that enter (0 = only when a face is lost or none is tracked); ``smoothing``: an output filter
    (``facetrack.tracking.smoothing``): True or "aligned" for the shape-aligned average, "one-euro", or a spec
    dict with its parameters; default "aligned", None or False: the model's raw output; ``flip``: test-time
    flip averaging (per-frame models only).
    Remaining keywords go to ``TrackerConfig``.
    """

    def __init__(self, model: Any = None, detector: Any = None, detect_every: int = 0, max_faces: int = 1,
                 smoothing: bool | str | dict[str, Any] | None = "aligned", validator: Any = "default",
                 refine: int = REFINE, device: str = "cpu", runtime: str = "auto", flip: bool = False,
                 **config: Any) -> None:
        self.config = TrackerConfig(detect_every=detect_every, max_faces=max_faces,
                                    smoothing=smoothing, **config)
        self.engine = resolve_engine(model, refine=refine, device=device, default="DEFAULT_TRACKER", runtime=runtime,
                                     flip=flip)
        self.detector = resolve_detector(detector)
        self.validator = resolve_validator(validator)
        self.stats = TrackerStats()
        self.truncated = False

    @property
    def model_name(self) -> str:
        return str(getattr(self.engine, "name", type(self.engine).__name__))

    @property
    def detector_name(self) -> str:
        return str(getattr(self.detector, "name", type(self.detector).__name__))

    @property
    def num_points(self) -> int:
        return int(self.engine.num_points)

    def track(self, source: Any, with_frames: bool = False) -> Iterator[FrameResult]:
        """One ``FrameResult`` per frame of ``source``, streamed (no frame is kept after it is yielded,
        unless ``with_frames`` puts it on the result). ``self.stats`` counts the run as it goes."""
        tracker = FaceTracker(self.engine, self.detector, self.validator, self.config)
        self.stats = tracker.stats
        self.truncated = False
        frames, opened = iterate_frames(source)
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    index, time_s, image = next(frames)
                except StopIteration:
                    break
                decode = 1000.0 * (time.perf_counter() - t0)
                faces = tracker.update(image, time_s)
                timings = {"decode": decode, **tracker.timings}
                timings["total"] = 1000.0 * (time.perf_counter() - t0)
                yield FrameResult(index, time_s, faces, timings, image if with_frames else None)
                del image
        finally:
            if opened is not None:
                self.truncated = bool(getattr(opened, "truncated", False))
                opened.close()


class Detector:
    """Landmarks of every face in a still image: ``Detector(model=...)(image) -> list[Face]``.

    ``image`` is a BGR array (any dtype/channels ``to_bgr8`` accepts) or an image path. Faces come largest
    first; ``max_faces`` (0 = all) keeps the largest ones; ``flip``: test-time flip averaging (the Landmarker's).
    """

    def __init__(self, model: Any = None, detector: Any = None, max_faces: int = 0, refine: int = REFINE,
                 min_face: float = 0.0, device: str = "cpu", runtime: str = "auto", flip: bool = False,
                 calibrate: bool = True) -> None:
        self.engine = resolve_engine(model, refine=refine, device=device, runtime=runtime, flip=flip,
                                     calibrate=calibrate)
        self.detector = resolve_detector(detector)
        self.max_faces = int(max_faces)
        self.min_face = float(min_face)

    def __call__(self, image: np.ndarray | str | Path) -> list[Face]:
        from facetrack.data.sample import read_image, to_bgr8

        frame = read_image(image) if isinstance(image, (str, Path)) else to_bgr8(np.asarray(image))
        found = self.detector.detect(frame)
        boxes = np.asarray(found.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(found.scores, dtype=np.float64).reshape(-1)
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        order = [i for i in np.argsort(-sides, kind="stable") if sides[i] >= max(self.min_face, 1e-6)]
        if self.max_faces > 0:
            order = order[: self.max_faces]
        if not order:
            return []
        estimates = self.engine.start(frame, list(boxes[order]))
        return [Face(boxes[i].copy(), float(scores[i]) if i < len(scores) else None, e.landmarks, e.confidences)
                for i, e in zip(order, estimates)]
