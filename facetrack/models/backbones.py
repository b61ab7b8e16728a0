"""Backbones by name: the paper's stacked hourglass and a light MobileNetV2-style CNN for real-time CPU use.

A backbone maps normalised images (B, 3, F, F) to features (B, out_channels, F/stride, F/stride). Its spec
is a JSON-serialisable dict ``{"name": ..., **options}``; :func:`resolve_backbone` fills the defaults so a
model's config records every option it was built with.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from facetrack.errors import ModelError
from facetrack.models.blocks import BasicBlock, ConvBNAct, InvertedResidual
from facetrack.models.hourglass import StackedHourglass


class LiteBackbone(nn.Module):
    """Inverted-residual CNN (about 0.1-0.2 M parameters) with output stride 8 (or 4).

    Built for a few milliseconds per 128-px face on two CPU cores: the full-resolution stages are a single
    strided conv and a depthwise-separable downsampling (no channel expansion where maps are large), and the
    inverted residual blocks (``blocks`` = how many at F/4, at F/stride with ``channels[2]``, then with
    ``channels[3]``) run at F/4 and below.
    """

    def __init__(
        self,
        channels: tuple[int, int, int, int] | list[int] = (16, 24, 48, 64),
        blocks: tuple[int, int, int] | list[int] = (1, 2, 2),
        expand: int = 4,
        out_channels: int = 96,
        stride: int = 8,
    ) -> None:
        super().__init__()
        if len(channels) != 4 or len(blocks) != 3 or min(blocks) < 1:
            raise ValueError("lite backbone needs 4 channel counts and 3 block counts >= 1")
        if stride not in (4, 8):
            raise ValueError(f"lite backbone stride must be 4 or 8, got {stride}")
        c0, c1, c2, c3 = channels
        self.stride = stride
        self.out_channels = out_channels
        layers: list[nn.Module] = [
            ConvBNAct(3, c0, 3, stride=2),
            ConvBNAct(c0, c0, 3, stride=2, groups=c0),
            ConvBNAct(c0, c1, 1),
        ]
        layers += [InvertedResidual(c1, c1, expand=expand) for _ in range(blocks[0])]
        for cin, cout, n, s in ((c1, c2, blocks[1], 2 if stride == 8 else 1), (c2, c3, blocks[2], 1)):
            layers.append(InvertedResidual(cin, cout, stride=s, expand=expand))
            layers += [InvertedResidual(cout, cout, expand=expand) for _ in range(n - 1)]
        layers.append(ConvBNAct(c3, out_channels, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images)


class PlainBackbone(nn.Module):
    """Plain ResNet-style CNN with output stride 8: strided 3x3 convs between stages of basic blocks.

    ``channels`` = widths at F/2, F/4, F/8 and of the last stage (also at F/8); ``blocks`` = basic blocks at F/4,
    at F/8 and in the last stage. No depthwise convs: at 128 px and these widths the dense convs are what a
    2-core CPU runs fastest, and they learn faster from 2,000 faces than the inverted residuals did.
    """

    def __init__(
        self,
        channels: tuple[int, int, int, int] | list[int] = (24, 48, 96, 128),
        blocks: tuple[int, int, int] | list[int] = (1, 2, 1),
        out_channels: int = 128,
    ) -> None:
        super().__init__()
        if len(channels) != 4 or len(blocks) != 3 or min(blocks) < 0:
            raise ValueError("plain backbone needs 4 channel counts and 3 block counts >= 0")
        c0, c1, c2, c3 = channels
        self.stride = 8
        self.out_channels = out_channels
        layers: list[nn.Module] = [ConvBNAct(3, c0, 3, stride=2), ConvBNAct(c0, c1, 3, stride=2)]
        layers += [BasicBlock(c1) for _ in range(blocks[0])]
        layers.append(ConvBNAct(c1, c2, 3, stride=2))
        layers += [BasicBlock(c2) for _ in range(blocks[1])]
        if c3 != c2:
            layers.append(ConvBNAct(c2, c3, 3))
        layers += [BasicBlock(c3) for _ in range(blocks[2])]
        if out_channels != c3:
            layers.append(ConvBNAct(c3, out_channels, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images)


_DEFAULTS: dict[str, dict[str, Any]] = {
    "hourglass": {"stacks": 2, "depth": 4, "width": 256},
    "lite": {"channels": [16, 24, 48, 64], "blocks": [1, 2, 2], "expand": 4, "out_channels": 96, "stride": 8},
    "plain": {"channels": [24, 48, 96, 128], "blocks": [1, 2, 1], "out_channels": 128},
}
_CLASSES: dict[str, type[nn.Module]] = {"hourglass": StackedHourglass, "lite": LiteBackbone, "plain": PlainBackbone}


def resolve_backbone(spec: dict[str, Any] | str) -> dict[str, Any]:
    """Fill a backbone spec's defaults so that configs are complete and comparable."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.get("name", "hourglass")
    if name not in _DEFAULTS:
        raise ModelError(f"unknown backbone {name!r}; known: {', '.join(sorted(_DEFAULTS))}")
    unknown = set(spec) - set(_DEFAULTS[name]) - {"name"}
    if unknown:
        raise ModelError(f"backbone {name!r} has no option(s) {', '.join(sorted(unknown))}")
    return {"name": name, **_DEFAULTS[name], **{k: v for k, v in spec.items() if k != "name"}}


def build_backbone(spec: dict[str, Any] | str, input_size: int) -> tuple[nn.Module, dict[str, Any]]:
    """Build a backbone from its spec; checks that ``input_size`` suits its pooling. Returns (module, full spec)."""
    full = resolve_backbone(spec)
    options = {k: v for k, v in full.items() if k != "name"}
    try:
        module: nn.Module = _CLASSES[full["name"]](**options)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"backbone {full}: {exc}") from exc
    size = input_size // module.stride
    levels = 2 ** full["depth"] if full["name"] == "hourglass" else 1
    if input_size % module.stride or size % levels:
        raise ModelError(
            f"input_size {input_size} does not suit backbone {full}: F/{module.stride} must be divisible by {levels}"
        )
    return module, full
