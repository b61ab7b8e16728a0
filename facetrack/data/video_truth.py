"""The ground-truth record of one annotated video, as every video dataset gives it to ``evaluate --video``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VideoTruth:
    """One annotated video: ``frames`` (T,) 0-based frame indices as ``facetrack track`` numbers them,
    ``keys`` (T,) annotation file stems (to match ``.pts`` output), ``landmarks`` (T, N, 2) in 0-based pixels,
    ``occluded`` (T, N) bool or None."""

    name: str
    column: str
    frames: np.ndarray
    keys: list[str]
    landmarks: np.ndarray
    occluded: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.int64)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64)
        if self.landmarks.ndim != 3 or len(self.landmarks) != len(self.frames) != len(self.keys):
            raise ValueError(f"video {self.name}: frames, keys and landmarks (T, N, 2) disagree in length")
        if self.occluded is not None:
            self.occluded = np.asarray(self.occluded, dtype=bool)
            if self.occluded.shape != self.landmarks.shape[:2]:
                raise ValueError(f"video {self.name}: occluded {self.occluded.shape} is not (T, N)")
