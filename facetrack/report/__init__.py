"""``facetrack report``: a static, self-contained ``report.html`` of a tracking run (``facetrack.report.page``),
with plots drawn as inline SVG (``facetrack.report.svg``)."""
from __future__ import annotations

from facetrack.report.page import VideoReport, frame_jitter, output_folders, write_report

__all__ = ["VideoReport", "frame_jitter", "output_folders", "write_report"]
