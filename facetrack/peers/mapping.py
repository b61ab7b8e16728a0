"""Linear maps between landmark schemes (MediaPipe's 478-point mesh -> iBUG-68), fitted from paired faces.

Each target point is an affine combination (weights summing to 1) of a few source points: its ``k`` nearest
mesh vertices on the mean shape, or all of them. Summing to 1 makes the map commute with translation,
rotation and scale of the face, so it needs no per-image normalisation at inference. Weights are found by
ridge-regularised least squares under that constraint (closed form via the KKT system), on faces normalised
by their mesh centroid and RMS radius so that every face counts alike. ``k`` and the ridge strength are
chosen by cross-validation over groups (photographs), so nothing about the evaluation faces enters the fit.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.errors import DataError


@dataclass
class PointMap:
    """``target[j] = sum_k weights[j, k] * source[indices[j, k]]`` (rows of ``weights`` sum to 1)."""

    indices: np.ndarray  # (P, K) int
    weights: np.ndarray  # (P, K) float
    num_source: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.indices.shape != self.weights.shape or self.indices.ndim != 2:
            raise ValueError(f"indices {self.indices.shape} and weights {self.weights.shape} must be equal (P, K)")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= self.num_source):
            raise ValueError(f"indices must lie in [0, {self.num_source})")

    @property
    def num_target(self) -> int:
        return int(self.indices.shape[0])

    def dense(self) -> np.ndarray:
        """The map as a (P, S) matrix."""
        out = np.zeros((self.num_target, self.num_source))
        np.add.at(out, (np.repeat(np.arange(self.num_target), self.indices.shape[1]), self.indices.ravel()),
                  self.weights.ravel())
        return out

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Source points ``(..., S, 2)`` -> target points ``(..., P, 2)``."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape[-2] != self.num_source:
            raise ValueError(f"expected {self.num_source} source points, got {points.shape[-2]}")
        gathered = points[..., self.indices, :]  # (..., P, K, 2)
        return np.einsum("...pkc,pk->...pc", gathered, self.weights)

    def save(self, path: str | Path) -> Path:
        """Write ``PATH.npz`` (indices, weights) and ``PATH.json`` (how it was fitted); returns the .npz path."""
        path = Path(path).with_suffix("")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path.with_suffix(".npz"), indices=self.indices.astype(np.int16),
                            weights=self.weights.astype(np.float32), num_source=np.int64(self.num_source))
        path.with_suffix(".json").write_text(json.dumps(self.meta, indent=1) + "\n", encoding="utf-8")
        return path.with_suffix(".npz")

    @classmethod
    def load(cls, path: str | Path) -> PointMap:
        """Read a map written by :meth:`save` (``path`` with or without the .npz suffix)."""
        base = Path(path).with_suffix("")
        npz = base.with_suffix(".npz")
        try:
            with np.load(npz) as data:
                indices, weights, num_source = data["indices"], data["weights"], int(data["num_source"])
        except FileNotFoundError:
            raise DataError(npz, "point map not found") from None
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(npz, f"not a point map ({exc})") from None
        meta: dict[str, Any] = {}
        if base.with_suffix(".json").is_file():
            meta = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
        sums = weights.astype(np.float64).sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-4):
            raise DataError(npz, "weights of a point map must sum to 1 per target point")
        return cls(indices, weights, num_source, meta)


def normalise(source: np.ndarray, target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Faces ``(F, S, 2)`` centred on their source centroid and divided by its RMS radius (target alike)."""
    source = np.asarray(source, dtype=np.float64)
    centre = source.mean(axis=1, keepdims=True)
    radius = np.sqrt(((source - centre) ** 2).sum(axis=-1).mean(axis=1))[:, None, None]
    if np.any(radius <= 0):
        raise ValueError("a face has all its source points at one place")
    norm_target = None if target is None else (np.asarray(target, dtype=np.float64) - centre) / radius
    return (source - centre) / radius, norm_target


