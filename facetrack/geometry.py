"""Plane geometry every part of facetrack shares: boxes from points, box overlap, greedy one-to-one matching and
2x3 affine maps. One implementation of each, so crops, tracking, evaluation and training agree to the bit.

Conventions (``docs/architecture.md``): 0-based pixel coordinates, boxes ``[x0, y0, x1, y1]``, points
``(..., N, 2)``; a 2x3 affine maps ``p -> A p + t``. Missing points are NaN and are ignored where it says so.
"""
from __future__ import annotations

import numpy as np


def box_from_points(points: np.ndarray) -> np.ndarray:
    """Tight ``[x0, y0, x1, y1]`` around (..., N, 2) points, ignoring NaN (missing) points: (..., 4).

    Raises ValueError for a malformed array or a face whose points are all missing."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim < 2 or points.shape[-1] != 2 or points.shape[-2] == 0:
        raise ValueError(f"points must have shape (..., N, 2) with N > 0, got {points.shape}")
    finite = np.isfinite(points).all(axis=-1)
    if not finite.any(axis=-1).all():
        raise ValueError("cannot build a box from landmarks that are all missing (NaN)")
    lo = np.where(finite[..., None], points, np.inf).min(axis=-2)
    hi = np.where(finite[..., None], points, -np.inf).max(axis=-2)
    return np.concatenate([lo, hi], axis=-1)


def box_or_nan(points: np.ndarray) -> np.ndarray:
    """``box_from_points`` of one face, or four NaN when none of its points is known (a lost frame)."""
    points = np.asarray(points, dtype=np.float64)
    if not np.isfinite(points).all(axis=-1).any():
        return np.full(4, np.nan)
    return box_from_points(points)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (K, 4) with every box in ``b`` (M, 4): (K, M).

    A pair with an empty union, or with a non-finite coordinate, overlaps 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.where(np.isfinite(iou), iou, 0.0)


def greedy_match(scores: np.ndarray, min_score: float = 0.0, inclusive: bool = True) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs taken greedily by descending score (ties: row-major order), stopping at
    scores below ``min_score`` (or at it too when ``inclusive`` is False).

    Greedy rather than optimal on purpose: it is what face matching and the peers' track ids are specified as;
    ``facetrack.tracking.association.match_boxes`` is the optimal (Hungarian) assignment."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        return []
    pairs: list[tuple[int, int]] = []
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for flat in np.argsort(-scores, axis=None, kind="stable"):
        i, j = divmod(int(flat), scores.shape[1])
        value = scores[i, j]
        if value < min_score or (not inclusive and value <= min_score):
            break
        if i not in used_rows and j not in used_cols:
            pairs.append((i, j))
            used_rows.add(i)
            used_cols.add(j)
    return pairs


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 2x3 affine; NaN points stay NaN."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The exact inverse 2x3 affine (crop pixels -> image pixels for a ``crop_matrix``)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3):
        raise ValueError(f"affine matrix must be 2x3, got {matrix.shape}")
    linear = matrix[:, :2]
    det = np.linalg.det(linear)
    if not np.isfinite(det) or abs(det) < 1e-12:
        raise ValueError(f"affine matrix is singular (det {det})")
    inv = np.linalg.inv(linear)
    return np.concatenate([inv, -(inv @ matrix[:, 2])[:, None]], axis=1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine of ``outer(inner(p))``."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])
