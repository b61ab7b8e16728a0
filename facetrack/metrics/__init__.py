"""Accuracy and stability metrics with the conventions of the field as explicit, recorded parameters."""
from __future__ import annotations

from facetrack.metrics.auc import PRESETS, auc_fr, auc_fr_preset, auc_fr_spiga, ced, plot_ced
from facetrack.metrics.nme import NMEMetric, component_nme, nme, normaliser
from facetrack.metrics.stability import fhr_stability, frame_nme, nmj, video_nrmse

__all__ = [
    "NMEMetric",
    "PRESETS",
    "auc_fr",
    "auc_fr_preset",
    "auc_fr_spiga",
    "ced",
    "component_nme",
    "fhr_stability",
    "frame_nme",
    "nme",
    "nmj",
    "normaliser",
    "plot_ced",
    "video_nrmse",
]