def _normal_equations(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram matrix G (S, S) and right-hand sides B (S, P) of the shared-weight least squares over x and y."""
    gram = np.einsum("fsc,ftc->st", source, source)
    rhs = np.einsum("fsc,fpc->sp", source, target)
    return gram, rhs


def neighbours(source_mean: np.ndarray, target_mean: np.ndarray, k: int | None) -> np.ndarray:
    """For each target point, its ``k`` nearest source points on the mean shapes (all when k is None)."""
    s = len(source_mean)
    if k is None or k >= s:
        return np.tile(np.arange(s), (len(target_mean), 1))
    d = np.linalg.norm(target_mean[:, None, :] - source_mean[None, :, :], axis=-1)
    return np.sort(np.argsort(d, axis=1, kind="stable")[:, :k], axis=1)


def _solve(gram: np.ndarray, rhs: np.ndarray, indices: np.ndarray, ridge: float) -> np.ndarray:
    """Weights (P, K) minimising ||D w - t||^2 + lam ||w||^2 with sum(w) = 1, one target point at a time.

    ``lam = ridge * mean(diag(G_sub))`` so that ``ridge`` is unit-free; the penalty pulls the weights towards
    the plain average of the chosen vertices, which is what a point with no data should fall back to."""
    p, k = indices.shape
    weights = np.zeros((p, k))
    shared = bool(np.all(indices == indices[:1]))  # every point uses the same vertices: one system, P right-hand sides
    for j in range(1 if shared else p):
        idx = indices[j]
        sub = gram[np.ix_(idx, idx)]
        lam = ridge * float(np.mean(np.diag(sub))) if ridge > 0 else 0.0
        kkt = np.zeros((k + 1, k + 1))
        kkt[:k, :k] = sub + lam * np.eye(k)
        kkt[:k, k] = kkt[k, :k] = 1.0
        cols = np.arange(p) if shared else np.array([j])
        b = np.vstack([rhs[np.ix_(idx, cols)], np.ones((1, len(cols)))])
        try:
            sol = np.linalg.solve(kkt, b)
        except np.linalg.LinAlgError:  # singular without a ridge (fewer faces than vertices): least norm
            sol = np.linalg.lstsq(kkt, b, rcond=None)[0]
        weights[cols] = sol[:k].T
    return weights


def fit_point_map(source: np.ndarray, target: np.ndarray, k: int | None = 16, ridge: float = 1e-3,
                  meta: dict[str, Any] | None = None) -> PointMap:
    """Fit a :class:`PointMap` from paired faces: ``source`` (F, S, 2) -> ``target`` (F, P, 2), same images."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.ndim != 3 or target.ndim != 3 or len(source) != len(target) or source.shape[-1] != 2:
        raise ValueError(f"expected (F, S, 2) and (F, P, 2) with the same F, got {source.shape}, {target.shape}")
    if len(source) == 0:
        raise ValueError("no faces to fit a point map on")
    ns, nt = normalise(source, target)
    idx = neighbours(ns.mean(axis=0), nt.mean(axis=0), k)
    gram, rhs = _normal_equations(ns, nt)
    weights = _solve(gram, rhs, idx, ridge)
    info = {"k": None if k is None or k >= source.shape[1] else int(k), "ridge": float(ridge),
            "faces": int(len(source)), **(meta or {})}
    return PointMap(idx, weights, source.shape[1], info)


def ocular_nme(pred: np.ndarray, target: np.ndarray, ocular: tuple[int, int] = (36, 45)) -> np.ndarray:
    """Per-face mean point error / outer-eye-corner distance of the target (fractions)."""
    iod = np.linalg.norm(target[:, ocular[0]] - target[:, ocular[1]], axis=-1)
    return np.linalg.norm(pred - target, axis=-1).mean(axis=1) / iod


def select_point_map(source: np.ndarray, target: np.ndarray, groups: Sequence[str], ks: Sequence[int | None],
                     ridges: Sequence[float], folds: int = 5, seed: int = 0,
                     ocular: tuple[int, int] = (36, 45), meta: dict[str, Any] | None = None
                     ) -> tuple[PointMap, list[dict[str, Any]]]:
    """Choose ``k`` and the ridge by grouped K-fold cross-validation (ocular NME of held-out folds), refit
    the best on every face given, and return it with the table of every setting tried.

    Groups (e.g. source photographs) never straddle folds, so one person's faces do not grade themselves."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    groups = np.asarray([str(g) for g in groups])
    if len(groups) != len(source):
        raise ValueError(f"{len(groups)} groups for {len(source)} faces")
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of_group = dict(zip(unique[rng.permutation(len(unique))], np.arange(len(unique)) % folds))
    fold = np.array([fold_of_group[g] for g in groups])
    ns, nt = normalise(source, target)
    errors: dict[tuple[int | None, float], list[np.ndarray]] = {(k, r): [] for k in ks for r in ridges}
    for f in range(folds):
        train, test = fold != f, fold == f
        if not test.any() or not train.any():
            continue
        gram, rhs = _normal_equations(ns[train], nt[train])
        for k in ks:
            idx = neighbours(ns[train].mean(axis=0), nt[train].mean(axis=0), k)
            for r in ridges:
                w = _solve(gram, rhs, idx, r)
                pred = PointMap(idx, w, source.shape[1]).apply(ns[test])
                errors[(k, r)].append(ocular_nme(pred, nt[test], ocular))
    table = []
    for (k, r), errs in errors.items():
        e = np.concatenate(errs) if errs else np.array([np.nan])
        table.append({"k": None if k is None or k >= source.shape[1] else int(k), "ridge": float(r),
                      "cv_nme": float(np.mean(e)), "cv_nme_median": float(np.median(e))})
    best = min(table, key=lambda row: row["cv_nme"])
    fitted = fit_point_map(source, target, best["k"], best["ridge"],
                           meta={**(meta or {}), "cv_folds": int(folds), "cv_nme": best["cv_nme"], "cv_table": table})
    return fitted, table
