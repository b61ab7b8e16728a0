"""2D heatmap targets and decoding: the baseline that AOHR's 1D heatmaps are compared against.

Cells follow the same aligned mapping as the 1D bins (``heatmap1d`` module docstring): cell ``j`` of an H-cell
map is centred on input pixel ``(j + 0.5) * F / H - 0.5``. Targets are peak-1 Gaussians sampled at cell centres.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from facetrack.codecs.heatmap1d import (background_level, bins_to_pixels, check_points, gaussian_1d,
                                        peak_confidence, peak_window_1d, pixels_to_bins, target_weight)


class Heatmap2DCodec:
    """Encode landmarks as 2D Gaussian heatmaps and decode them with DARK-style Taylor refinement.

    ``sigma`` is in *heatmap* cells, the usual 2D convention (HRNet's face models use 1.5 on 64x64 maps, i.e.
    6 px of a 256 crop); a sigma in input pixels would be a near-delta at 64 cells. Decoding: argmax, then one
    Newton step on log h with finite-difference gradient and Hessian over the 3x3 neighbourhood (DARK, Zhang et
    al. 2020, without its pre-smoothing, which is exact for clean targets), falling back to the standard
    quarter-cell shift towards the higher neighbour where log h is not concave there; the result stays within
    half a cell of the argmax.
    """

    def __init__(self, input_size: int = 256, heatmap_size: int = 64, sigma: float = 1.5) -> None:
        if input_size <= 0 or heatmap_size < 3 or sigma <= 0:
            raise ValueError(f"need input_size > 0, heatmap_size >= 3 and sigma > 0, got {input_size}, "
                             f"{heatmap_size}, {sigma}")
        self.input_size = int(input_size)
        self.heatmap_size = int(heatmap_size)
        self.ratio = self.heatmap_size / self.input_size
        self.sigma = float(sigma)

    def encode(self, points: np.ndarray, visible: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Targets for (N, 2) crop-pixel landmarks: ``heatmap`` (N, H, W) float32 and ``weight`` (N,) float32.

        Weight is 0 for invisible points, NaN points and points outside the crop; NaN points get zero maps.
        """
        points = check_points(points)
        cells = pixels_to_bins(points, self.ratio)
        cells[~np.isfinite(points).all(axis=1)] = np.nan  # a point missing either coordinate is missing
        gx = gaussian_1d(cells[:, 0], self.heatmap_size, self.sigma)
        gy = gaussian_1d(cells[:, 1], self.heatmap_size, self.sigma)
        return {
            "heatmap": (gy[:, :, None] * gx[:, None, :]).astype(np.float32),
            "weight": target_weight(points, self.input_size, visible),
        }

    @torch.no_grad()
    def decode(self, heatmap: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, H, W) heatmaps -> coords (B, N, 2) in crop pixels and confidence (B, N) in [0, 1]."""
        size = self.heatmap_size
        if heatmap.shape[-2:] != (size, size):
            raise ValueError(f"heatmap must be (..., N, {size}, {size}), got {tuple(heatmap.shape)}")
        lead = heatmap.shape[:-2]
        flat = heatmap.reshape(-1, size * size).float()
        idx = flat.argmax(dim=-1)
        row, col = idx // size, idx % size
        # 3x3 neighbourhood centred one cell inside the border, so every finite difference exists.
        r0, c0 = row.clamp(1, size - 2), col.clamp(1, size - 2)
        offsets = torch.arange(-1, 2, device=flat.device)
        rows = (r0[:, None, None] + offsets[None, :, None])
        cols = (c0[:, None, None] + offsets[None, None, :])
        logs = flat.gather(-1, (rows * size + cols).reshape(-1, 9)).clamp_min(1e-12).log().reshape(-1, 3, 3)
        gx = 0.5 * (logs[:, 1, 2] - logs[:, 1, 0])
        gy = 0.5 * (logs[:, 2, 1] - logs[:, 0, 1])
        hxx = logs[:, 1, 2] - 2 * logs[:, 1, 1] + logs[:, 1, 0]
        hyy = logs[:, 2, 1] - 2 * logs[:, 1, 1] + logs[:, 0, 1]
        hxy = 0.25 * (logs[:, 2, 2] - logs[:, 2, 0] - logs[:, 0, 2] + logs[:, 0, 0])
        det = hxx * hyy - hxy * hxy
        concave = (hxx < 0) & (det > 0)
        safe_det = torch.where(concave, det, torch.ones_like(det))
        dx = -(hyy * gx - hxy * gy) / safe_det
        dy = -(hxx * gy - hxy * gx) / safe_det
        quarter_x, quarter_y = 0.25 * torch.sign(gx), 0.25 * torch.sign(gy)
        dx = torch.where(concave, dx, quarter_x)
        dy = torch.where(concave, dy, quarter_y)
        x = torch.minimum(torch.maximum(c0 + dx, col - 0.5), col + 0.5)
        y = torch.minimum(torch.maximum(r0 + dy, row - 0.5), row + 0.5)
        # Peak height: the second-order model of log h at the refined point (the argmax value if not concave).
        tx, ty = x - c0, y - r0
        quad = 0.5 * (hxx * tx * tx + 2 * hxy * tx * ty + hyy * ty * ty)
        at_max = flat.gather(-1, idx[:, None])[:, 0]
        model = (logs[:, 1, 1] + gx * tx + gy * ty + quad).exp()
        height = torch.maximum(torch.where(concave, model, at_max), at_max)
        # No more than a Gaussian of this sigma can rise above its highest sample (half a cell off on both axes).
        height = torch.minimum(height, at_max * math.exp(0.25 / self.sigma**2))
        coords = bins_to_pixels(torch.stack([x, y], dim=-1), self.ratio)
        half = int(math.ceil(3 * self.sigma)) + 1
        rows_w = peak_window_1d(row, size, half)
        cols_w = peak_window_1d(col, size, half)
        window = rows_w[:, :, None] * size + cols_w[:, None, :]
        window = torch.where((rows_w[:, :, None] >= 0) & (cols_w[:, None, :] >= 0), window, -1)
        conf = peak_confidence(height, background_level(flat, window.reshape(len(flat), -1)))
        return coords.reshape(*lead, 2), conf.reshape(lead)
