"""The face-detector plug-in interface: one result type, one protocol, shared post-processing.

Every detector takes a BGR uint8 frame ``(H, W, 3)`` and returns ``Detections`` in that frame's 0-based pixel
coordinates, best first. Frames of other kinds (gray, BGRA, 16-bit, float) are the caller's job: pass them
through ``facetrack.data.sample.to_bgr8`` first; ``check_frame`` refuses them with that advice rather than
guessing, because a silently mis-read channel order costs recall without any error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from facetrack.plugins import Plugin, build, status, weights_dir  # noqa: F401  (weights_dir: the detectors')


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


# --- bounded resolution ----------------------------------------------------------------------------------
# A detector with fixed anchor sizes splits a face far larger than its largest anchor into several boxes (an
# 8000x6000 photo of one face gave 41 boxes and 3.4 GB of memory). Large frames are therefore searched coarse
# to fine: a first pass with the longer side at most COARSE_SIDE finds the large faces whole; each finer pass
# (PASS_FACTOR times the scale, up to the detector's own scale) adds only the faces too small for the passes
# before it and drops the parts of faces they found; a pass over more than MAX_PASS_PIXELS runs in overlapping
# tiles, so memory stays bounded whatever the frame's size. Frames up to COARSE_SIDE run in one pass, as before.

COARSE_SIDE = 640
PASS_FACTOR = 4.0
MAX_PASS_PIXELS = 2_500_000
TILE_SIDE = 1280


def pass_scales(height: int, width: int, base_scale: float) -> list[float]:
    """Resize factors of the passes, coarse to fine, the last one ``base_scale``."""
    scales = [float(base_scale)]
    while scales[-1] * max(height, width) > COARSE_SIDE:
        scales.append(scales[-1] / PASS_FACTOR)
    return scales[::-1]


def tiles(height: int, width: int, side: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(x0, y0, x1, y1)`` windows of at most ``side`` pixels, overlapping by ``overlap``, covering the frame."""
    def starts(n: int) -> list[int]:
        if n <= side:
            return [0]
        step = side - overlap
        out = list(range(0, n - side, step))
        return out + [n - side]

    return [(x, y, min(x + side, width), min(y + side, height)) for y in starts(height) for x in starts(width)]


def detect_bounded(frame: np.ndarray, base_scale: float, native_min: float, run,  # type: ignore[no-untyped-def]
                   nms_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (K, 4), scores (K,) and points (K, 5, 2) in frame pixels from ``run(image) -> (boxes, scores,
    points)`` (the network on one BGR image, its pixels), over the passes of ``pass_scales``; see above."""
    import cv2

    height, width = frame.shape[:2]
    scales = pass_scales(height, width, base_scale)
    found_b, found_s, found_p = [np.zeros((0, 4))], [np.zeros(0)], [np.zeros((0, 5, 2))]
    for k, scale in enumerate(scales):
        coarse = np.concatenate(found_b)  # what the coarser passes found, in frame pixels
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = frame if size == (width, height) else cv2.resize(
            frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        ih, iw = image.shape[:2]
        # the largest face a finer pass keeps, in this pass's pixels: tiles overlap by more than that
        keep_below = 1.5 * native_min * PASS_FACTOR if k else math.inf
        windows = [(0, 0, iw, ih)] if iw * ih <= MAX_PASS_PIXELS else tiles(ih, iw, TILE_SIDE, int(keep_below) + 16)
        for x0, y0, x1, y1 in windows:
            boxes, scores, points = run(image[y0:y1, x0:x1] if len(windows) > 1 else image)
            if not len(boxes):
                continue
            boxes = boxes + np.array([x0, y0, x0, y0], dtype=np.float64)
            points = points + np.array([x0, y0], dtype=np.float64)
            if len(windows) > 1:  # a face cut by an inner tile border lies whole in the neighbouring tile
                inner = ((boxes[:, 0] <= x0 + 2) & (x0 > 0)) | ((boxes[:, 1] <= y0 + 2) & (y0 > 0)) | \
                        ((boxes[:, 2] >= x1 - 3) & (x1 < iw)) | ((boxes[:, 3] >= y1 - 3) & (y1 < ih))
                boxes, scores, points = boxes[~inner], scores[~inner], points[~inner]
            # back to frame pixels: a point u of the resized image is at (u + 0.5) / s - 0.5 in the frame
            sx, sy = width / iw, height / ih
            boxes = (boxes + 0.5) * np.array([sx, sy, sx, sy]) - 0.5
            points = (points + 0.5) * np.array([sx, sy]) - 0.5
            if k:  # only faces the coarser passes could not see, and no part of a face they found
                sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * scale
                keep = (sides < keep_below) & ~_inside_any(boxes, coarse)
                boxes, scores, points = boxes[keep], scores[keep], points[keep]
            found_b.append(boxes)
            found_s.append(scores)
            found_p.append(points)
    boxes, scores, points = np.concatenate(found_b), np.concatenate(found_s), np.concatenate(found_p)
    if len(scales) > 1 or len(boxes) > 1:
        pick = nms(boxes, scores, nms_threshold)
        boxes, scores, points = boxes[pick], scores[pick], points[pick]
    return boxes, scores, points


def _inside_any(boxes: np.ndarray, outer: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """(K,) True where at least ``fraction`` of a box's area lies inside one of ``outer``."""
    if not len(outer) or not len(boxes):
        return np.zeros(len(boxes), dtype=bool)
    w = np.clip(np.minimum(boxes[:, None, 2], outer[None, :, 2]) - np.maximum(boxes[:, None, 0], outer[None, :, 0]), 0, None)
    h = np.clip(np.minimum(boxes[:, None, 3], outer[None, :, 3]) - np.maximum(boxes[:, None, 1], outer[None, :, 1]), 0, None)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-12)
    return ((w * h) / area[:, None] >= fraction).any(axis=1)


# --- registry -------------------------------------------------------------------------------------------
# Entries are imported lazily so that listing detectors (or using one) never imports another's dependency.

_PKG = "facetrack.tracking.detectors"
_REGISTRY: dict[str, Plugin] = {
    "mtcnn": Plugin(f"{_PKG}.mtcnn", "MTCNNDetector", ("torch", "safetensors"), "pip install torch safetensors",
                    "MTCNN cascade (Zhang et al. 2016), pure torch, 5 points", ("mtcnn.safetensors",)),
    "retinaface": Plugin(f"{_PKG}.retinaface", "RetinaFaceDetector", ("onnxruntime",), "pip install onnxruntime",
                         "RetinaFace MobileNet-0.25 (ONNX), 5 points", ("retinaface_mnet025.onnx",)),
    "dlib_hog": Plugin(f"{_PKG}.dlib_hog", "DlibHOGDetector", ("dlib",), "pip install dlib-bin (or dlib)",
                       "dlib's HOG + linear SVM frontal face detector, no points"),
}


def list_detectors() -> dict[str, str | None]:
    """Every registered detector name -> None when it can run here, else the reason (with what to install)."""
    return status(_REGISTRY)


def build_detector(name: str, **kwargs: object) -> FaceDetector:
    """A detector by registered name, configured with ``kwargs`` (``min_size``, ``score_threshold``, ...)."""
    from facetrack.errors import ModelError

    return build(_REGISTRY, name.lower().replace("-", "_"), "face detector", ModelError, ModelError, **kwargs)
