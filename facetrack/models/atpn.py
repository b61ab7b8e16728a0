"""ATPN: face alignment, tracking and pose network for mobile devices (Xia, PhD thesis 2024, ch. 3, Fig. 3.2).

backbone (MobileNet-V3 blocks) -> landmark branch: FPN fusion of the 28/14/7 maps (1x1 convs + deconvs), a
multiview block per level, CoordConv downsampling of every level to 7x7, a 7x7 coord depthwise block -> the residual
dS from the mean shape, S1 = S0 + dS -> the parameter-free heatmap of Eq. 3.1 (floored at 0.5) multiplied into the
low-level 28x28 features (Eq. 3.2) -> pose branch (MobileNet-V3 blocks, tanh x pi: yaw, pitch, roll in radians) and
tracking branch (MobileNet-V3 blocks, softmax: p(face)), in parallel.

Choices where the thesis says nothing (or is garbled), each named here so a reader can change it:
- Input 112 px; stride 4 at the 4th block, so the low-level / mid / high maps are 28x28, 14x14, 7x7 as in the text
  (the thesis's sizes match a 224 input at strides 8/16/32; at 112 the same maps cost a quarter of the arithmetic).
- Block widths, kernels and expansions follow MobileNet-V3-small's pattern (Howard et al. 2019), scaled to about 1 M
  parameters for backbone + landmark branch (the thesis: 1.1 M).
- Multiview block (Bulat & Tzimiropoulos 2017): three sequential 3x3 convs of C/2, C/4, C/4 channels, concatenated,
  plus the residual input.
- CoordConv downsampling: x/y channels appended, one 3x3 conv with stride 4 / 2 / 1 for the 28 / 14 / 7 levels;
  the three 7x7 maps are concatenated.
- Heatmap distance unit: cells of the 28x28 map (so H falls to its 0.5 floor 3 cells, 12 input pixels, from the
  nearest landmark). S1 is detached: the heatmap feeds the other tasks, it is not a path for landmark gradients.
- Landmark loss (Eq. 3.3): per face, the mean point-to-point distance over the annotated points divided by the
  inter-ocular distance (i.e. the NME itself); Eq. 3.4's L2 term is Adam's weight decay in the recipe.
- Tracking loss (Eq. 3.5, printed as -(y log p + (1 - y)(1 - log p))): the standard binary cross-entropy
  -(y log p + (1 - y) log(1 - p)), computed from the two softmax logits.
- Pose loss (Eq. 3.7, printed as sqrt(||P - P'||) / 3): the mean absolute error over the three angles (what Eq. 3.9
  evaluates); see ``pose_loss``.
- ``decode`` gives each landmark the tracking branch's p(face) as its confidence: ATPN has no per-landmark
  confidence, and p(face) is what the tracker's keep / re-detect rule reads (``tracking.pipeline``).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facetrack.models.base import LandmarkModel, batch_weight
from facetrack.models.blocks import ConvBNAct
from facetrack.models.registry import register_model, register_preset

# (out channels, kernel, expansion, stride, squeeze-excite, hard-swish) per MobileNet-V3 block after the stem.
BACKBONE = (
    (24, 3, 64, 2, False, False),   # 56 -> 28
    (24, 3, 72, 1, False, False),
    (32, 5, 72, 1, True, False),
    (32, 5, 96, 1, True, True),     # 4th block: the low-level 28x28 features F_I (Fig. 3.4)
    (64, 5, 160, 2, True, True),    # 14x14
    (64, 5, 192, 1, True, True),
    (96, 5, 256, 2, True, True),    # 7x7
    (96, 5, 384, 1, True, True),
)
LOW_LEVEL = 3  # index of the 4th block
AUX_OUTPUTS = ("pose", "face_logits")


class SqueezeExcite(nn.Module):
    """MobileNet-V3's channel attention: global pool -> 1x1 reduce -> ReLU -> 1x1 expand -> hard-sigmoid."""

    def __init__(self, channels: int, reduce: int = 4) -> None:
        super().__init__()
        mid = max(8, channels // reduce)
        self.fc1 = nn.Conv2d(channels, mid, 1)
        self.fc2 = nn.Conv2d(mid, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class MobileV3Block(nn.Module):
    """MobileNet-V3 bneck: 1x1 expand, depthwise k x k (stride), optional SE, linear 1x1 project, residual."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int, se: bool, hswish: bool) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers: list[nn.Module] = []
        if expand != cin:
            layers.append(ConvBNAct(cin, expand, 1, act=act))
        layers.append(ConvBNAct(expand, expand, kernel, stride=stride, groups=expand, act=act))
        if se:
            layers.append(SqueezeExcite(expand))
        layers.append(ConvBNAct(expand, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def coord_channels(x: Tensor) -> Tensor:
    """``x`` with two channels appended holding the cell centres' x and y in [-1, 1] (CoordConv, Liu et al. 2018)."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([x, xs, ys], dim=1)


class CoordConv(nn.Module):
    """CoordConv + BN + hard-swish: a 3x3 conv (stride ``stride``) over the input and its coordinate channels."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = ConvBNAct(cin + 2, cout, kernel, stride=stride, act=nn.Hardswish)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(coord_channels(x))


class MultiviewBlock(nn.Module):
    """Bulat & Tzimiropoulos' multi-scale block (Fig. 3.3): three sequential 3x3 convs (receptive fields 3, 5, 7)
    of C/2, C/4, C/4 channels, concatenated back to C, plus the residual input (which keeps the low-level cues)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c2, c4 = channels // 2, channels // 4
        self.conv1 = ConvBNAct(channels, c2, 3)
        self.conv2 = ConvBNAct(c2, c4, 3)
        self.conv3 = ConvBNAct(c4, channels - c2 - c4, 3)

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv1(x)
        b = self.conv2(a)
        c = self.conv3(b)
        return x + torch.cat([a, b, c], dim=1)


class CoordDepthwiseHead(nn.Module):
    """The 7x7 coord depthwise block: coordinate channels, 1x1 conv, one depthwise conv the size of the map (a
    per-channel weighting of every cell, which keeps where things are, unlike pooling), then a linear layer."""

    def __init__(self, cin: int, hidden: int, size: int, outputs: int) -> None:
        super().__init__()
        self.expand = ConvBNAct(cin + 2, hidden, 1, act=nn.Hardswish)
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, size, groups=hidden, bias=False),
                                       nn.BatchNorm2d(hidden), nn.Hardswish())
        self.fc = nn.Linear(hidden, outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.depthwise(self.expand(coord_channels(x))).flatten(1))


