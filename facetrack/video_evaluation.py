"""Moved: video scoring lives in the ``facetrack.evaluation`` package (``ground_truth``, ``matching``, ``scoring``,
``tables``). This name stays importable for existing scripts; new code imports ``facetrack.evaluation``."""
from __future__ import annotations

from facetrack.evaluation import *  # noqa: F401,F403
from facetrack.evaluation import __all__  # noqa: F401
