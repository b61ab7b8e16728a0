"""The AOHR tracker (Yin et al., ACM MM 2020, section 4.2): detector heatmaps refined by decayed past features.

E_t (the 1D heatmaps of the detector, per axis) -> CNN3 (1D convs, landmarks as channels) -> U_t;
Eq. 13: V_t = U_t + sum_{tau<t} lambda^(t-tau) U_tau; -> CNN4 -> E'_t; output E_t + E'_t; loss Eq. 14
(the detector's heatmap loss summed over frames; here: its mean over frames).

Eq. 13 is computed recursively: V_t = U_t + lambda * sum_{tau<t} lambda^(t-1-tau) U_tau = U_t + lambda V_(t-1),
with V_0 = 0, so the streaming state is V_(t-1) alone (one (C, L) tensor per axis and face), and lambda = 0 gives
V_t = U_t: no temporal refinement at all. CNN4's last layer starts at zero, so a fresh tracker outputs the
detector's heatmaps exactly. The paper does not give CNN3/CNN4's sizes: ``channels`` wide, ``layers`` 1D convs
each of kernel ``kernel``, no BatchNorm (frame-by-frame and whole-clip statistics would differ).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from facetrack.models.registry import register_model, register_preset
from facetrack.models.temporal.base import TemporalHead, TemporalLandmarkModel, TemporalState

AXES = ("x", "y")


def exponential_fusion(u: Tensor, decay: float, previous: Tensor | None = None) -> Tensor:
    """Eq. 13 over a clip: V (B, T, ...) from U (B, T, ...) by V_t = U_t + decay * V_(t-1), V_0 = ``previous``."""
    out = []
    v = previous
    for i in range(u.shape[1]):
        v = u[:, i] if v is None else u[:, i] + decay * v
        out.append(v)
    return torch.stack(out, dim=1)


def _convs(cin: int, hidden: int, cout: int, layers: int, kernel: int, final_act: bool) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Conv1d(cin if i == 0 else hidden, cout if i == layers - 1 else hidden, kernel,
                              padding=kernel // 2))
        if i < layers - 1 or final_act:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class AOHRTrackerHead(TemporalHead):
    """CNN3 -> exponential decay fusion (Eq. 13) -> CNN4, per axis; refines heatmaps by addition."""

    operates_on = "heatmaps"

    def __init__(self, num_points: int, length: int, decay: float = 0.3, channels: int = 64, kernel: int = 5,
                 layers: int = 2) -> None:
        super().__init__()
        self.decay = float(decay)
        self.channels, self.length = channels, length
        self.cnn3 = nn.ModuleDict({a: _convs(num_points, channels, channels, layers, kernel, True) for a in AXES})
        self.cnn4 = nn.ModuleDict({a: _convs(channels, channels, num_points, layers, kernel, False) for a in AXES})
        for a in AXES:
            last = self.cnn4[a][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> TemporalState:
        """V_0 = 0 for both axes (so V_1 = U_1)."""
        ref = self._param_like()
        device = ref.device if device is None else device
        return TemporalState({
            f"v{a}": torch.zeros(batch, self.channels, self.length, dtype=ref.dtype, device=device) for a in AXES
        })

    def forward_sequence(self, ux: Tensor, uy: Tensor) -> dict[str, Tensor]:
        b, t, n, length = ux.shape
        out: dict[str, Tensor] = {}
        for a, e in zip(AXES, (ux, uy)):
            u = self.cnn3[a](e.reshape(b * t, n, length)).reshape(b, t, self.channels, length)
            v = exponential_fusion(u, self.decay)
            refinement = self.cnn4[a](v.reshape(b * t, self.channels, length)).reshape(b, t, n, length)
            out[f"u{a}"] = e + refinement
        return out

    def step(self, ux: Tensor, uy: Tensor, state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        out: dict[str, Tensor] = {}
        new: dict[str, Tensor] = {}
        for a, e in zip(AXES, (ux, uy)):
            v = self.cnn3[a](e) + self.decay * state.tensors[f"v{a}"]
            new[f"v{a}"] = v
            out[f"u{a}"] = e + self.cnn4[a](v)
        return out, TemporalState(new)


class AOHRTracker(TemporalLandmarkModel):
    """AOHR detector (encoder + decoders giving E_t) + the tracker head; outputs ``{"hx", "hy"}``."""

    arch = "aohr-tracker"

    def __init__(self, encoder: dict[str, Any] | str = "aohr-hg2-256", decay: float = 0.3, channels: int = 64,
                 kernel: int = 5, layers: int = 2, freeze_encoder: bool = False) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay (lambda of Eq. 13) must be in [0, 1], got {decay}")
        if channels < 1 or layers < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError("need channels >= 1, layers >= 1 and an odd kernel")
        super().__init__(encoder, freeze_encoder=freeze_encoder, lambda_c=0.0)
        self.head = AOHRTrackerHead(self.num_points, self.length, decay, channels, kernel, layers)
        self.config = {
            "encoder": self.encoder_config, "decay": float(decay), "channels": int(channels), "kernel": int(kernel),
            "layers": int(layers), "freeze_encoder": self.freeze_encoder,
        }


@register_model("aohr-tracker")
def build_aohr_tracker(**config: Any) -> AOHRTracker:
    """The AOHR tracker; see :class:`AOHRTracker`."""
    return AOHRTracker(**config)


register_preset("aohr-tracker-hg2-256", "aohr-tracker", {"encoder": "aohr-hg2-256", "decay": 0.3})
register_preset("aohr-tracker-lite-128", "aohr-tracker", {
    "encoder": "aohr-lite-128", "decay": 0.3, "channels": 32, "kernel": 5, "layers": 2,
})