def _branch(cin: int, widths: tuple[int, ...], hidden: int, outputs: int) -> nn.Sequential:
    """Pose / tracking branch: stride-2 MobileNet-V3 blocks on F_O (28 -> 14 -> 7), 1x1 conv, pool, linear."""
    layers: list[nn.Module] = []
    channels = cin
    for width in widths:
        layers.append(MobileV3Block(channels, width, 3, 3 * channels, 2, True, True))
        channels = width
    layers += [ConvBNAct(channels, hidden, 1, act=nn.Hardswish), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(hidden, outputs)]
    return nn.Sequential(*layers)


def heatmap(shape: Tensor, size: int, floor: float = 0.5) -> Tensor:
    """Eq. 3.1: H(x, y) = 1 / sqrt(1 + min_i ||(x, y) - S_i||) on a size x size grid, then max(H, floor).

    ``shape`` (B, N, 2) in normalised crop coordinates ([0, 1] spans the crop's extent); distances in grid cells.
    """
    centres = (torch.arange(size, dtype=shape.dtype, device=shape.device) + 0.5) / size
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # (S*S, 2)
    d2 = (grid[None, :, None, :] - shape[:, None, :, :]).pow(2).sum(-1)  # (B, S*S, N)
    nearest = d2.min(dim=-1).values.clamp_min(0.0).sqrt() * size
    h = (1.0 + nearest).rsqrt().clamp_min(floor)
    return h.view(shape.shape[0], 1, size, size)


@lru_cache(maxsize=None)
def mean_shape(scheme: str, crop_scale: float) -> np.ndarray:
    """S0: the packaged shape model's mean face cut by the crop policy (square, ``crop_scale`` x the larger side of
    the landmark box, centred), in normalised crop coordinates; iBUG-68 only."""
    from facetrack.data.transforms import box_from_landmarks
    from facetrack.tracking.plausibility import load_shape_check

    check = load_shape_check() if scheme == "ibug68" else None
    if check is None:
        raise ValueError(f"ATPN needs the packaged iBUG-68 shape model for its mean shape (scheme {scheme!r})")
    mean = np.asarray(check.model.mean, dtype=np.float64)
    box = box_from_landmarks(mean)
    side = crop_scale * float(max(box[2] - box[0], box[3] - box[1]))
    return (mean - 0.5 * (box[:2] + box[2:])) / side + 0.5


