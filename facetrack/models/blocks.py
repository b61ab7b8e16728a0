"""Small convolutional building blocks shared by the backbones and heads."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvBNAct(nn.Sequential):
    """conv -> BatchNorm -> activation (ReLU by default); the workhorse of the light backbone and heads."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        padding = (k[0] // 2, k[1] // 2)
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """Pre-activation bottleneck residual block of Newell et al.'s stacked hourglass (BN-ReLU-conv x3).

    The identity path gets a 1x1 projection only when the channel count changes, as in FAN.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1, bias=False),
        )
        self.skip: nn.Module = nn.Identity() if cin == cout else nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3, linear 1x1 project; cheap on CPU for the lite backbone."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden), ConvBNAct(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class BasicBlock(nn.Module):
    """ResNet basic block (two dense 3x3 convs + identity): on a 2-core CPU, oneDNN runs dense convs at small
    channel counts faster per unit of accuracy than depthwise-separable ones (see the ``plain`` backbone)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(channels, channels, 3), ConvBNAct(channels, channels, 3, act=None))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


class Conv1dBNAct(nn.Sequential):
    """1D conv -> BatchNorm1d -> ReLU, used by the 1D heads (CNN2x / CNN2y)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__(
            nn.Conv1d(cin, cout, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm1d(cout),
            nn.ReLU(inplace=True),
        )


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters, the figure model cards and benchmarks report."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def resize_1d(x: Tensor, length: int) -> Tensor:
    """Linearly resample (B, C, W) to (B, C, length) so bin centres stay aligned with the input cells."""
    if x.shape[-1] == length:
        return x
    return torch.nn.functional.interpolate(x, size=length, mode="linear", align_corners=False)


class PatchDeconv1d(nn.ConvTranspose1d):
    """ConvTranspose1d with kernel = stride = M (AOHR's 1D deconvolution), computed as one matrix product.

    Each input position expands independently into M output bins, so the transposed convolution is
    ``x^T @ W`` reshaped; this is exact and several times faster on CPU than the generic kernel.
    Parameters and state_dict keys are those of ``nn.ConvTranspose1d``.
    """

    def __init__(self, cin: int, cout: int, factor: int) -> None:
        super().__init__(cin, cout, kernel_size=factor, stride=factor)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        b, c, w = x.shape
        cout, m = self.out_channels, self.kernel_size[0]
        y = x.transpose(1, 2) @ self.weight.reshape(c, cout * m)  # (B, W, Cout*M)
        y = y.view(b, w, cout, m).permute(0, 2, 1, 3).reshape(b, cout, w * m)
        return y + self.bias[:, None] if self.bias is not None else y


class DepthwiseFilter1d(nn.Conv1d):
    """Per-channel 1D filter (odd kernel, same-length output) as a sum of shifted copies.

    Same parameters as ``nn.Conv1d(n, n, k, padding=k // 2, groups=n)``; a handful of vector ops beats the
    generic convolution for the small kernels and long 1D heatmaps used here.
    """

    def __init__(self, channels: int, kernel: int) -> None:
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {kernel}")
        super().__init__(channels, channels, kernel, padding=kernel // 2, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size[0]
        length = x.shape[-1]
        padded = torch.nn.functional.pad(x, (k // 2, k // 2))
        weight = self.weight[:, 0, :]  # (C, k)
        out = padded[..., 0:length] * weight[:, 0:1]
        for j in range(1, k):
            out = out + padded[..., j : j + length] * weight[:, j : j + 1]
        return out + self.bias[:, None] if self.bias is not None else out


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv in an ``nn.Sequential`` into that conv, in place.

    For inference only (eval-mode statistics are baked in): it removes a third of the operator calls, which
    dominate CPU latency for small models. Returns ``module``; its state_dict keys change, so save weights
    before folding.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        items = list(module._modules.items())
        for (_, conv), (bn_name, bn) in zip(items, items[1:]):
            if isinstance(conv, (nn.Conv1d, nn.Conv2d)) and type(conv) in (nn.Conv1d, nn.Conv2d) and isinstance(
                bn, (nn.BatchNorm1d, nn.BatchNorm2d)
            ):
                fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
                conv.weight = fused.weight
                conv.bias = fused.bias
                module._modules[bn_name] = nn.Identity()
    return module
