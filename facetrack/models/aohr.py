"""AOHR: attentive one-dimensional heatmap regression detector (Yin et al., ACM MM 2020, section 4.1, Fig. 2a).

backbone features (C, S, S) -> CNN1x compresses along y with (2, 1)-strided convs to D^x (K*d channels x S),
CNN1y compresses along x to D^y -> co-attention between D^x_k and D^y_k (Eq. 9-10) -> CNN2x / CNN2y (1D convs)
-> 1D deconvolution (kernel = stride = M) to per-landmark 1D features s^x, s^y (N x L) -> 1D heatmaps h^x, h^y.
The output costs 2NL numbers instead of the NL^2 of 2D heatmaps, so L can exceed the input size F
(the paper uses L = 3F) and the quantisation error (section 3) becomes negligible.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from facetrack.models.backbones import build_backbone
from facetrack.models.base import LandmarkModel, batch_weight
from facetrack.models.blocks import Conv1dBNAct, ConvBNAct, DepthwiseFilter1d, PatchDeconv1d, resize_1d
from facetrack.models.registry import register_model, register_preset


class CoAttention(nn.Module):
    """Eq. 9-10: each channel group k of D^x (W x d) and D^y (d x H) attends to the other through P and Q.

    W^yx_k = softmax(D^x_k Q D^y_k / sqrt(d)) (rows over H), D^x_k' = D^x_k + gamma W^yx_k (D^y_k)^T, and
    symmetrically for y with P. P and Q (d x d) are shared by all K groups, as in the paper.
    """

    def __init__(self, dim: int, gamma: float) -> None:
        super().__init__()
        self.dim = dim
        self.gamma = float(gamma)
        # Identity start: the affinity begins as a plain scaled dot product between the two axes' features.
        self.P = nn.Parameter(torch.eye(dim))
        self.Q = nn.Parameter(torch.eye(dim))

    def forward(self, dx: Tensor, dy: Tensor) -> tuple[Tensor, Tensor]:
        """dx (B, K, d, W), dy (B, K, d, H) -> the fused pair, same shapes."""
        x = dx.transpose(-1, -2)  # D^x_k as (W, d)
        scale = 1.0 / math.sqrt(self.dim)
        w_yx = torch.softmax((x @ self.Q @ dy) * scale, dim=-1)  # (B, K, W, H)
        w_xy = torch.softmax((dy.transpose(-1, -2) @ self.P @ dx) * scale, dim=-1)  # (B, K, H, W)
        new_x = x + self.gamma * (w_yx @ dy.transpose(-1, -2))  # (W, d)
        new_y = dy + self.gamma * (w_xy @ x).transpose(-1, -2)  # (d, H)
        return new_x.transpose(-1, -2), new_y


def _compressor(cin: int, cout: int, size: int, axis: str, separable: bool, mode: str) -> nn.Sequential:
    """CNN1x (axis "y": stride (2, 1)) or CNN1y (axis "x": stride (1, 2)): halve that axis until it is 1.

    ``mode="full"`` instead strides over the whole axis at once with one depthwise (size x 3) conv and a 1x1
    conv: two layers instead of log2(size) pairs, for CPU latency in the lite model.
    """
    stride = (2, 1) if axis == "y" else (1, 2)
    if mode == "full":
        kernel, padding = ((size, 3), (0, 1)) if axis == "y" else ((3, size), (1, 0))
        return nn.Sequential(
            nn.Conv2d(cin, cin, kernel, padding=padding, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            ConvBNAct(cin, cout, 1),
        )
    layers: list[nn.Module] = []
    channels = cin
    while True:
        if separable:
            layers += [ConvBNAct(channels, channels, 3, stride=stride, groups=channels), ConvBNAct(channels, cout, 1)]
        else:
            layers.append(ConvBNAct(channels, cout, 3, stride=stride))
        channels = cout
        size = (size - 1) // 2 + 1
        if size == 1:
            return nn.Sequential(*layers)


class AOHR(LandmarkModel):
    """The AOHR detector; ``forward`` returns ``{"hx", "hy"}`` of shape (B, N, L), L = round(ratio * F).

    ``encode_1d`` exposes the per-landmark 1D features s^x, s^y (B, N, L) before the 1D heatmap decoders
    (``decode_1d``), which the 1DFormer refines. ``gamma = 0`` removes the co-attention entirely.
    """

    arch = "aohr"

    def __init__(
        self,
        num_points: int = 68,
        scheme: str = "ibug68",
        input_size: int = 256,
        ratio: float = 3.0,
        sigma: float = 1.5,
        backbone: dict[str, Any] | str | None = None,
        gamma: float = 0.4,
        head_channels: int = 256,
        attn_dim: int = 16,
        head_layers: int = 2,
        head_separable: bool = False,
        head_compress: str = "halving",
        decoder_kernel: int = 5,
        loss: str = "l2",
        point_channels: int = 1,
    ) -> None:
        super().__init__(num_points=num_points, scheme=scheme, input_size=input_size)
        from facetrack.codecs.heatmap1d import Heatmap1DCodec

        if head_channels % attn_dim:
            raise ValueError(f"head_channels ({head_channels}) must be a multiple of attn_dim ({attn_dim})")
        if head_compress not in HEADS:
            raise ValueError(f"head_compress must be one of {HEADS} ('halving' is the paper's), got {head_compress!r}")
        if head_compress == "flatten" and gamma > 0:
            raise ValueError("the 'flatten' head has no per-axis features to co-attend: set gamma = 0")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if gamma < 0 or head_layers < 1 or decoder_kernel < 1 or decoder_kernel % 2 == 0:
            raise ValueError("need gamma >= 0, head_layers >= 1 and an odd decoder_kernel")
        self.backbone, backbone_spec = build_backbone(backbone or {"name": "hourglass"}, input_size)
        self.codec = Heatmap1DCodec(input_size, ratio, sigma)
        self.length = int(self.codec.length)
        self.feature_size = input_size // self.backbone.stride
        self.upsample = max(1, math.ceil(self.length / self.feature_size))  # M of the paper
        self.attn_dim = attn_dim
        self.attn_groups = head_channels // attn_dim  # K of the paper
        self.config = {
            "num_points": self.num_points, "scheme": self.scheme, "input_size": self.input_size,
            "ratio": float(ratio), "sigma": float(sigma), "backbone": backbone_spec, "gamma": float(gamma),
            "head_channels": head_channels, "attn_dim": attn_dim, "head_layers": head_layers,
            "head_separable": bool(head_separable), "head_compress": head_compress, "decoder_kernel": decoder_kernel,
            "loss": loss, "point_channels": int(point_channels),
        }
        self.loss_type = loss
        cin, size = self.backbone.out_channels, self.feature_size
        if head_compress == "flatten":
            self._build_flatten_head(cin, size, point_channels)
            self.decoder_x = self._decoder(num_points, decoder_kernel)
            self.decoder_y = self._decoder(num_points, decoder_kernel)
            return
        self.cnn1x = _compressor(cin, head_channels, size, "y", head_separable, head_compress)
        self.cnn1y = _compressor(cin, head_channels, size, "x", head_separable, head_compress)
        self.coattention = CoAttention(attn_dim, gamma) if gamma > 0 else None
        self.cnn2x = nn.Sequential(*(Conv1dBNAct(head_channels, head_channels) for _ in range(head_layers)))
        self.cnn2y = nn.Sequential(*(Conv1dBNAct(head_channels, head_channels) for _ in range(head_layers)))
        m = self.upsample
        self.deconv_x = PatchDeconv1d(head_channels, num_points, m)
        self.deconv_y = PatchDeconv1d(head_channels, num_points, m)
        self.decoder_x = self._decoder(num_points, decoder_kernel)
        self.decoder_y = self._decoder(num_points, decoder_kernel)

    def _build_flatten_head(self, cin: int, size: int, channels: int) -> None:
        """SimCC-style head (Li et al., ECCV 2022): per landmark, ``channels`` maps of size S x S from a 1x1 conv,
        flattened and projected to the L bins of each axis by one linear layer shared by all landmarks.

        Every bin sees the whole map, so the head learns the marginalisation and the up-sampling to L = rF
        itself; on a 16 x 16 map it costs a fraction of a millisecond and, unlike the axis compressors, leaves
        no channel bottleneck shared by the 68 landmarks.
        """
        self.point_maps = nn.Conv2d(cin, self.num_points * channels, 1)
        self.fc_x = nn.Linear(channels * size * size, self.length)
        self.fc_y = nn.Linear(channels * size * size, self.length)

    @staticmethod
    def _decoder(n: int, kernel: int) -> DepthwiseFilter1d:
        """Per-landmark 1D filter from s to h; starts as the identity, so at init h is the deconv output."""
        conv = DepthwiseFilter1d(n, kernel)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[:, 0, kernel // 2] = 1.0
            conv.bias.zero_()
        return conv

    def encode_1d(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Per-landmark 1D features (s^x, s^y), each (B, N, L), from RGB [0, 1] images (B, 3, F, F)."""
        features = self.backbone(self.normalize(images))
        if self.config["head_compress"] == "flatten":
            maps = self.point_maps(features).flatten(2)  # (B, N * c, S * S)
            maps = maps.reshape(maps.shape[0], self.num_points, -1)
            return self.fc_x(maps), self.fc_y(maps)
        dx = self.cnn1x(features).squeeze(2)  # (B, C, W)
        dy = self.cnn1y(features).squeeze(3)  # (B, C, H)
        if self.coattention is not None:
            b, c, w = dx.shape
            k, d = self.attn_groups, self.attn_dim
            gx, gy = self.coattention(dx.reshape(b, k, d, w), dy.reshape(b, k, d, dy.shape[-1]))
            dx, dy = gx.reshape(b, c, w), gy.reshape(b, c, -1)
        sx = resize_1d(self.deconv_x(self.cnn2x(dx)), self.length)
        sy = resize_1d(self.deconv_y(self.cnn2y(dy)), self.length)
        return sx, sy

    def decode_1d(self, sx: Tensor, sy: Tensor) -> dict[str, Tensor]:
        """1D heatmaps from per-landmark 1D features (possibly refined by a temporal/structure module).

        With ``loss="kl"`` the decoders give logits, which ``decode`` turns into heatmaps of the codec's scale.
        """
        return {"hx": self.decoder_x(sx), "hy": self.decoder_y(sy)}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.decode_1d(*self.encode_1d(images))

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Eq. 11 (``l2``): squared L2 errors of both 1D heatmaps summed over landmarks, mean over the batch.

        ``kl``: cross-entropy of each axis' softmax against the target Gaussian normalised to a distribution
        (SimCC-style); every bin gets a gradient, which trains small models much faster than L2 on peaky targets.
        """
        hx, hy = outputs["hx"], outputs["hy"]
        tx, ty = targets["hx"].to(hx), targets["hy"].to(hy)
        if self.loss_type == "kl":
            per_point = _soft_cross_entropy(hx, tx) + _soft_cross_entropy(hy, ty)
        else:
            per_point = (hx - tx).pow(2).sum(-1) + (hy - ty).pow(2).sum(-1)  # (B, N)
        return (per_point * batch_weight(targets, hx)).sum(-1).mean()

    def heatmaps(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The 1D heatmaps on the codec's scale (peak about 1 where the model is certain), whatever the loss."""
        hx, hy = outputs["hx"], outputs["hy"]
        if self.loss_type == "kl":
            peak = self.codec.target_peak_mass()
            return torch.softmax(hx, -1) / peak, torch.softmax(hy, -1) / peak
        return hx, hy

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.codec.decode(*self.heatmaps(outputs))


