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

# Chosen by measurement (benchmarks/results/detectors.md): RetinaFace-MobileNet0.25 finds every face there
# with no false positive and is the fastest; MTCNN (pure torch) when onnxruntime is not installed.
PREFERENCE = ("retinaface", "mtcnn")
DEFAULT_DETECTOR = next((name for name in PREFERENCE if list_detectors()[name] is None), PREFERENCE[-1])

__all__ = ["DEFAULT_DETECTOR", "PREFERENCE", "Detections", "FaceDetector", "build_detector", "check_frame", "list_detectors",
           "nms"]
