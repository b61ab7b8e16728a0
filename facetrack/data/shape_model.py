"""A PCA point-distribution model of landmark shapes (Cootes et al.'s ASM shape model).

Shapes are aligned with generalised Procrustes analysis (similarity: translation, rotation, uniform scale)
so that the principal modes describe non-rigid variation (expression, identity, some out-of-plane pose)
rather than where the face sits in the image. The pseudo-video generator uses the modes to animate a still
with plausible expressions.

Fit the model on the *training identities only*: a model fitted on evaluation faces leaks their shapes into
the synthetic training clips. Choosing the shapes is the caller's job (e.g. the train part of
``facetrack.data.splits.split_by_subject``); ``meta`` records where they came from.

Files are ``.npz`` (loaded with ``allow_pickle=False``) or ``.json``; never pickle.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.errors import DataError
from facetrack.geometry import apply_affine, invert_affine

_FORMAT = "facetrack.shape_model/1"


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2x3) mapping ``src`` (N, 2) onto ``dst`` (N, 2); the Procrustes step."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"expected two (N, 2) arrays of the same shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    norm = float(np.sum(xs * xs))
    if norm <= 0.0:
        raise ValueError("source shape is a single point; a similarity is undefined")
    a = float(np.sum(xs * xd)) / norm
    b = float(np.sum(xs[:, 0] * xd[:, 1] - xs[:, 1] * xd[:, 0])) / norm
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (mu_d - linear @ mu_s)[:, None]])


def _normalise(shape: np.ndarray) -> np.ndarray:
    """Centre on the centroid and scale to unit RMS distance from it (the model frame's gauge)."""
    centred = shape - shape.mean(axis=0)
    return centred / np.sqrt(np.mean(np.sum(centred * centred, axis=1)))


def procrustes_align(shapes: np.ndarray, iterations: int = 20, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis of (M, N, 2) shapes.

    Returns ``(aligned, mean)``: every shape similarity-aligned to the mean, and the mean itself centred with
    unit RMS radius and oriented like the first shape (so the model frame is upright for upright data).
    """
    shapes = _check_shapes(shapes)
    mean = _normalise(shapes[0])
    for _ in range(iterations):
        aligned = _align_all(shapes, mean)
        new_mean = _normalise(aligned.mean(axis=0))
        new_mean = apply_affine(new_mean, similarity_fit(new_mean, mean))  # keep the gauge of the first shape
        new_mean = _normalise(new_mean)
        change = float(np.max(np.abs(new_mean - mean)))
        mean = new_mean
        if change < tol:
            break
    return _align_all(shapes, mean), mean


def similarity_fits(shapes: np.ndarray, target: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """``similarity_fit`` of each of (M, N, 2) ``shapes`` onto ``target`` (N, 2) in one batch: (M, 2, 3), over the
    points ``known`` (M, N) marks (default: all); NaN where fewer than two known points, or all in one place."""
    shapes, target = np.asarray(shapes, dtype=np.float64), np.asarray(target, dtype=np.float64)
    mask = np.ones(shapes.shape[:2], dtype=bool) if known is None else np.asarray(known, dtype=bool)
    w = mask[..., None]
    count = mask.sum(axis=1)[:, None]
    src, dst = np.where(w, shapes, 0.0), np.where(w, target[None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_s, mu_d = src.sum(axis=1) / count, dst.sum(axis=1) / count
        xs, xd = (src - mu_s[:, None]) * w, (dst - mu_d[:, None]) * w
        norm = np.sum(xs * xs, axis=(1, 2))
        a = np.sum(xs * xd, axis=(1, 2)) / norm
        b = np.sum(xs[..., 0] * xd[..., 1] - xs[..., 1] * xd[..., 0], axis=1) / norm
    linear = np.stack([np.stack([a, -b], axis=-1), np.stack([b, a], axis=-1)], axis=1)  # (M, 2, 2)
    fits = np.concatenate([linear, (mu_d - np.einsum("mij,mj->mi", linear, mu_s))[..., None]], axis=2)
    # spread tested on the coordinates themselves: a collapsed shape's centred norm is rounding noise, not 0
    spread = (np.where(w, shapes, -np.inf).max(axis=1) - np.where(w, shapes, np.inf).min(axis=1)).max(axis=1)
    fits[~((count[:, 0] >= 2) & (spread > 0) & (norm > 0))] = np.nan
    return fits


def apply_similarities(fits: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """(M, N, 2) shapes each mapped by its (M, 2, 3) transform."""
    return np.einsum("mij,mnj->mni", fits[:, :, :2], shapes) + fits[:, None, :, 2]


def _align_all(shapes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Every (M, N, 2) shape similarity-fitted onto ``target`` (N, 2)."""
    fits = similarity_fits(shapes, target)
    if not np.isfinite(fits).all():
        raise ValueError("a shape is a single point; it cannot be aligned")
    return apply_similarities(fits, shapes)


def _check_shapes(shapes: np.ndarray) -> np.ndarray:
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 3 or shapes.shape[2] != 2:
        raise ValueError(f"shapes must have shape (M, N, 2), got {shapes.shape}")
    if shapes.shape[0] < 2 or shapes.shape[1] < 3:
        raise ValueError(f"need at least 2 shapes of at least 3 points, got {shapes.shape}")
    if not np.all(np.isfinite(shapes)):
        raise ValueError("shapes contain non-finite coordinates")
    return shapes


@dataclass
class ShapeModel:
    """Mean shape and principal modes in the model frame (centred, unit RMS radius).

    A shape is ``mean + (coefficients @ modes).reshape(N, 2)``; ``eigenvalues[k]`` is the variance of
    coefficient k over the training shapes, so ``sqrt(eigenvalues)`` is the natural unit of deformation.
    """

    mean: np.ndarray  # (N, 2)
    modes: np.ndarray  # (K, 2N), orthonormal rows, x0 y0 x1 y1 ...
    eigenvalues: np.ndarray  # (K,), descending
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.modes = np.asarray(self.modes, dtype=np.float64)
        self.eigenvalues = np.asarray(self.eigenvalues, dtype=np.float64)
        n = self.mean.shape[0]
        if self.mean.shape != (n, 2) or self.modes.ndim != 2 or self.modes.shape[1] != 2 * n:
            raise ValueError(f"inconsistent shapes: mean {self.mean.shape}, modes {self.modes.shape}")
        if self.eigenvalues.shape != (self.modes.shape[0],) or np.any(self.eigenvalues < 0):
            raise ValueError(f"eigenvalues must be ({self.modes.shape[0]},) and non-negative")

    @property
    def num_points(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_modes(self) -> int:
        return int(self.modes.shape[0])

    @classmethod
    def fit(
        cls,
        shapes: np.ndarray,
        num_modes: int | None = None,
        variance: float = 0.98,
        meta: dict[str, Any] | None = None,
    ) -> ShapeModel:
        """Fit on (M, N, 2) training shapes (training identities only; see the module docstring).

        Keeps ``num_modes`` modes when given, else the fewest that explain ``variance`` of the total.
        """
        aligned, mean = procrustes_align(shapes)
        data = aligned.reshape(len(aligned), -1) - mean.reshape(-1)
        _, singular, vt = np.linalg.svd(data, full_matrices=False)
        eigenvalues = singular**2 / (len(aligned) - 1)
        positive = int(np.sum(eigenvalues > 1e-12 * max(float(eigenvalues[0]), 1e-300)))
        if num_modes is None:
            if not 0.0 < variance <= 1.0:
                raise ValueError(f"variance must be in (0, 1], got {variance}")
            cumulative = np.cumsum(eigenvalues) / max(float(eigenvalues.sum()), 1e-300)
            num_modes = int(np.searchsorted(cumulative, variance - 1e-12) + 1)
        num_modes = max(1, min(num_modes, positive))
        info = {"num_training_shapes": int(len(aligned))}
        info.update(meta or {})
        return cls(mean, vt[:num_modes], eigenvalues[:num_modes], info)

    def reconstruct(self, coefficients: np.ndarray, transform: np.ndarray | None = None) -> np.ndarray:
        """Shapes (..., N, 2) from coefficients (..., k<=K), in the model frame or mapped by a 2x3 transform."""
        b = np.asarray(coefficients, dtype=np.float64)
        k = b.shape[-1]
        if k > self.num_modes:
            raise ValueError(f"{k} coefficients but the model has {self.num_modes} modes")
        shapes = self.mean + (b @ self.modes[:k]).reshape(*b.shape[:-1], self.num_points, 2)
        return shapes if transform is None else apply_affine(shapes, np.asarray(transform, dtype=np.float64))

    def project(self, shape: np.ndarray, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Best model fit to one (N, 2) image shape: ``(coefficients (K,), transform 2x3 model -> image)``.

        Alternates the similarity fit and the linear projection, as ASM search does, so that pose and shape
        are separated even for shapes far from the mean.
        """
        b = self.coefficients(shape, iterations)
        return b, similarity_fit(self.reconstruct(b), shape)

    def coefficients(self, shape: np.ndarray, iterations: int = 10) -> np.ndarray:
        """``project``'s coefficients (K,) without its final pose fit: what a plausibility check needs, on every
        tracked face-frame (the similarity is inverted in closed form, the cheap part of the loop)."""
        shape = np.asarray(shape, dtype=np.float64)
        if shape.shape != self.mean.shape:
            raise ValueError(f"shape must be {self.mean.shape}, got {shape.shape}")
        b = np.zeros(self.num_modes)
        fitted = self.mean
        for _ in range(iterations):
            transform = similarity_fit(fitted, shape)  # [[a, -b], [b, a]] | t, model -> image
            linear = transform[:, :2]
            in_model = (shape - transform[:, 2]) @ linear / float(np.sum(linear[:, 0] ** 2))
            b = self.modes @ (in_model - self.mean).reshape(-1)
            fitted = self.reconstruct(b)
        return b

    def sample_coefficients(
        self,
        rng: np.random.Generator,
        n: int,
        scale_sd: float = 1.0,
        num_modes: int | None = None,
        clip_sd: float = 3.0,
    ) -> np.ndarray:
        """(n, K) coefficients ~ N(0, (scale_sd * sqrt(eigenvalue))^2), clipped at ``clip_sd`` of that spread.

        Modes beyond ``num_modes`` are zero: the leading modes carry the large, plausible deformations.
        """
        k = self.num_modes if num_modes is None else max(0, min(num_modes, self.num_modes))
        sd = scale_sd * np.sqrt(self.eigenvalues)
        b = np.zeros((n, self.num_modes))
        z = np.clip(rng.standard_normal((n, k)), -clip_sd, clip_sd)
        b[:, :k] = z * sd[:k]
        return b

    def sample(
        self, rng: np.random.Generator, n: int, scale_sd: float = 1.0, num_modes: int | None = None
    ) -> np.ndarray:
        """(n, N, 2) random plausible shapes in the model frame."""
        return self.reconstruct(self.sample_coefficients(rng, n, scale_sd, num_modes))

    def save(self, path: str | Path) -> None:
        """Write ``.npz`` or ``.json`` (chosen by the suffix)."""
        path = Path(path)
        meta_json = json.dumps(self.meta, sort_keys=True)
        if path.suffix == ".npz":
            np.savez(path, format=np.array(_FORMAT), mean=self.mean, modes=self.modes,
                     eigenvalues=self.eigenvalues, meta=np.array(meta_json))
        elif path.suffix == ".json":
            doc = {"format": _FORMAT, "mean": self.mean.tolist(), "modes": self.modes.tolist(),
                   "eigenvalues": self.eigenvalues.tolist(), "meta": self.meta}
            path.write_text(json.dumps(doc), encoding="utf-8")
        else:
            raise ValueError(f"{path}: shape models are saved as .npz or .json")

    @classmethod
    def load(cls, path: str | Path) -> ShapeModel:
        """Read a model written by :meth:`save`; DataError names the file when it is not one."""
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "shape model file not found")
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    fmt = str(z["format"])
                    doc = {"mean": z["mean"], "modes": z["modes"], "eigenvalues": z["eigenvalues"],
                           "meta": json.loads(str(z["meta"]))}
            elif path.suffix == ".json":
                raw = json.loads(path.read_text(encoding="utf-8"))
                fmt = raw.get("format")
                doc = {k: raw[k] for k in ("mean", "modes", "eigenvalues", "meta")}
            else:
                raise DataError(path, "shape models are .npz or .json files")
        except DataError:
            raise
        except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(path, f"not a shape model file ({type(exc).__name__}: {exc})") from None
        if fmt != _FORMAT:
            raise DataError(path, f"unknown shape model format {fmt!r}, expected {_FORMAT!r}")
        try:
            return cls(np.asarray(doc["mean"]), np.asarray(doc["modes"]), np.asarray(doc["eigenvalues"]),
                       dict(doc["meta"]))
        except ValueError as exc:
            raise DataError(path, f"inconsistent shape model ({exc})") from None
