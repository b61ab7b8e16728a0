"""Video metrics: temporal stability (FHR ``loss_stable``, LDEQ NMJ) and per-frame NRMSE with both averaging
conventions of the field (EVALUATION.md sections 4-6).

Per-frame accuracy does not show jitter; these metrics do. FHR's e3/e4 measure the prediction's own
second-difference jitter (so the ground truth has a non-zero floor: report ``fhr_stability(gt, gt)``);
LDEQ's NMJ works on residuals and is therefore blind to true motion.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FHR_MIN_WIDTH = 0.01  # frames whose w_t = max GT range / 100 is not above this are invalid (loss_stable.m)
NMJ_REFERENCE_SIDE = 256.0  # LDEQ expresses face scale in units of a 256x256 face


def _as_track(points: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (T, N, 2), got {arr.shape}")
    return arr


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _as_track(pred, "pred")
    g = _as_track(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    return p, g


def _nanmean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def fhr_stability(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """FHR's ``[e1, e2, e3, e4]`` (Tai et al. AAAI'19, ``loss_stable.m``) for one video.

    ``w_t = max(range_x, range_y)(gt_t) / 100``; only frames with ``w_t > 0.01`` count, and a pair or
    triple counts only when all its frames are valid. e1 (time delay, in frames) is the projection of the
    error onto the reverse GT motion, skipping pairs where GT does not move. e2 (accuracy), e3 (jitter
    about the neighbours' midpoint) and e4 (jitter about the best linear interpolation) are in % of face
    size. A quantity with no valid frame is NaN.
    """
    p, g = _check_pair(pred, gt)
    t_len, n = g.shape[:2]
    width = np.max(np.ptp(g, axis=1), axis=1) / 100.0  # (T,)
    valid = width > FHR_MIN_WIDTH
    pf = p.reshape(t_len, -1)
    gf = g.reshape(t_len, -1)

    e2 = [float(np.sqrt(np.sum(((gf[t] - pf[t]) / width[t]) ** 2) / n)) for t in range(t_len) if valid[t]]

    e1: list[float] = []
    for t in range(1, t_len):
        if not (valid[t] and valid[t - 1]):
            continue
        motion = gf[t - 1] - gf[t]
        denom = float(motion @ motion)
        if denom > 0:
            e1.append(float((pf[t] - gf[t]) @ motion) / denom)

    e3: list[float] = []
    e4: list[float] = []
    for t in range(1, t_len - 1):
        if not (valid[t - 1] and valid[t] and valid[t + 1]):
            continue
        prev, cur, nxt = pf[t - 1], pf[t], pf[t + 1]
        e3.append(float(np.sqrt(np.sum(((cur - (prev + nxt) / 2) / width[t]) ** 2) / n)))
        span = nxt - prev
        denom = float(span @ span)
        q = float(np.clip((cur - prev) @ span / denom, 0.0, 1.0)) if denom > 0 else 0.5
        interp = (1 - q) * prev + q * nxt
        e4.append(float(np.sqrt(np.sum(((cur - interp) / width[t]) ** 2) / n)))

    return {
        "e1_delay": _nanmean(e1),
        "e2_accuracy": _nanmean(e2),
        "e3_jitter": _nanmean(e3),
        "e4_jitter_velocity_invariant": _nanmean(e4),
    }


def nmj(pred: np.ndarray, gt: np.ndarray) -> float:
    """LDEQ's normalised mean jitter (``video_NMJ``): RMS over frame pairs of the RMS over landmarks of
    ``100 * ||r_{t-1} - r_t|| / s_t`` with residual ``r = gt - pred`` and ``s_t = sqrt(w_t h_t) / 256``
    of the later frame's GT landmark extent."""
    p, g = _check_pair(pred, gt)
    if len(g) < 2:
        raise ValueError("NMJ needs at least two frames")
    ext = np.ptp(g, axis=1)  # (T, 2)
    scale = np.sqrt(ext[:, 0] * ext[:, 1] / NMJ_REFERENCE_SIDE**2)
    delta = g - p
    jit = 100.0 * np.linalg.norm(delta[:-1] - delta[1:], axis=-1) / scale[1:, None]  # (T-1, N)
    return float(np.sqrt(np.mean(np.mean(jit**2, axis=1))))


def frame_nme(pred: np.ndarray, gt: np.ndarray, ocular: tuple[int, int]) -> np.ndarray:
    """Per-frame NME ``(T,)`` (fraction) normalised by the GT inter-ocular distance ``ocular`` (e.g. (36, 45)
    for 68 points, (60, 72) for 98, (0, 3) for the 7 common points)."""
    p, g = _check_pair(pred, gt)
    iod = np.linalg.norm(g[:, ocular[0]] - g[:, ocular[1]], axis=-1)
    if np.any(iod <= 0):
        raise ValueError("zero inter-ocular distance in the ground truth")
    return np.linalg.norm(p - g, axis=-1).mean(axis=1) / iod


def video_nrmse(per_video_errors: Sequence[Any] | dict[str, Any]) -> dict[str, Any]:
    """Summarise per-frame errors of several videos both ways: FHR's mean of per-video means
    (``comp_scenarios_68pts.m``) and the frame-pooled mean of image-list codebases (SBR).

    The two differ when videos have different lengths; results must say which one they report.
    """
    items = list(per_video_errors.values()) if isinstance(per_video_errors, dict) else list(per_video_errors)
    arrays = [np.asarray(v, dtype=np.float64).ravel() for v in items]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        raise ValueError("no frame errors to summarise")
    per_video = np.array([a.mean() for a in arrays])
    pooled = np.concatenate(arrays)
    return {
        "per_video_mean": float(per_video.mean()),
        "frame_pooled_mean": float(pooled.mean()),
        "videos": len(arrays),
        "frames": int(pooled.size),
        "per_video": per_video.tolist(),
    }
