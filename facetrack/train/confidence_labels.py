"""Confidence pseudo-labels c* for 1DFormer's confidence branches (IJCAI 2024, section 3.4, Eq. 7).

No dataset annotates how *certain* a landmark's position is, so 1DFormer takes labels from a flow-based model
of positional certainty (RLE, ``facetrack.models.rle``): for every landmark, axis and frame, c* is the
probability the RLE model's predicted Laplace puts within +-tau of its mean,

    c*_x = 1 - exp(-tau / sigma_x),   c*_y = 1 - exp(-tau / sigma_y)

(``facetrack.models.rle.sigma_to_confidence``), one per axis like 1DFormer's branches f_c^x, f_c^y. The labels
only guide those branches during the first half of training (L_o = lambda_h L_h + lambda_c L_c), so what
matters is their ranking (occluded, blurred, ambiguous points low), which :func:`confidence_report` measures.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facetrack.models.rle import RLE


def _fit_size(crops: Tensor, size: int) -> Tensor:
    """Crops of another size are resampled to the RLE model's input: the crop geometry must be the same (same
    crop policy), only the resolution may differ. Area averaging when shrinking (no aliasing), bilinear when
    enlarging."""
    if crops.ndim != 4 or crops.shape[1] != 3 or crops.shape[2] != crops.shape[3]:
        raise ValueError(f"expected crops (B, 3, F, F), got {tuple(crops.shape)}")
    if crops.shape[-1] == size:
        return crops
    if crops.shape[-1] > size:
        return F.interpolate(crops, size=(size, size), mode="area")
    return F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def confidence_labels(rle_model: RLE, crops: Tensor, tau: float | None = None,
                      batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Per-axis pseudo-labels (cx, cy), each (B, N) in [0, 1], for RGB [0, 1] crops (B, 3, F, F).

    ``tau`` is in the RLE model's crop pixels (default: the model's ``tau_pixels``). Runs in eval mode, in
    chunks of ``batch_size``, on the model's device; results come back on the crops' device.
    """
    if not isinstance(rle_model, RLE):
        raise TypeError(f"confidence labels need an RLE model, got {type(rle_model).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(rle_model.parameters()).device
    labels = []
    for start in range(0, len(crops), batch_size):
        chunk = _fit_size(crops[start:start + batch_size].to(device, torch.float32), rle_model.input_size)
        _, sigma = rle_model.predict_sigma(chunk)
        labels.append(rle_model.confidences(sigma, tau))
    if not labels:
        empty = crops.new_zeros((0, rle_model.num_points))
        return empty, empty.clone()
    conf = torch.cat(labels).to(crops.device)
    return conf[..., 0], conf[..., 1]


@torch.no_grad()
def sequence_confidence_labels(rle_model: RLE, clips: Tensor, tau: float | None = None,
                               batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Pseudo-labels for a batch of clips (B, T, 3, F, F): (cx, cy), each (B, T, N), frame by frame.

    Every frame is labelled on its own (the RLE model is per-image), as the confidence branches see each
    frame's unrefined features s_nt.
    """
    if clips.ndim != 5:
        raise ValueError(f"expected clips (B, T, 3, F, F), got {tuple(clips.shape)}")
    b, t = clips.shape[:2]
    cx, cy = confidence_labels(rle_model, clips.reshape(b * t, *clips.shape[2:]), tau, batch_size)
    return cx.reshape(b, t, -1), cy.reshape(b, t, -1)


def confidence_report(errors: np.ndarray, sigma: np.ndarray, conf: np.ndarray, occluded: np.ndarray,
                      valid: np.ndarray | None = None) -> dict[str, Any]:
    """Does sigma track the real error, and do occluded landmarks get lower c*? The checks a label set must pass.

    Inputs are per face, landmark and axis: ``errors`` |gt - mu| and ``sigma`` (M, N, 2) in crop px, ``conf``
    the labels (M, N, 2); ``occluded`` (M, N) from the augmenter's occluders; ``valid`` (M, N) excludes
    landmarks without ground truth. Returns Spearman correlations (per axis value, and per landmark of the
    Euclidean error against the geometric mean of the two sigmas), mean c* of occluded and visible landmarks.
    """
    from scipy.stats import spearmanr

    errors, sigma, conf = (np.asarray(a, dtype=np.float64) for a in (errors, sigma, conf))
    occluded = np.asarray(occluded, dtype=bool)
    if errors.shape != sigma.shape or errors.shape != conf.shape or errors.ndim != 3 or errors.shape[-1] != 2:
        raise ValueError(f"errors, sigma and conf must all be (M, N, 2), got {errors.shape}, {sigma.shape}, "
                         f"{conf.shape}")
    if occluded.shape != errors.shape[:2]:
        raise ValueError(f"occluded must be (M, N) = {errors.shape[:2]}, got {occluded.shape}")
    valid = np.ones(occluded.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    point_error = np.hypot(errors[..., 0], errors[..., 1])
    point_sigma = np.sqrt(sigma[..., 0] * sigma[..., 1])
    point_conf = conf.mean(-1)

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        return float(spearmanr(a, b).statistic) if a.size > 2 else math.nan

    def mean(a: np.ndarray) -> float:
        return float(a.mean()) if a.size else math.nan

    return {
        "points": int(valid.sum()), "occluded_points": int((valid & occluded).sum()),
        "spearman_axis": rho(sigma[valid].ravel(), errors[valid].ravel()),
        "spearman_point": rho(point_sigma[valid], point_error[valid]),
        "mean_conf_visible": mean(point_conf[valid & ~occluded]),
        "mean_conf_occluded": mean(point_conf[valid & occluded]),
        "mean_error_visible": mean(point_error[valid & ~occluded]),
        "mean_error_occluded": mean(point_error[valid & occluded]),
        "median_sigma": float(np.median(sigma[valid])) if valid.any() else math.nan,
    }


def evaluate_confidence(rle_model: RLE, samples: Sequence[Any], seed: int = 0, occlusion_prob: float = 0.5,
                        crop_scale: float = 1.25, batch_size: int = 32) -> dict[str, Any]:
    """:func:`confidence_report` on annotated faces (``FaceSample``), cropped with the training crop policy and,
    with ``occlusion_prob``, one synthetic occluder from the training ``Augmenter`` (no other augmentation).

    Occluders tend to land on the central face, whose points are easier than the contour, so the plain mean c*
    of occluded vs visible points mixes landmark kinds. The paired keys compare each occluded point with
    itself on the same crop without the occluder: ``paired_conf_clean`` / ``paired_conf_occluded`` (means) and
    ``paired_drop_fraction`` (share of occluded points whose c* went down). Deterministic given ``seed``; meant
    for held-out faces (e.g. the validation side of a run's split.json).
    """
    from facetrack.data.transforms import Augmenter, box_from_landmarks, warp
    from facetrack.schemes import get_scheme

    scheme = get_scheme(rle_model.scheme)
    augmenter = Augmenter(out_size=rle_model.input_size, scale=crop_scale, scale_range=(1.0, 1.0), rotation=0.0,
                          shift=0.0, flip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                          blur_prob=0.0, occlusion_prob=occlusion_prob)
    rng = np.random.default_rng(seed)
    crops, clean_crops, points, occluded, valid = [], [], [], [], []
    for sample in samples:
        gt = np.asarray(sample.landmarks, dtype=np.float64)
        result = augmenter(sample.load_image(), gt, box_from_landmarks(gt), scheme, rng)
        crops.append(np.ascontiguousarray(result.crop[:, :, ::-1].transpose(2, 0, 1)))
        # Without colour jitter or blur, the augmenter's crop is this warp plus the occluder.
        clean = warp(sample.load_image(), result.matrix, rle_model.input_size)
        clean_crops.append(np.ascontiguousarray(clean[:, :, ::-1].transpose(2, 0, 1)))
        points.append(result.points)
        occluded.append(result.occluded)
        vis = np.ones(len(gt), bool) if sample.visible is None else np.asarray(sample.visible, bool)
        valid.append(vis & np.isfinite(result.points).all(1))
    if not crops:
        raise ValueError("evaluate_confidence needs at least one face")
    mu, scale = _predict(rle_model, crops, batch_size)
    conf = rle_model.confidences(scale).double().numpy()
    errors = np.abs(np.stack(points) - mu.double().numpy())
    occluded_arr, valid_arr = np.stack(occluded), np.stack(valid)
    report = confidence_report(errors, scale.double().numpy(), conf, occluded_arr, valid_arr)
    pairs = occluded_arr & valid_arr
    if pairs.any():
        _, clean_scale = _predict(rle_model, clean_crops, batch_size)
        clean_conf = rle_model.confidences(clean_scale).double().numpy().mean(-1)[pairs]
        occ_conf = conf.mean(-1)[pairs]
        report.update(paired_conf_clean=float(clean_conf.mean()), paired_conf_occluded=float(occ_conf.mean()),
                      paired_drop_fraction=float((occ_conf < clean_conf).mean()))
    report.update(faces=len(samples), tau_pixels=rle_model.tau_pixels, occlusion_prob=occlusion_prob)
    return report


def _predict(rle_model: RLE, crops: Sequence[np.ndarray], batch_size: int) -> tuple[Tensor, Tensor]:
    """mu and calibrated Laplace scales (M, N, 2) for CHW uint8 RGB crops, in chunks."""
    images = torch.from_numpy(np.stack(crops)).float().div_(255.0)
    mus, scales = [], []
    for start in range(0, len(images), batch_size):
        mu, scale = rle_model.predict_sigma(images[start:start + batch_size])
        mus.append(mu)
        scales.append(scale)
    return torch.cat(mus), torch.cat(scales)
