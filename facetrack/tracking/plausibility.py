"""Is this set of landmarks shaped like a face? A check in the shape space of the training faces.

The face validator looks at pixels; a landmark model that has lost its face can still put out a shape that
sits on skin (spread over two touching faces, collapsed onto one feature, scattered). Such shapes lie far from
every training shape once pose is taken out, so the tracker also asks the shape model
(``facetrack.data.shape_model.ShapeModel``: Procrustes-aligned mean and PCA modes of the training shapes) two
questions: how many standard deviations the shape's mode coefficients are from the mean (Mahalanobis), and how
much of the shape the modes cannot explain (RMS residual in the model frame, where the mean shape has unit RMS
radius). Either past its bound fails the track, which is then re-detected (CRCT's logic).

The packaged model is fitted on the training split of the shared 300-W crops only; its bounds are written in
its metadata (``facetrack.train.shape_check``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facetrack.data.shape_model import ShapeModel, similarity_fit
from facetrack.errors import ModelError

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "weights" / "shape_check_ibug68.npz"


@dataclass
class ShapeCheck:
    """``check(shapes)`` -> True where a (N, 2) shape is face-like: Mahalanobis distance of its coefficients at
    most ``max_mahalanobis`` and residual at most ``max_residual``."""

    model: ShapeModel
    max_mahalanobis: float
    max_residual: float

    @property
    def num_points(self) -> int:
        return self.model.num_points

    def distances(self, shape: np.ndarray) -> tuple[float, float]:
        """(Mahalanobis distance of the mode coefficients, RMS residual in the model frame) of one shape."""
        shape = np.asarray(shape, dtype=np.float64)
        if shape.shape != self.model.mean.shape or not np.isfinite(shape).all():
            return float("inf"), float("inf")
        if np.ptp(shape, axis=0).max() <= 0:
            return float("inf"), float("inf")
        coefficients = self.model.coefficients(shape, iterations=3)
        fitted = self.model.reconstruct(coefficients)
        mahalanobis = float(np.sqrt(np.sum(coefficients ** 2 / np.maximum(self.model.eigenvalues, 1e-12))))
        to_model = similarity_fit(shape, fitted)
        in_model = shape @ to_model[:, :2].T + to_model[:, 2]
        residual = float(np.sqrt(np.mean(np.sum((in_model - fitted) ** 2, axis=1))))
        return mahalanobis, residual

    def __call__(self, shapes: Sequence[np.ndarray]) -> np.ndarray:
        out = np.ones(len(shapes), dtype=bool)
        for i, shape in enumerate(shapes):
            if len(shape) != self.num_points:
                continue  # another scheme: nothing to say
            mahalanobis, residual = self.distances(shape)
            out[i] = mahalanobis <= self.max_mahalanobis and residual <= self.max_residual
        return out


def load_shape_check(path: str | Path | None = None) -> ShapeCheck | None:
    """The packaged check (or the one at ``path``); None when the packaged file is absent."""
    target = DEFAULT_PATH if path is None else Path(path)
    if not target.is_file():
        if path is not None:
            raise ModelError(f"{target}: shape check file not found")
        return None
    model = ShapeModel.load(target)
    try:
        return ShapeCheck(model, float(model.meta["max_mahalanobis"]), float(model.meta["max_residual"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{target}: shape model without valid max_mahalanobis / max_residual bounds ({exc})") from None
