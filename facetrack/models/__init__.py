"""facetrack.models: landmark networks built by name, and their safetensors weights.

``build_model("aohr-lite-128")`` builds a network; ``load_model(path_or_name)`` rebuilds one from a model card
and loads its weights; ``list_models()`` names every architecture and preset.
"""
from __future__ import annotations

from facetrack.models.base import LandmarkModel
from facetrack.models.hub import load_model, save_model
from facetrack.models.registry import build_model, list_models, register_model, register_preset

# The packaged per-frame model that ``detect`` uses when no --model is given
# (facetrack/weights/<name>.safetensors + .json).
DEFAULT_MODEL = "aohr-68"
# The packaged model ``track`` and ``demo`` (``facetrack.Tracker``) use when no --model is given: the 1DFormer on
# the trackers' 128 px encoder (the lowest jitter on held-out pseudo-videos, though 0.01-0.05 points more error
# than aohr-68; 79 fps end to end with onnxruntime; benchmarks/README.md, "The shipped trackers and their encoder").
DEFAULT_TRACKER = "1dformer-68"

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_TRACKER", "LandmarkModel", "build_model", "list_models", "load_model", "register_model", "register_preset", "save_model",
]
