"""The face-detector plug-in interface: one result type, one protocol, shared post-processing.

Every detector takes a BGR uint8 frame ``(H, W, 3)`` and returns ``Detections`` in that frame's 0-based pixel
coordinates, best first. Frames of other kinds (gray, BGRA, 16-bit, float) are the caller's job: pass them
through ``facetrack.data.sample.to_bgr8`` first; ``check_frame`` refuses them with that advice rather than
guessing, because a silently mis-read channel order costs recall without any error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class Detections:
    """Faces found in one frame, sorted by descending score.

    ``boxes`` (K, 4) float64 ``[x0, y0, x1, y1]`` 0-based pixels of the frame given to ``detect``;
    ``scores`` (K,) the detector's own confidence (not comparable across detectors); ``points5`` (K, 5, 2)
    or None: right eye, left eye, nose tip, right mouth corner, left mouth corner (subject's right first,
    i.e. the point with the smaller x on a frontal face), when the detector gives them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    points5: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.scores) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")
        if self.points5 is not None:
            self.points5 = np.asarray(self.points5, dtype=np.float64).reshape(-1, 5, 2)
            if len(self.points5) != len(self.boxes):
                raise ValueError(f"{len(self.boxes)} boxes but {len(self.points5)} point sets")

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def sizes(self) -> np.ndarray:
        """Face size of each box: its longer side in pixels (the size ``min_size`` is compared with)."""
        return np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])

    @classmethod
    def empty(cls, with_points: bool = False) -> Detections:
        """No face (with an empty ``points5`` when the detector gives points, so the type stays fixed)."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)) if with_points else None)


@runtime_checkable
class FaceDetector(Protocol):
    """What every detector plug-in provides.

    ``min_size``: faces whose longer box side is below this many pixels are not reported (detectors also use
    it to skip work: MTCNN starts its pyramid there, RetinaFace and dlib shrink the frame).
    ``score_threshold``: detections scoring below it are dropped.
    """

    name: str
    min_size: float
    score_threshold: float

    def detect(self, frame: np.ndarray) -> Detections:
        """Faces in a BGR uint8 (H, W, 3) frame, in its pixel coordinates, best first."""
        ...


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Refuse anything but a BGR uint8 (H, W, 3) frame, naming the fix (``to_bgr8``)."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"face detectors take BGR uint8 (H, W, 3) frames, got {frame.dtype} {frame.shape}: "
            "convert with facetrack.data.sample.to_bgr8(frame)"
        )
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"empty frame {frame.shape}")
    return frame


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union",
        offset: float = 0.0) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best first.

    ``mode="union"`` is IoU, ``"min"`` divides the intersection by the smaller area (MTCNN's last stage).
    ``offset=1`` counts inclusive pixel widths (``x1 - x0 + 1``), as MTCNN's original code does.
    """
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', got {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0 + offset) * (y1 - y0 + offset)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + offset)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + offset)
        inter = w * h
        if mode == "min":
            overlap = inter / np.maximum(np.minimum(areas[i], areas[rest]), 1e-12)
        else:
            overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def finalize(boxes: np.ndarray, scores: np.ndarray, points5: np.ndarray | None, min_size: float,
             score_threshold: float, with_points: bool) -> Detections:
    """Apply ``score_threshold`` and ``min_size`` and sort by score: the same rules for every detector."""
    found = Detections(boxes, scores, points5)
    if found.points5 is None and with_points:
        found.points5 = np.zeros((len(found), 5, 2))
    keep = (found.scores >= score_threshold) & (found.sizes >= min_size) & np.isfinite(found.boxes).all(axis=1)
    order = np.flatnonzero(keep)
    order = order[np.argsort(-found.scores[order], kind="stable")]
    return Detections(found.boxes[order], found.scores[order],
                      None if found.points5 is None else found.points5[order])


def pyramid_scale(min_size: float, native_min: float) -> float:
    """Resize factor that makes a ``min_size`` face as small as the detector's smallest reliable face.

    Below 1 the detector runs on a smaller frame (the speed trick: cost falls with the square of it); the
    factor never exceeds 1, so asking for faces smaller than ``native_min`` does not upsample here.
    """
    if min_size <= 0:
        return 1.0
    return float(min(1.0, native_min / float(min_size)))


# --- registry -------------------------------------------------------------------------------------------
# Entries are imported lazily so that listing detectors (or using one) never imports another's dependency.

@dataclass(frozen=True)
class _Entry:
    module: str  # facetrack.tracking.detectors.<module>
    cls: str
    requires: tuple[str, ...]  # importable modules the detector needs
    install: str  # what to pip install when one is missing
    weights: tuple[str, ...]  # files under facetrack/weights/
    summary: str


_REGISTRY: dict[str, _Entry] = {
    "mtcnn": _Entry("mtcnn", "MTCNNDetector", ("torch", "safetensors"), "pip install torch safetensors",
                    ("mtcnn.safetensors",), "MTCNN cascade (Zhang et al. 2016), pure torch, 5 points"),
    "retinaface": _Entry("retinaface", "RetinaFaceDetector", ("onnxruntime",), "pip install onnxruntime",
                         ("retinaface_mnet025.onnx",), "RetinaFace MobileNet-0.25 (ONNX), 5 points"),
    "dlib_hog": _Entry("dlib_hog", "DlibHOGDetector", ("dlib",), "pip install dlib-bin (or dlib)", (),
                       "dlib's HOG + linear SVM frontal face detector, no points"),
}


def weights_dir() -> Path:
    """Folder of the packaged weights (facetrack/weights)."""
    return Path(__file__).resolve().parents[2] / "weights"


def _missing(entry: _Entry) -> str | None:
    """Why a detector cannot run here (a sentence naming the fix), or None when it can."""
    import importlib.util

    for module in entry.requires:
        if importlib.util.find_spec(module) is None:
            return f"needs the Python module {module!r}: {entry.install}"
    for name in entry.weights:
        if not (weights_dir() / name).is_file():
            return f"weights file {weights_dir() / name} is missing (reinstall facetrack)"
    return None


def list_detectors() -> dict[str, str | None]:
    """Every registered detector name -> None when it can run here, else the reason (with what to install)."""
    return {name: _missing(entry) for name, entry in _REGISTRY.items()}


def build_detector(name: str, **kwargs: object) -> FaceDetector:
    """A detector by registered name, configured with ``kwargs`` (``min_size``, ``score_threshold``, ...)."""
    from facetrack.errors import ModelError

    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ModelError(f"unknown face detector {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    entry = _REGISTRY[key]
    reason = _missing(entry)
    if reason is not None:
        raise ModelError(f"face detector {key!r} is not available: {reason}")
    import importlib

    module = importlib.import_module(f"{__package__}.{entry.module}")
    return getattr(module, entry.cls)(**kwargs)