class ATPN(LandmarkModel):
    """ATPN; ``forward`` returns ``{"shape": S1 (B, N, 2) normalised crop coordinates, "pose": (B, 3) radians
    (yaw, pitch, roll), "face_logits": (B, 2) (background, face)}``. ``predict`` gives crop pixels and p(face)."""

    arch = "atpn"

    def __init__(self, num_points: int = 68, scheme: str = "ibug68", input_size: int = 112, fpn_channels: int = 48,
                 level_channels: int = 64, head_channels: int = 256, crop_scale: float = 1.25,
                 heatmap_floor: float = 0.5) -> None:
        super().__init__(num_points=num_points, scheme=scheme, input_size=input_size)
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 (28/14/7 maps at 112), got {input_size}")
        if fpn_channels % 4 or fpn_channels < 8:
            raise ValueError(f"fpn_channels must be a multiple of 4 and >= 8, got {fpn_channels}")
        s0 = mean_shape(scheme, float(crop_scale))
        if len(s0) != num_points:
            raise ValueError(f"the mean shape has {len(s0)} points, the model {num_points}")
        self.config = {"num_points": self.num_points, "scheme": self.scheme, "input_size": self.input_size,
                       "fpn_channels": fpn_channels, "level_channels": level_channels,
                       "head_channels": head_channels, "crop_scale": float(crop_scale),
                       "heatmap_floor": float(heatmap_floor)}
        self.codec = None
        self.heatmap_floor = float(heatmap_floor)
        self.low_size = input_size // 4
        self.register_buffer("s0", torch.tensor(s0, dtype=torch.float32), persistent=False)
        self.stem = ConvBNAct(3, 16, 3, stride=2, act=nn.Hardswish)
        blocks, channels = [], 16
        for cout, k, exp, stride, se, hs in BACKBONE:
            blocks.append(MobileV3Block(channels, cout, k, exp, stride, se, hs))
            channels = cout
        self.blocks = nn.ModuleList(blocks)
        c28, c14, c7 = BACKBONE[LOW_LEVEL][0], BACKBONE[5][0], BACKBONE[7][0]
        c = fpn_channels
        self.lateral = nn.ModuleList([nn.Conv2d(cin, c, 1) for cin in (c28, c14, c7)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, groups=c) for _ in range(2)])
        self.multiview = nn.ModuleList([MultiviewBlock(c) for _ in range(3)])
        self.down = nn.ModuleList([CoordConv(c, level_channels, s) for s in (4, 2, 1)])
        self.head = CoordDepthwiseHead(3 * level_channels, head_channels, input_size // 16, 2 * num_points)
        with torch.no_grad():  # start at the mean shape
            self.head.fc.weight.mul_(0.01)
            self.head.fc.bias.zero_()
        self.pose_branch = _branch(c28, (48, 64), 128, 3)
        self.track_branch = _branch(c28, (32, 48), 96, 2)

    def features(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The backbone's 28x28 (low-level, 4th block), 14x14 and 7x7 maps (at input 112)."""
        x = self.stem(self.normalize(images))
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in (LOW_LEVEL, 5, 7):
                outs.append(x)
        return outs[0], outs[1], outs[2]

    def landmarks(self, c28: Tensor, c14: Tensor, c7: Tensor) -> Tensor:
        """The landmark branch: S1 = S0 + dS (B, N, 2), normalised crop coordinates."""
        p7 = self.lateral[2](c7)
        p14 = self.lateral[1](c14) + self.up[1](p7)
        p28 = self.lateral[0](c28) + self.up[0](p14)
        maps = [down(view(p)) for p, view, down in zip((p28, p14, p7), self.multiview, self.down)]
        delta = self.head(torch.cat(maps, dim=1)).view(-1, self.num_points, 2)
        return self.s0.to(delta.dtype) + delta

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        c28, c14, c7 = self.features(images)
        shape = self.landmarks(c28, c14, c7)
        fused = c28 * heatmap(shape.detach().float(), c28.shape[-1], self.heatmap_floor).to(c28.dtype)  # Eq. 3.2
        return {"shape": shape, "pose": math.pi * torch.tanh(self.pose_branch(fused)),
                "face_logits": self.track_branch(fused)}

    def encode_targets(self, points: np.ndarray, visible: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Normalised target shape (N, 2), per-point weights (N,) and the inter-ocular distance in crop pixels."""
        from facetrack.codecs.heatmap1d import target_weight
        from facetrack.schemes import get_scheme

        points = np.asarray(points, dtype=np.float64)
        if points.shape != (self.num_points, 2):
            raise ValueError(f"expected points of shape ({self.num_points}, 2), got {points.shape}")
        weight = target_weight(points, self.input_size, visible)
        ocular = get_scheme(self.scheme).ocular
        iod = float(np.linalg.norm(points[ocular[0]] - points[ocular[1]])) if ocular else float(np.ptp(points[:, 0]))
        return {"shape": np.nan_to_num((points + 0.5) / self.input_size), "weight": weight,
                "iod": np.array([max(iod, 1.0)])}

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Eq. 3.3: mean over annotated points of the point-to-point distance / inter-ocular distance, per face."""
        shape = outputs["shape"].float()
        target = targets["shape"].to(shape)
        weight = batch_weight(targets, shape)
        dist = (shape - target).pow(2).sum(-1).add(1e-12).sqrt() * self.input_size  # crop px
        per_face = (dist * weight).sum(-1) / weight.sum(-1).clamp_min(1.0)
        return (per_face / targets["iod"].to(shape).reshape(-1)).mean()

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        coords = outputs["shape"] * self.input_size - 0.5
        p_face = torch.softmax(outputs["face_logits"].float(), dim=-1)[:, 1:2]
        return coords, p_face.expand(-1, self.num_points)

    @staticmethod
    def extras(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The outputs besides the landmarks: ``pose`` (B, 3) degrees (yaw, pitch, roll in the crop's frame,
        ``facetrack.pose`` conventions) and ``face`` (B,) p(face) of the tracking branch."""
        return {"pose": torch.rad2deg(outputs["pose"].float()),
                "face": torch.softmax(outputs["face_logits"].float(), dim=-1)[:, 1]}

    def aux_predictor(self, runtime: str, threads: int | None = None) -> Any:
        """``predict(crops) -> (coords, conf, extras)`` in one network call, with onnxruntime when the Landmarker's
        predictor runs there (the same cached graph, whose raw outputs include pose and face logits)."""
        if runtime != "onnx":
            def run_torch(images: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
                with torch.no_grad():
                    outputs = self(images)
                    coords, conf = self.decode(outputs)
                return coords, conf, self.extras(outputs)

            return run_torch
        from facetrack.models import onnx_runtime as ort_run

        keys = sorted(self(torch.zeros(1, 3, self.input_size, self.input_size)))
        names = ["coords", "confidences", *keys]

        def export() -> bytes:
            return ort_run._export(ort_run._Predict(self, keys), (torch.zeros(1, 3, self.input_size, self.input_size),),
                                   ["images"], names)

        session = ort_run._session(self, "predict", export, threads)

        def run_onnx(images: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
            raw = session.run(None, {"images": ort_run._array(images)})
            results = dict(zip(names, (torch.from_numpy(r) for r in raw)))
            return results["coords"], results["confidences"], self.extras(results)

        return run_onnx


def track_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. 3.5 in its standard form: binary cross-entropy of p(face) = softmax(logits)[1] against 0/1 labels."""
    return F.cross_entropy(logits.float(), labels.long())


def pose_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Eq. 3.7 read as the mean absolute angle error over (yaw, pitch, roll), radians; the printed
    sqrt(||P - P'||) / 3 is not a per-angle error and its square root has no gradient at a perfect fit."""
    return (pred.float() - target.float()).abs().mean()


@register_model("atpn")
def build_atpn(**config: Any) -> ATPN:
    """Generic ATPN; see :class:`ATPN` for the options."""
    return ATPN(**config)


# The thesis's model at 112 px input (28/14/7 maps): about 1 M parameters for backbone + landmark branch.
register_preset("atpn-68", "atpn", {"input_size": 112})
