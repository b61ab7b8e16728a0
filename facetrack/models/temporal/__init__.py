"""Temporal landmark models (1DFormer, the AOHR tracker): per-frame AOHR features refined over time; Belmonte et
al.'s local-motion networks (``local_motion``).

Importing this package registers the architectures "1dformer", "aohr-tracker" and "local-motion" and their presets.
"""
from __future__ import annotations

from facetrack.models.temporal.aohr_tracker import AOHRTracker, AOHRTrackerHead, exponential_fusion
from facetrack.models.temporal.local_motion import LocalMotion
from facetrack.models.temporal.base import TemporalHead, TemporalLandmarkModel, TemporalState
from facetrack.models.temporal.onedformer import ABLATIONS, OneDFormer, OneDFormerHead

__all__ = [
    "ABLATIONS", "AOHRTracker", "AOHRTrackerHead", "LocalMotion", "OneDFormer", "OneDFormerHead", "TemporalHead",
    "TemporalLandmarkModel", "TemporalState", "exponential_fusion",
]
