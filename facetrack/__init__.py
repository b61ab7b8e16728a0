"""facetrack: facial landmark detection and tracking with 1D heatmaps.

``facetrack.Tracker`` tracks faces in a video, folder of frames or camera; ``facetrack.Detector`` finds the
landmarks of every face in an image; ``facetrack.draw`` draws either's results; ``facetrack.to_pandas`` makes a
table of them. All load lazily so that ``import facetrack`` stays cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Detector", "Faces", "Tracker", "__version__", "draw", "to_pandas"]


def __getattr__(name: str) -> Any:
    if name in ("Detector", "Faces", "Tracker", "to_pandas"):
        from facetrack import api

        return getattr(api, name)
    if name == "draw":
        from facetrack.drawing import draw

        return draw
    raise AttributeError(f"module 'facetrack' has no attribute {name!r}")
