"""facetrack.models: landmark networks built by name, and their safetensors weights.

``build_model("aohr-lite-128")`` builds a network; ``load_model(path_or_name)`` rebuilds one from a model card
and loads its weights; ``list_models()`` names every architecture and preset.
"""
from __future__ import annotations

from facetrack.models.base import LandmarkModel
from facetrack.models.hub import load_model, save_model
from facetrack.models.registry import build_model, list_models, register_model, register_preset

__all__ = [
    "LandmarkModel", "build_model", "list_models", "load_model", "register_model", "register_preset", "save_model",
]
