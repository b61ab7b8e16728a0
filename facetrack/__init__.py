"""facetrack: facial landmark detection and tracking with 1D heatmaps."""
from __future__ import annotations

__version__ = "0.1.0"
