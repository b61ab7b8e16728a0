"""The two-line Python interface: ``facetrack.Tracker`` for videos and ``facetrack.Detector`` for still images.

    tracker = facetrack.Tracker()                       # the packaged 1dformer-68; every face (max_faces=0)
    for result in tracker.track("video.mp4"):          # or frames: a folder, a list, a (T, H, W, 3) array, a camera
        for face in result.faces:                         # empty on frames without a face
            face.track_id, face.box, face.score, face.landmarks, face.confidences
    faces = facetrack.Detector()("photo.jpg")           # or an array (color="bgr"|"rgb"), a PIL image, a batch
    facetrack.draw(image, faces); faces.to_numpy(); facetrack.to_pandas(faces)

Arrays are BGR (OpenCV's order) unless ``color="rgb"``; PIL images are RGB by nature; float images must hold
values in [0, 1]. Image files are read upright (their EXIF orientation applied).

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
from typing import Any, Sequence

import numpy as np

from facetrack.errors import ModelError
from facetrack.landmarker import REFINE
from facetrack.tracking.pipeline import FaceTracker, TrackedFace, TrackerConfig, TrackerStats

logger = logging.getLogger(__name__)


__all__ = ["Detector", "Face", "Faces", "FrameResult", "TrackedFace", "Tracker", "to_pandas"]


@dataclass
class FrameResult:
    """The faces on one frame. ``timings`` are milliseconds spent on decode / detection / landmarks / total;
    ``image`` is the frame itself only when ``track(..., with_frames=True)`` asked for it."""

    index: int
    time_s: float
    faces: list[TrackedFace]
    timings: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = None

    def to_numpy(self) -> dict[str, np.ndarray]:
        """The faces as arrays: boxes (F, 4), scores (F,), landmarks (F, N, 2), confidences (F, N), poses (F, 3)
        (yaw, pitch, roll degrees; NaN when unknown), track_ids (F,)."""
        return Faces(self.faces).to_numpy()

    def to_pandas(self) -> Any:
        """One row per face (``landmarks.csv``'s columns); needs pandas."""
        return to_pandas(self)


@dataclass
class Face:
    """One face of a still image: detector box and score, landmarks (N, 2) pixels, confidences (N,), and the head
    ``pose`` (yaw, pitch, roll) in degrees (``facetrack.pose``: the model's own when it has a pose head, else the
    generic 3D face fitted to the landmarks; None for schemes other than iBUG-68)."""

    box: np.ndarray
    score: float | None
    landmarks: np.ndarray
    confidences: np.ndarray
    pose: np.ndarray | None = None


class Faces(list):
    """The faces of one still image, largest first (a plain ``list`` of ``Face``), with one-call conversions.
    ``orientation`` is the EXIF orientation that was applied to read the image upright (1: none)."""

    def __init__(self, faces: Iterable[Any] = (), num_points: int | None = None, orientation: int = 1) -> None:
        super().__init__(faces)
        self.num_points = num_points if num_points is not None else (len(self[0].landmarks) if self else 0)
        self.orientation = orientation

    def to_numpy(self) -> dict[str, np.ndarray]:
        """boxes (F, 4), scores (F,; NaN when given boxes had none), landmarks (F, N, 2), confidences (F, N),
        poses (F, 3) (yaw, pitch, roll degrees; NaN when unknown)."""
        return _face_rows(self, self.num_points)

    def to_pandas(self) -> Any:
        """One row per face: ``box_x0..box_y1``, ``score``, ``x_i``, ``y_i``, ``conf_i``, ``yaw``, ``pitch``,
        ``roll``; needs pandas."""
        return to_pandas(self)


def resolve_engine(model: Any = None, refine: int = REFINE, device: str = "cpu", default: str = "DEFAULT_MODEL",
                   runtime: str = "auto", flip: bool = False, calibrate: bool = True) -> Any:
    """A landmark engine from an engine, a ``Landmarker``, a ``LandmarkModel``, a weights name or path.

    ``None`` means the packaged model named by ``facetrack.models.<default>`` (``DEFAULT_MODEL`` for stills,
    ``DEFAULT_TRACKER`` for video). ``runtime``, ``flip`` (test-time flip averaging) and ``calibrate`` (the card's
    offsets) are the Landmarker's.
    """
    from facetrack.landmarker import Landmarker
    from facetrack.models.base import LandmarkModel
    from facetrack.tracking.engine import engine_for

    if model is not None and hasattr(model, "start") and hasattr(model, "step"):
        return model
    if isinstance(model, Landmarker):
        return engine_for(model)
    if model is None:
        import facetrack.models as models

        model = getattr(models, default, None)
        if model is None:
            raise ModelError("no default landmark model is packaged yet: pass model=<weights name or path>")
    if isinstance(model, str):
        from facetrack.packaged import check_landmark_model

        check_landmark_model(model)  # a packaged detector or validator is not a landmark model
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


def _resolve_packaged(value: Any, loader: Any, usable: str, missing: str) -> Any:
    """``value`` if it already has ``usable`` (or is None); the packaged file for "default" (None with a warning
    when absent); otherwise ``loader(value)``, a path."""
    if value is None or hasattr(value, usable):
        return value
    if isinstance(value, str) and value == "default":
        found = loader()
        if found is None:
            warnings.warn(missing, RuntimeWarning, stacklevel=4)
        return found
    return loader(value)


def resolve_validator(validator: Any = "default") -> Any:
    """The face validator: ``"default"`` (packaged weights, warning and confidence-only when absent), a
    weights path, an object with ``score(image, landmarks)``, or None (landmark confidences only)."""
    from facetrack.tracking.validator import load_validator

    return _resolve_packaged(validator, load_validator, "score",
                             "face validator weights are missing: tracks are validated by landmark confidences only")


def resolve_shape_check(check: Any = "default") -> Any:
    """The tracker's shape plausibility check: "default" (packaged; off with a warning when absent), a path, a
    ``ShapeCheck`` (anything callable on a list of shapes), or None (off)."""
    from facetrack.tracking.plausibility import load_shape_check

    return _resolve_packaged(check, load_shape_check, "__call__",
                             "the shape check's model is missing: tracks are not checked for face-like shapes")


def iterate_frames(source: Any, color: str = "bgr") -> tuple[Iterator[tuple[int, float, np.ndarray]], Any]:
    """``(frames, opened)``: (index, time_s, BGR uint8 frame) from a path, camera index, ``FrameSource``, a
    stacked (T, H, W[, C]) array, or an iterable of frames (paths, PIL images, arrays in ``color`` order) or of
    (index, time_s, frame) tuples; ``opened`` is the FrameSource to close, if any."""
    from facetrack.io.video import DEFAULT_FPS, FrameSource, open_source

    if isinstance(source, (str, Path, int)):
        opened = open_source(source)
        return iter(opened), opened
    if isinstance(source, FrameSource):
        return iter(source), None
    if (isinstance(source, np.ndarray) and source.ndim in (2, 3) and source.dtype != object) or _is_pil(source):
        raise TypeError("track() takes a video or a sequence of frames; for one image use facetrack.Detector")

    def frames(items: Iterable[Any]) -> Iterator[tuple[int, float, np.ndarray]]:
        for count, item in enumerate(items):
            if isinstance(item, tuple) and len(item) == 3:
                index, time_s, image = item
            else:
                index, time_s, image = count, count / DEFAULT_FPS, item
            yield int(index), float(time_s), to_frame(image, color)[0]

    return frames(source), None


def check_device(device: str) -> str:
    """``device`` if PyTorch here can use it; a ModelError naming the devices that exist otherwise (instead of
    a failure deep inside the first forward pass)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"unknown device {device!r} ({exc}); use 'cpu' or e.g. 'cuda:0'") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if not available.get(parsed.type, False):
        found = ", ".join(name for name, ok in available.items() if ok)
        raise ModelError(f"device {device!r} is not available with this PyTorch {torch.__version__} "
                         f"(available: {found}); pass device='cpu'")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ModelError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    return device


def _is_pil(image: Any) -> bool:
    return hasattr(image, "getbands") and hasattr(image, "mode") and hasattr(image, "convert")


def to_frame(image: Any, color: str = "bgr") -> tuple[np.ndarray, int]:
    """``(BGR uint8 frame, EXIF orientation applied)`` from one image: a path (read upright), a PIL image
    (RGB by nature), or an array in ``color`` order ("bgr", OpenCV's, or "rgb")."""
    from facetrack.data.sample import read_image_oriented, to_bgr8

    if isinstance(image, (str, Path)):
        return read_image_oriented(image)
    if _is_pil(image):
        if image.mode not in ("L", "RGB", "RGBA", "I;16"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        return to_bgr8(np.asarray(image), color="rgb"), 1
    array = np.asarray(image)
    if array.dtype.kind in "USO":
        raise TypeError(f"cannot read an image from a {type(image).__name__} of dtype {array.dtype}: "
                        "pass a path, a PIL image or a numpy array")
    return to_bgr8(array, color=color), 1


def as_batch(images: Any) -> tuple[list[Any], bool]:
    """``(items, batched)``: a list/tuple of images or a stacked (B, H, W[, C]) array is a batch; anything
    else is one image."""
    if isinstance(images, (list, tuple)):
        return list(images), True
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), True
    return [images], False


def _face_rows(faces: Sequence[Any], num_points: int | None) -> dict[str, np.ndarray]:
    n = len(faces[0].landmarks) if faces else int(num_points or 0)
    rows = {
        "boxes": np.zeros((len(faces), 4)), "scores": np.full(len(faces), np.nan),
        "landmarks": np.zeros((len(faces), n, 2)), "confidences": np.zeros((len(faces), n)),
        "poses": np.full((len(faces), 3), np.nan),
    }
    for k, face in enumerate(faces):
        rows["boxes"][k] = np.asarray(face.box, dtype=np.float64).reshape(4)
        rows["scores"][k] = np.nan if face.score is None else float(face.score)
        rows["landmarks"][k] = np.asarray(face.landmarks, dtype=np.float64)
        rows["confidences"][k] = np.asarray(face.confidences, dtype=np.float64)
        if getattr(face, "pose", None) is not None:
            rows["poses"][k] = np.asarray(face.pose, dtype=np.float64).reshape(3)
    if faces and hasattr(faces[0], "track_id"):
        rows["track_ids"] = np.array([int(f.track_id) for f in faces], dtype=np.int64)
    return rows


def to_pandas(results: Any) -> Any:
    """One ``pandas.DataFrame`` for any result: a still's faces (one row per face), a batch of them (column
    ``image``), a ``FrameResult`` or an iterable of them (columns ``frame``, ``time_s``, ``track_id``). The
    landmark columns are those of ``landmarks.csv``: ``box_x0..box_y1``, ``score``, ``x_i``, ``y_i``,
    ``conf_i``, ``yaw``, ``pitch``, ``roll``. pandas is optional: it is imported here only."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_pandas() needs pandas, which is not installed: pip install pandas") from None
    if isinstance(results, (Faces, FrameResult)):
        results = [results]
    tables = []
    for k, item in enumerate(results):
        faces = item.faces if isinstance(item, FrameResult) else list(item)
        arrays = _face_rows(faces, None)
        n = arrays["landmarks"].shape[1]
        columns: dict[str, Any] = {}
        if isinstance(item, FrameResult):
            columns.update(frame=np.full(len(faces), item.index), time_s=np.full(len(faces), item.time_s))
        else:
            columns["image"] = np.full(len(faces), k)
        if "track_ids" in arrays:
            columns["track_id"] = arrays["track_ids"]
        for j, name in enumerate(("box_x0", "box_y0", "box_x1", "box_y1")):
            columns[name] = arrays["boxes"][:, j]
        columns["score"] = arrays["scores"]
        for i in range(n):
            columns[f"x_{i}"] = arrays["landmarks"][:, i, 0]
            columns[f"y_{i}"] = arrays["landmarks"][:, i, 1]
        for i in range(n):
            columns[f"conf_{i}"] = arrays["confidences"][:, i]
        for j, name in enumerate(("yaw", "pitch", "roll")):
            columns[name] = arrays["poses"][:, j]
        tables.append(pd.DataFrame(columns))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


class Tracker:
    """Landmarks of every face on every frame: detect, track from the previous landmarks, validate, re-detect.

    ``model``: weights name/path, ``LandmarkModel``, ``Landmarker`` or engine (default: the packaged model);
    ``detector``: detector name or object with ``detect``; ``detect_every``: also detect every N frames to pick
    up faces that enter (0 = only when a face is lost or none is tracked); ``smoothing``: an output filter
    (``facetrack.tracking.smoothing``): True or "aligned" for the shape-aligned average, "one-euro", or a spec
    dict with its parameters; default "aligned", None or False: the model's raw output; ``flip``: test-time
    flip averaging (per-frame models only); ``max_faces``: track at most K faces, 0 (default) = every face;
    ``device``: "cpu" (default) or one PyTorch here has, e.g. "cuda:0" (a clear ModelError otherwise);
    ``shape_check``: "default" (the packaged shape-space check, ``facetrack.tracking.plausibility``), a path, a
    ``ShapeCheck`` or None (off); ``runtime``: as ``Landmarker``'s ("int8": the card's int8 graph, faster, a
    little less steady).
    Remaining keywords go to ``TrackerConfig`` (e.g. ``verify_every``: re-check faces against the detector).
    """

    def __init__(self, model: Any = None, detector: Any = None, detect_every: int = 0, max_faces: int = 0,
                 smoothing: bool | str | dict[str, Any] | None = "aligned", validator: Any = "default",
                 refine: int = REFINE, device: str = "cpu", runtime: str = "auto", flip: bool = False,
                 shape_check: Any = "default", **config: Any) -> None:
        self.config = TrackerConfig(detect_every=detect_every, max_faces=max_faces,
                                    smoothing=smoothing, **config)
        check_device(device)
        self.engine = resolve_engine(model, refine=refine, device=device, default="DEFAULT_TRACKER", runtime=runtime,
                                     flip=flip)
        self.detector = resolve_detector(detector)
        self.validator = resolve_validator(validator)
        self.shape_check = resolve_shape_check(shape_check)
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

    def track(self, source: Any, with_frames: bool = False, boxes: Sequence[Sequence[float]] | None = None,
              color: str = "bgr", lookahead: bool | None = None) -> Iterator[FrameResult]:
        """One ``FrameResult`` per frame of ``source``, streamed (no frame is kept after it is yielded,
        unless ``with_frames`` puts it on the result). ``self.stats`` counts the run as it goes.

        ``source``: a video file, a folder of frames, a camera index, a stacked (T, H, W[, C]) array, or any
        iterable of frames (paths, PIL images, arrays); ``color``: channel order of the arrays ("bgr" or "rgb");
        ``boxes``: the faces of the first frame as [x0, y0, x1, y1] (the detector is not run on it);
        ``lookahead``: decode frames ahead on a second thread and read the next frame before yielding this one, so that
        its landmark step runs while this frame is checked (same results, sooner); None (default): for files, folders
        and frames in memory, not for a camera or another iterator, whose next frame may not exist yet."""
        from facetrack.io.prefetch import prefetch
        from facetrack.io.video import CameraSource, FrameSource

        detector = self.detector if boxes is None else _FirstFrameBoxes(self.detector, boxes)
        tracker = FaceTracker(self.engine, detector, self.validator, self.config, self.shape_check)
        self.stats = tracker.stats
        self.truncated = False
        frames, opened = iterate_frames(source, color)
        # Files, folders and frames in memory are read ahead: decoded on a second thread, and one frame held back so
        # that the next frame's landmark step runs while this one is checked (FaceTracker.update's ``upcoming``). A
        # camera or an arbitrary iterator is not: waiting for its next frame would hold back this one's result.
        if lookahead is None:
            lookahead = (isinstance(source, (str, Path, FrameSource, np.ndarray, list, tuple))
                         and not isinstance(opened or source, CameraSource))
        if lookahead:
            frames = prefetch(frames)
        try:
            pending: tuple[Any, BaseException | None, float] | None = _next_frame(frames)
            while True:
                assert pending is not None
                item, error, decode = pending
                if item is None:
                    if error is not None:  # raised only now: every frame before it has been yielded
                        raise error
                    break
                index, time_s, image = item
                pending = _next_frame(frames) if lookahead else None
                upcoming = None if pending is None or pending[0] is None else pending[0][2]
                t0 = time.perf_counter()
                faces = tracker.update(image, time_s, upcoming)
                timings = {"decode": decode, **tracker.timings}
                timings["total"] = decode + 1000.0 * (time.perf_counter() - t0)
                yield FrameResult(index, time_s, faces, timings, image if with_frames else None)
                del image, item
                if pending is None:
                    pending = _next_frame(frames)
        finally:
            tracker.close()
            close = getattr(frames, "close", None)
            if close is not None:  # stops a reader thread before its source is closed
                close()
            if opened is not None:
                self.truncated = bool(getattr(opened, "truncated", False))
                opened.close()


def _next_frame(frames: Iterator[tuple[int, float, np.ndarray]]
                ) -> tuple[tuple[int, float, np.ndarray] | None, BaseException | None, float]:
    """``(frame or None at the end, the error reading it raised, milliseconds it took)``: an error is kept to be
    raised after the frames read before it are processed."""
    t0 = time.perf_counter()
    try:
        item: tuple[int, float, np.ndarray] | None = next(frames)
        error: BaseException | None = None
    except StopIteration:
        item, error = None, None
    except Exception as exc:  # noqa: BLE001 - re-raised by the caller in its place
        item, error = None, exc
    return item, error, 1000.0 * (time.perf_counter() - t0)


class _FirstFrameBoxes:
    """The face detector, except that its first call answers with the boxes given to ``Tracker.track``."""

    def __init__(self, detector: Any, boxes: Sequence[Sequence[float]]) -> None:
        self.detector, self.name = detector, getattr(detector, "name", type(detector).__name__)
        self.boxes: np.ndarray | None = _check_boxes(boxes)

    def detect(self, frame: np.ndarray) -> Any:
        if self.boxes is None:
            return self.detector.detect(frame)
        from types import SimpleNamespace

        boxes, self.boxes = self.boxes, None
        return SimpleNamespace(boxes=boxes, scores=np.ones(len(boxes)), points5=None)


def _check_boxes(boxes: Any) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4 or not np.all(np.isfinite(array)):
        raise ValueError(f"boxes must be [x0, y0, x1, y1] or a list of them, got shape {np.shape(boxes)}")
    if np.any(array[:, 2] <= array[:, 0]) or np.any(array[:, 3] <= array[:, 1]):
        raise ValueError("each box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
    return array


class Detector:
    """Landmarks of every face in a still image: ``Detector(model=...)(image) -> Faces`` (a list of ``Face``).

    ``image``: an image path (read upright: its EXIF orientation is applied), a PIL image, or a numpy array
    (uint8, uint16 or float in [0, 1]; gray, 3 or 4 channels) whose channel order ``color`` states: "bgr"
    (default, OpenCV's) or "rgb" (PIL, imageio, matplotlib). A list of such images or a stacked (B, H, W[, C])
    array is a batch and gives a list of ``Faces``, one per image. ``boxes``: the faces' [x0, y0, x1, y1]
    (a list of boxes per image for a batch); with them no face detection runs. Faces come largest first;
    ``max_faces`` (0 = all) keeps the largest ones; ``flip``: test-time flip averaging (the Landmarker's);
    ``device``: "cpu" (default) or one PyTorch here has (a clear ModelError otherwise); ``validator``: the face
    validator ("default", a path, an object or None): a detected face whose landmarks it rejects, or whose landmark
    confidence is low, is read again turned half a turn and the reading it prefers is kept (a face detector names
    the points of an upside-down face as if it were upright; benchmarks/README.md, "Rolled faces").

    ``points`` (TUFA models, e.g. ``tufa-68``): which points each ``Face`` carries instead of the model's own
    scheme: the name of another scheme the model was trained on (``"ideask21"``, ``"mtfl5"``, ``"ytf68"``, or a
    few-shot one), or zero-shot, any positions (Q, 2) placed on its mean face (pixels of the 256 px picture that
    ``facetrack meanface`` draws). The face is found with the model's own scheme first (detection, re-crops, checks),
    then the points are asked on the last crop.
    """

    def __init__(self, model: Any = None, detector: Any = None, max_faces: int = 0, refine: int = REFINE,
                 min_face: float = 0.0, device: str = "cpu", runtime: str = "auto", flip: bool = False,
                 calibrate: bool = True, validator: Any = "default", points: Any = None) -> None:
        check_device(device)
        self.engine = resolve_engine(model, refine=refine, device=device, runtime=runtime, flip=flip,
                                     calibrate=calibrate)
        self.plane = None
        if points is not None:
            from facetrack.models.tufa import resolve_points

            landmarker = getattr(self.engine, "landmarker", None)
            self.plane = resolve_points(getattr(landmarker, "model", None), points)
        self._detector = detector
        self._resolved: Any = None
        self.validator = resolve_validator(validator) if self.engine.num_points == 68 else None
        self.max_faces = int(max_faces)
        self.min_face = float(min_face)

    @property
    def detector(self) -> Any:
        """The face detector, built on first use (not at all when every call gives ``boxes``)."""
        if self._resolved is None:
            self._resolved = resolve_detector(self._detector)
        return self._resolved

    def __call__(self, image: Any, boxes: Any = None, color: str = "bgr") -> Any:
        items, batched = as_batch(image)
        if not batched:
            return self._one(image, boxes, color)
        if boxes is not None and len(boxes) != len(items):
            raise ValueError(f"boxes: one list per image expected, got {len(boxes)} for {len(items)} images")
        return [self._one(item, None if boxes is None else boxes[k], color) for k, item in enumerate(items)]

    def _recheck(self, frame: np.ndarray, boxes: np.ndarray, points5: np.ndarray, estimates: list) -> list:
        """Faces the validator rejects or whose landmarks are unsure, read again from their detector points turned
        half a turn; the one the validator prefers is kept."""
        from facetrack.tracking.engine import ORIENTATION_CHECK

        p_face = self.validator.score(frame, [e.landmarks for e in estimates])
        unsure = np.array([float(np.nanmean(e.confidences)) < ORIENTATION_CHECK for e in estimates])
        doubtful = np.flatnonzero((p_face < 0.5) | unsure)
        if not len(doubtful):
            return estimates
        centre = points5[doubtful].mean(axis=1, keepdims=True)
        turned = self.engine.start(frame, list(boxes[doubtful]), 2.0 * centre - points5[doubtful])
        p_turned = self.validator.score(frame, [e.landmarks for e in turned])
        for k, i in enumerate(doubtful):
            if p_turned[k] > p_face[i]:
                estimates[i] = turned[k]
        return estimates

    def _one(self, image: Any, boxes: Any, color: str) -> Faces:
        frame, orientation = to_frame(image, color)
        points5 = None
        if boxes is not None:
            found = _check_boxes(boxes)
            scores = np.full(len(found), np.nan)
            order = list(range(len(found)))
        else:
            detections = self.detector.detect(frame)
            found = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
            scores = np.asarray(detections.scores, dtype=np.float64).reshape(-1)
            sides = np.maximum(found[:, 2] - found[:, 0], found[:, 3] - found[:, 1])
            order = [i for i in np.argsort(-sides, kind="stable") if sides[i] >= max(self.min_face, 1e-6)]
            points5 = getattr(detections, "points5", None)
        if self.max_faces > 0:
            order = order[: self.max_faces]
        if not order:
            return Faces([], self.num_points, orientation)
        points5 = None if points5 is None or len(points5) != len(found) else np.asarray(points5)[order]
        estimates = self.engine.start(frame, list(found[order]), points5)
        if points5 is not None and self.validator is not None:
            estimates = self._recheck(frame, found[order], points5, estimates)
        from facetrack.pose import face_pose

        size = (frame.shape[1], frame.shape[0])
        poses = [face_pose(e.landmarks, size, (getattr(e, "aux", None) or {}).get("pose")) for e in estimates]
        points = [(e.landmarks, e.confidences) for e in estimates]
        if self.plane is not None:  # TUFA: the asked points, on the crops the model's own scheme settled on
            from facetrack.models.tufa import points_in_crops

            asked, conf = points_in_crops(self.engine.landmarker, frame, [e.box for e in estimates],
                                          [e.roll for e in estimates], self.plane)
            points = list(zip(asked, conf))
        return Faces([Face(found[i].copy(), float(scores[i]) if i < len(scores) and np.isfinite(scores[i]) else None,
                           p, c, pose)
                      for i, (p, c), pose in zip(order, points, poses)],
                     self.num_points, orientation)

    @property
    def num_points(self) -> int:
        """Points per face: the model's scheme's, or the number of ``points`` asked."""
        return self.engine.num_points if self.plane is None else len(self.plane)
