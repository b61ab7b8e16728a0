"""Face detectors behind one interface: ``build_detector(name, **kw).detect(bgr_frame) -> Detections``.

``list_detectors()`` says which ones run here (and what to install for the others). The default was chosen
by measurement: see benchmarks/results/detectors.md.
"""
from __future__ import annotations

from facetrack.tracking.detectors.base import (
    Detections,
    FaceDetector,
    build_detector,
    check_frame,
    list_detectors,
    nms,
)

DEFAULT_DETECTOR = "mtcnn"

__all__ = ["DEFAULT_DETECTOR", "Detections", "FaceDetector", "build_detector", "check_frame", "list_detectors",
           "nms"]
