"""facetrack: facial landmark detection and tracking with 1D heatmaps.

``facetrack.Tracker`` tracks faces in a video, folder of frames or camera; ``facetrack.Detector`` finds the
landmarks of every face in an image. Both load lazily so that ``import facetrack`` stays cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Detector", "Tracker", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Detector", "Tracker"):
        from facetrack import api

        return getattr(api, name)
    raise AttributeError(f"module 'facetrack' has no attribute {name!r}")
