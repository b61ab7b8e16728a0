"""2D-heatmap baseline (FAN-style; the "2D heatmap-based detector" of AOHR Table 1).

Same backbones as AOHR, then 1x1 convolutions to N heatmaps at the native F/stride resolution; higher
resolutions (L = 128, 256, ... for Table 1) come from 4x4/2 deconvolutions (and a final bilinear resize
when L is not a power-of-two multiple), lower ones from average pooling. Its NL^2 outputs are what makes
L >= F infeasible, which ``benchmarks/head_memory.py`` measures.
"""
from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from facetrack.models.backbones import build_backbone
from facetrack.models.base import LandmarkModel, batch_weight
from facetrack.models.registry import register_model, register_preset


class Heatmap2D(LandmarkModel):
    """2D heatmap regressor; ``forward`` returns ``{"heatmap": (B, N, L, L)}`` with L = ``heatmap_size``."""

    arch = "heatmap2d"

    def __init__(
        self,
        num_points: int = 68,
        scheme: str = "ibug68",
        input_size: int = 256,
        heatmap_size: int | None = None,
        sigma: float = 1.5,
        backbone: dict[str, Any] | str | None = None,
        head_channels: int = 128,
    ) -> None:
        super().__init__(num_points=num_points, scheme=scheme, input_size=input_size)
        from facetrack.codecs.heatmap2d import Heatmap2DCodec

        self.backbone, backbone_spec = build_backbone(backbone or {"name": "hourglass"}, input_size)
        native = input_size // self.backbone.stride
        size = int(heatmap_size or native)
        if size < 1:
            raise ValueError(f"heatmap_size must be >= 1, got {size}")
        self.heatmap_size = size
        self.codec = Heatmap2DCodec(input_size, size, sigma)
        self.config = {
            "num_points": self.num_points, "scheme": self.scheme, "input_size": self.input_size,
            "heatmap_size": size, "sigma": float(sigma), "backbone": backbone_spec, "head_channels": head_channels,
        }
        cin = self.backbone.out_channels
        doublings = int(math.floor(math.log2(size / native))) if size > native else 0
        layers: list[nn.Module] = []
        for _ in range(doublings):
            layers += [
                nn.ConvTranspose2d(cin, head_channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(head_channels),
                nn.ReLU(inplace=True),
            ]
            cin = head_channels
        self.upsampler = nn.Sequential(*layers)
        self.pool_to = size if size < native else None
        self.resize_to = size if size > native and native * 2**doublings != size else None
        self.final = nn.Conv2d(cin, num_points, 1)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.backbone(self.normalize(images))
        if self.pool_to is not None:
            x = F.adaptive_avg_pool2d(x, self.pool_to)
        heatmap = self.final(self.upsampler(x))
        if self.resize_to is not None:
            size = (self.resize_to, self.resize_to)
            heatmap = F.interpolate(heatmap, size=size, mode="bilinear", align_corners=False)
        return {"heatmap": heatmap}

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Mean squared error per heatmap, weighted per landmark, averaged over landmarks and batch (FAN)."""
        heatmap = outputs["heatmap"]
        per_point = (heatmap - targets["heatmap"].to(heatmap)).pow(2).mean(dim=(-2, -1))  # (B, N)
        return (per_point * batch_weight(targets, heatmap)).mean()

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.codec.decode(outputs["heatmap"])


@register_model("heatmap2d")
def build_heatmap2d(**config: Any) -> Heatmap2D:
    """Generic 2D-heatmap model; see :class:`Heatmap2D` for the options."""
    return Heatmap2D(**config)


# FAN-size baseline of AOHR Table 1: 2-stack hourglass of width 256, F = 256, native 64x64 heatmaps.
register_preset("hm2d-hg2-256", "heatmap2d", {
    "input_size": 256, "heatmap_size": 64,
    "backbone": {"name": "hourglass", "stacks": 2, "depth": 4, "width": 256},
})
