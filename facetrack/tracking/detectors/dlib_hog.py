"""dlib's frontal face detector (HOG features + linear SVMs, 80x80 window), an optional extra.

Needs ``pip install dlib-bin`` (prebuilt wheels) or ``dlib``; the model is built into dlib, so there is no
weight file. It gives no points. Scores are SVM margins (0 is the detector's own threshold).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from facetrack.errors import ModelError
from facetrack.tracking.detectors.base import Detections, check_frame, finalize, pyramid_scale

NATIVE_MIN_FACE = 80.0  # pixels: dlib's window; smaller faces need upsampling


class DlibHOGDetector:
    """dlib HOG detector: boxes are tight (brow to lower lip, about 0.8x the landmark extent).

    ``min_size`` below 80 pixels upsamples the frame (x2 per step, at most ``max_upsample`` steps: slow);
    above 80 the frame is shrunk by ``80 / min_size`` first (fast).
    """

    name = "dlib_hog"

    def __init__(self, min_size: float = 40.0, score_threshold: float = 0.0, max_upsample: int = 2) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ModelError("the dlib_hog detector needs dlib: pip install dlib-bin (or dlib)") from exc
        self.min_size = float(min_size)
        self.score_threshold = float(score_threshold)
        self.max_upsample = int(max_upsample)
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, frame: np.ndarray) -> Detections:
        """Faces in a BGR uint8 frame (0-based pixel boxes), best first."""
        check_frame(frame)
        height, width = frame.shape[:2]
        scale = pyramid_scale(self.min_size, NATIVE_MIN_FACE)
        upsample = 0
        if self.min_size < NATIVE_MIN_FACE:
            upsample = min(self.max_upsample, math.ceil(math.log2(NATIVE_MIN_FACE / max(self.min_size, 1.0))))
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(image, upsample, self.score_threshold)
        if len(rects) == 0:
            return Detections.empty()
        # dlib rectangles are inclusive pixel indices of the (possibly shrunk) image.
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64)
        sx, sy = width / image.shape[1], height / image.shape[0]
        boxes = (boxes + 0.5) * np.array([sx, sy, sx, sy]) - 0.5
        return finalize(boxes, np.asarray(scores, dtype=np.float64), None, self.min_size, self.score_threshold,
                        with_points=False)
