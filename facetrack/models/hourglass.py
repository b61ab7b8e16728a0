"""FAN-style stacked hourglass feature extractor (Newell et al. 2016; Bulat & Tzimiropoulos 2017).

AOHR and the 2D-heatmap baseline both start from it (AOHR section 4.1, Table 1), so the comparison of heads
is made on the same features. Unlike FAN, the stacks are not supervised by intermediate heatmaps: the
features of a stack are projected and added to the next stack's input, and the last stack's features
(``width`` channels at F/4) are returned.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from facetrack.models.blocks import Bottleneck


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels: a residual branch at each scale plus a pooled recursive branch."""

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.up = Bottleneck(width, width)
        self.down = Bottleneck(width, width)
        self.inner: nn.Module = Hourglass(depth - 1, width) if depth > 1 else Bottleneck(width, width)
        self.out = Bottleneck(width, width)

    def forward(self, x: Tensor) -> Tensor:
        low = self.out(self.inner(self.down(F.avg_pool2d(x, 2, stride=2))))
        return self.up(x) + F.interpolate(low, scale_factor=2.0, mode="nearest")


class StackedHourglass(nn.Module):
    """stem (7x7/2 conv, residual blocks, 2x pooling to F/4) then ``stacks`` hourglasses of ``width`` channels.

    The stem channels follow FAN (64, 128 at width 256) and shrink with ``width`` so reduced models stay cheap.
    """

    stride = 4

    def __init__(self, stacks: int = 2, depth: int = 4, width: int = 256) -> None:
        super().__init__()
        if stacks < 1 or depth < 1 or width < 8:
            raise ValueError(f"hourglass needs stacks >= 1, depth >= 1, width >= 8 (got {stacks}, {depth}, {width})")
        c1, c2 = max(width // 4, 8), max(width // 2, 8)
        self.out_channels = width
        self.depth = depth
        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            Bottleneck(c1, c2),
            nn.AvgPool2d(2, stride=2),
            Bottleneck(c2, c2),
            Bottleneck(c2, width),
        )
        self.hourglasses = nn.ModuleList(Hourglass(depth, width) for _ in range(stacks))
        self.tops = nn.ModuleList(Bottleneck(width, width) for _ in range(stacks))
        self.lasts = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            for _ in range(stacks)
        )
        # FAN adds bl(ll) + al(heatmaps) to the next input; without intermediate heatmaps only bl remains.
        self.merges = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(stacks - 1))

    def forward(self, images: Tensor) -> Tensor:
        x = self.stem(images)
        features = x
        for i, hourglass in enumerate(self.hourglasses):
            features = self.lasts[i](self.tops[i](hourglass(x)))
            if i < len(self.merges):
                x = x + self.merges[i](features)
        return features
