"""Local-motion video alignment networks (Belmonte et al., WACV 2019, section 3): six models on 64x64 crops.

- ``2d``: coordinate regression, five [3x3 conv + BN + ELU + 2x2 max-pool] blocks (32 -> 512 filters, 2x2x512
  maps), FC 1024 + BN + ELU + dropout 0.2, FC 2N (coordinates normalised to [-0.5, 0.5]); one frame.
- ``3d``: the same with 3x3x3 convolutions over a window of 3 frames (no temporal pooling: "early" connectivity).
- ``2drnn`` / ``3drnn``: the first FC replaced by an LSTM of the same width over the window's per-frame features
  ("late" connectivity); the last time step predicts.
- ``2dfcrnn`` / ``3dfcrnn``: heatmap regression: an encoder of five stride-2 3x3 convs (2D or 3D, constant width),
  a ConvLSTM at 2x2 between encoder and decoder, five stride-2 transposed convs, a 1x1 conv + BN + ELU and a
  1x1 conv to N heatmaps at the input resolution; the last time step is decoded.

Every model predicts the landmarks of the *newest* frame of its window (frames t-W+1..t: causal, so it can
track). Windows that reach before a clip's first frame repeat that frame, in training (``forward_sequence``) and
streaming (``step``) alike, so the two give the same numbers (tested). The streaming state is O(W) per face: the
last W-1 per-frame encodings (2D encoders) or crops (3D encoders, whose convolutions mix frames from the first
layer), never the whole history. They plug into ``facetrack track`` through ``TemporalEngine`` and train from
pseudo-video recipes (``configs/lm_*.yaml``) through ``facetrack.train.temporal``.

Deviations from the paper, also stated in the recipes: PyTorch's LSTM has no peephole terms (Eq. 4 has them) and
no recurrent dropout (dropout 0.2 acts on its input and output instead); the 1x1 convs have no padding (padding 2
would grow the maps); the heatmap Gaussians have sigma 1.5 cells by default (the paper's "bandwidth 3x3"); coordinate
models give no confidence (reported as 1); the ``-lite`` presets are narrower for CPU training.

Heatmap training (deviates from the paper's plain L2; the recipes use it): with Xavier init the last 1x1 conv
emits noise whose L2 is ~25x that of an all-zero map, so the first steps only learn to shrink every map and a
short CPU schedule ended in empty maps (val NME ~100 %, with a mean- and a sum-over-cells L2 alike). Hence the
last 1x1 conv starts near zero (at the empty map's loss), and ``fg_weight`` w weights the squared error by
``1 + w * target`` so the few foreground cells are not outvoted by the 4096 background ones (the foreground
weighting of heatmap regressors such as Adaptive Wing's weight map); the recipes also widen sigma to 2 cells.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from facetrack.codecs.heatmap1d import check_points, target_weight
from facetrack.codecs.heatmap2d import Heatmap2DCodec
from facetrack.models.base import LandmarkModel, batch_weight
from facetrack.models.registry import register_model, register_preset
from facetrack.models.temporal.base import TemporalState

VARIANTS = ("2d", "3d", "2drnn", "3drnn", "2dfcrnn", "3dfcrnn")


class CoordinateCodec:
    """Landmarks as coordinates normalised to the crop: u = (x + 0.5) / F - 0.5, in [-0.5, 0.5] for points
    inside the crop (pixel centres at integers, so the crop spans [-0.5, F - 0.5])."""

    def __init__(self, input_size: int) -> None:
        self.input_size = int(input_size)

    def encode(self, points: np.ndarray, visible: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``coords`` (N, 2) float32 (0 where unknown) and ``weight`` (N,) (0: unknown or outside the crop)."""
        points = check_points(points)
        u = (points + 0.5) / self.input_size - 0.5
        return {"coords": np.nan_to_num(u, nan=0.0).astype(np.float32),
                "weight": target_weight(points, self.input_size, visible)}

    def decode(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised (..., N, 2) -> crop pixels (..., N, 2) and confidences (..., N) of 1 (no confidence output)."""
        return (coords + 0.5) * self.input_size - 0.5, torch.ones_like(coords[..., 0])


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM (Shi et al. 2015) without peepholes: one conv over [x, h] gives the four gates."""

    def __init__(self, channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = int(hidden)
        self.gates = nn.Conv2d(channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, g, o = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


def _coordinate_encoder(three_d: bool, width: int, blocks: int) -> nn.Sequential:
    conv, bn, pool = (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d((1, 2, 2))) if three_d else \
        (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d(2))
    mods: list[nn.Module] = []
    cin = 3
    for i in range(blocks):
        cout = width * 2 ** i
        mods += [conv(cin, cout, 3, padding=1), bn(cout), nn.ELU(inplace=True), pool]
        cin = cout
    return nn.Sequential(*mods)


def _fcn_encoder(three_d: bool, channels: int, blocks: int) -> nn.Sequential:
    conv, bn, stride = (nn.Conv3d, nn.BatchNorm3d, (1, 2, 2)) if three_d else (nn.Conv2d, nn.BatchNorm2d, 2)
    mods: list[nn.Module] = []
    cin = 3
    for _ in range(blocks):
        mods += [conv(cin, channels, 3, stride=stride, padding=1), bn(channels), nn.ELU(inplace=True)]
        cin = channels
    return nn.Sequential(*mods)


def _fcn_decoder(channels: int, blocks: int, head: int, num_points: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for _ in range(blocks):
        mods += [nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1),
                 nn.BatchNorm2d(channels), nn.ELU(inplace=True)]
    mods += [nn.Conv2d(channels, head, 1), nn.BatchNorm2d(head), nn.ELU(inplace=True), nn.Conv2d(head, num_points, 1)]
    return nn.Sequential(*mods)


class LocalMotion(LandmarkModel):
    """One of Belmonte et al.'s six networks (``variant``), streamable like the other temporal models.

    ``width``: filters of the first coordinate block (doubling per block; paper 32), ``fc``: the FC / LSTM width
    (paper 1024), ``channels`` / ``head``: the heatmap models' encoder-decoder and 1x1-conv widths (paper 256 /
    512), ``window``: frames seen per prediction (paper 3; 1 for ``2d``), ``dropout`` (paper 0.2), ``sigma``:
    heatmap Gaussian in cells, ``fg_weight``: foreground weight of the heatmap L2 (0 = the paper's plain L2).
    """

    arch = "local-motion"

    def __init__(self, variant: str = "2d", num_points: int = 68, scheme: str = "ibug68", input_size: int = 64,
                 window: int = 3, width: int = 32, fc: int = 1024, channels: int = 256, head: int = 512,
                 dropout: float = 0.2, sigma: float = 1.5, fg_weight: float = 0.0) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        blocks = 5
        if input_size % 2 ** blocks or input_size < 2 ** blocks:
            raise ValueError(f"input_size must be a multiple of {2 ** blocks}, got {input_size}")
        if window < 1 or width < 1 or fc < 1 or channels < 1 or head < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError("need window, width, fc, channels, head >= 1 and dropout in [0, 1)")
        if fg_weight < 0:
            raise ValueError(f"fg_weight must be >= 0, got {fg_weight}")
        super().__init__(num_points=num_points, scheme=scheme, input_size=input_size)
        self.variant = variant
        self.three_d = variant.startswith("3d")
        self.recurrent = variant.endswith("rnn")
        self.heatmap = "fc" in variant
        self.window = 1 if variant == "2d" else int(window)
        side = input_size // 2 ** blocks
        if self.heatmap:
            self.encoder = _fcn_encoder(self.three_d, channels, blocks)
            self.rnn = ConvLSTMCell(channels, channels)
            self.rnn_dropout = nn.Dropout(dropout)
            self.decoder = _fcn_decoder(channels, blocks, head, num_points)
            self.codec: Any = Heatmap2DCodec(input_size, input_size, sigma)
            self.feature_shape: tuple[int, ...] = (channels, side, side)
        else:
            self.encoder = _coordinate_encoder(self.three_d, width, blocks)
            features = width * 2 ** (blocks - 1) * side * side
            if self.recurrent:
                self.lstm = nn.LSTM(features, fc, batch_first=True)
                self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(fc, 2 * num_points))
                self.in_dropout = nn.Dropout(dropout)
            else:
                flat = features * (self.window if self.three_d else 1)
                self.fc = nn.Sequential(nn.Linear(flat, fc), nn.BatchNorm1d(fc), nn.ELU(inplace=True),
                                        nn.Dropout(dropout), nn.Linear(fc, 2 * num_points))
            self.codec = CoordinateCodec(input_size)
            self.feature_shape = (features,)
        self.config = {"variant": variant, "num_points": int(num_points), "scheme": str(scheme),
                       "input_size": int(input_size), "window": int(window), "width": int(width), "fc": int(fc),
                       "channels": int(channels), "head": int(head), "dropout": float(dropout),
                       "sigma": float(sigma), "fg_weight": float(fg_weight)}
        self.fg_weight = float(fg_weight)
        self.lambda_c = 0.0  # what the temporal training reads of 1DFormer-style models: no L_c, no frozen part
        self.use_confidence_loss = False
        self.freeze_encoder = False
        for m in self.modules():  # Xavier uniform, as the paper
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.heatmap:  # start at the all-zero map (Xavier's output noise costs ~25x the empty map's loss)
            nn.init.normal_(self.decoder[-1].weight, std=1e-3)

    # ------------------------------------------------------------------------------------------- pieces

    def _frame_items(self, images: Tensor) -> Tensor:
        """What the streaming state keeps per frame: the per-frame encoding (2D encoders) or the normalised crop
        (3D encoders), (K, ...) for K frames (K, 3, F, F)."""
        x = self.normalize(images)
        if self.three_d:
            return x
        feat = self.encoder(x)
        return feat if self.heatmap else feat.flatten(1)

    def _window_outputs(self, items: Tensor) -> dict[str, Tensor]:
        """Outputs for the newest frame of windows (B, W, ...) of frame items."""
        b, w = items.shape[:2]
        if self.three_d:  # (B, W, 3, F, F) -> (B, 3, W, F, F) -> encoder -> (B, W, C, h, w) per time step
            feat = self.encoder(items.transpose(1, 2)).transpose(1, 2)
            items = feat if self.heatmap else feat.flatten(2)
        if self.heatmap:
            h = items.new_zeros(b, *items.shape[2:])
            c = torch.zeros_like(h)
            for t in range(w):
                h, c = self.rnn(items[:, t], h, c)
            heatmap = self.decoder(self.rnn_dropout(h))
            return {"heatmap": heatmap}
        if self.recurrent:
            seq, _ = self.lstm(self.in_dropout(items))
            coords = self.fc(seq[:, -1])
        else:
            coords = self.fc(items.flatten(1) if self.three_d else items[:, -1])
        return {"coords": coords.view(b, self.num_points, 2)}

    def _windows(self, items: Tensor) -> Tensor:
        """(B, T, ...) frame items -> (B * T, W, ...) windows ending at every frame, the first frame repeated."""
        t = items.shape[1]
        pad = items[:, :1].expand(-1, self.window - 1, *items.shape[2:])
        padded = torch.cat([pad, items], 1)
        return torch.stack([padded[:, i:i + self.window] for i in range(t)], 1).flatten(0, 1)

    # ------------------------------------------------------------------------------------------ forward

    def forward_sequence(self, images: Tensor) -> dict[str, Tensor]:
        """Outputs (B, T, ...) for clips (B, T, 3, F, F): every frame from the window ending at it."""
        if images.ndim != 5:
            raise ValueError(f"expected clips (B, T, 3, F, F), got {tuple(images.shape)}")
        b, t = images.shape[:2]
        items = self._frame_items(images.flatten(0, 1))
        items = items.view(b, t, *items.shape[1:])
        out = self._window_outputs(self._windows(items))
        return {k: v.view(b, t, *v.shape[1:]) for k, v in out.items()}

    def init_state(self, batch: int = 1) -> TemporalState:
        """An empty history: ``filled`` 0 makes the first step fill the window with copies of its frame."""
        ref = self.pixel_mean
        tensors = {"filled": torch.zeros(batch, 1, dtype=ref.dtype, device=ref.device)}
        if self.window > 1:
            item = (3, self.input_size, self.input_size) if self.three_d else self.feature_shape
            tensors["history"] = torch.zeros(batch, self.window - 1, *item, dtype=ref.dtype, device=ref.device)
        return TemporalState(tensors)

    def step(self, images: Tensor, state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        """Streaming: one frame (B, 3, F, F) of B faces and their states -> outputs (B, ...) and the next states."""
        if state.batch != images.shape[0]:
            raise ValueError(f"state holds {state.batch} faces but {images.shape[0]} images were given")
        item = self._frame_items(images)
        filled = state.tensors["filled"]
        if self.window == 1:
            return self._window_outputs(item[:, None]), TemporalState({"filled": torch.ones_like(filled)})
        history = state.tensors["history"]
        known = filled.view(-1, *([1] * (history.ndim - 1))) > 0
        history = torch.where(known, history, item[:, None].expand_as(history))
        window = torch.cat([history, item[:, None]], 1)
        return self._window_outputs(window), TemporalState({"filled": torch.ones_like(filled),
                                                            "history": window[:, 1:]})

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """One frame with an empty history (what ``detect`` and a track's first frame see)."""
        out, _ = self.step(images, self.init_state(images.shape[0]))
        return out

    # ------------------------------------------------------------------------------------------- training

    def set_confidence_loss(self, enabled: bool) -> None:
        """No confidence branch: nothing to switch (the temporal training calls this every epoch)."""

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """L2 (Eqs. 1-2): squared error per landmark, summed over its coordinates or its heatmap's cells (Eq. 2
        sums them), heatmap cells weighted by ``1 + fg_weight * target`` (module docstring), weighted by the
        targets' per-landmark weight, mean over landmarks and frames; any leading dims."""
        key = "heatmap" if self.heatmap else "coords"
        pred = outputs[key]
        target = targets[key].to(pred)
        lead = pred.shape[: pred.ndim - (3 if self.heatmap else 2)]
        n = self.num_points
        per_point = (pred - target).pow(2)
        if self.heatmap and self.fg_weight:
            per_point = per_point * (1.0 + self.fg_weight * target)
        per_point = per_point.reshape(*lead, n, -1)
        per_point = per_point.sum(-1)
        per_point = per_point.reshape(-1, n)
        weight = batch_weight({k: v.reshape(-1, n) for k, v in targets.items() if k == "weight"}, per_point)
        return (per_point * weight).mean()

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Coordinates (..., N, 2) in crop pixels and confidences (..., N) for frames or whole clips."""
        if self.heatmap:
            return self.codec.decode(outputs["heatmap"])
        return self.codec.decode(outputs["coords"])


@register_model("local-motion")
def build_local_motion(**config: Any) -> LocalMotion:
    """Belmonte et al.'s local-motion networks; see :class:`LocalMotion`."""
    return LocalMotion(**config)


# The paper's sizes (Table 7: 3.8 / 11.1 / 14.2 / 17.4 / 10.2 / 14.9 M parameters) and narrower "-lite" versions
# trained on the CPU here (configs/lm_*.yaml): half the coordinate filters, FC/LSTM 256, heatmap networks 64 wide.
LITE = {"width": 16, "fc": 256, "channels": 64, "head": 64}
for _variant in VARIANTS:
    register_preset(f"lm-{_variant}", "local-motion", {"variant": _variant})
    register_preset(f"lm-{_variant}-lite", "local-motion", {"variant": _variant, **LITE})