LOSSES = ("l2", "kl")
HEADS = ("halving", "full", "flatten")


def _soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy (B, N) of softmax(logits) against the target heatmap normalised to sum 1."""
    dist = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
    return -(dist * torch.log_softmax(logits, -1)).sum(-1)


@register_model("aohr")
def build_aohr(**config: Any) -> AOHR:
    """Generic AOHR; see :class:`AOHR` for the options."""
    return AOHR(**config)


# The paper's detector: 2-stack hourglass of width 256 (FAN), F = 256, L = 3F = 768, gamma = 0.4 (300W).
register_preset("aohr-hg2-256", "aohr", {
    "input_size": 256, "ratio": 3.0, "gamma": 0.4,
    "backbone": {"name": "hourglass", "stacks": 2, "depth": 4, "width": 256}, "head_channels": 256,
})
# Real-time CPU model: light backbone at F/8, one-shot ("full") axis compression, L = 3F = 384.
# Forward ~3-4 ms at batch 1 on 2 CPU threads with BatchNorm folded (inference_copy); "halving" costs ~0.7 ms more.
register_preset("aohr-lite-128", "aohr", {
    "input_size": 128, "ratio": 3.0, "gamma": 0.4, "backbone": {"name": "lite"},
    "head_channels": 64, "attn_dim": 8, "head_layers": 1, "head_separable": True, "head_compress": "full",
})
