"""Target codecs: landmarks -> training targets (numpy) and network outputs -> crop-pixel coordinates (torch)."""
from __future__ import annotations

from facetrack.codecs.heatmap1d import Heatmap1DCodec, quantization_error
from facetrack.codecs.heatmap2d import Heatmap2DCodec

__all__ = ["Heatmap1DCodec", "Heatmap2DCodec", "quantization_error"]
