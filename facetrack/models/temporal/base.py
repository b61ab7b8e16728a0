"""Temporal landmark models: a per-frame AOHR encoder, a temporal head with per-face state, 1D heatmap decoders.

Training runs ``forward_sequence`` on whole clips (B, T, ...); tracking runs ``step`` one frame at a time with a
``TemporalState`` per face. Both go through the same head arithmetic, so streaming equals the batched forward
(tested to 1e-5), and every state is O(W) per face whatever the video length.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from facetrack.models.aohr import AOHR
from facetrack.models.base import LandmarkModel
from facetrack.models.registry import build_model, resolve


@dataclass
class TemporalState:
    """A temporal head's memory for a batch of faces: named tensors, all batch-first.

    Batch-first tensors let the tracker run every face of a frame in one batch (``cat``) and keep one state
    per face (``split``), whatever the faces' ages: what differs between faces lives in the tensors (e.g. a
    validity mask), never in Python-side counters.
    """

    tensors: dict[str, Tensor]

    @property
    def batch(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0]) if self.tensors else 0

    def select(self, index: Sequence[int] | Tensor) -> TemporalState:
        """The states of the faces at ``index`` (in that order)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return TemporalState({k: v[idx.to(v.device)] for k, v in self.tensors.items()})

    def split(self) -> list[TemporalState]:
        """One state per face (batch size 1 each)."""
        return [self.select([i]) for i in range(self.batch)]

    @staticmethod
    def cat(states: Sequence[TemporalState]) -> TemporalState:
        """Stack per-face states into one batch; they must come from the same head."""
        if not states:
            raise ValueError("cannot concatenate an empty list of temporal states")
        keys = set(states[0].tensors)
        if any(set(s.tensors) != keys for s in states):
            raise ValueError("temporal states come from different heads (their keys differ)")
        return TemporalState({k: torch.cat([s.tensors[k] for s in states]) for k in states[0].tensors})

    def to(self, device: torch.device | str) -> TemporalState:
        return TemporalState({k: v.to(device) for k, v in self.tensors.items()})


class TemporalHead(nn.Module):
    """Refines per-frame 1D signals over time. ``operates_on`` says what the signals are:

    ``"features"`` (the encoder's s^x, s^y, decoded to heatmaps afterwards: 1DFormer) or ``"heatmaps"``
    (the decoded heatmaps E^x, E^y, refined in place: the AOHR tracker).
    """

    operates_on: str = "features"

    def forward_sequence(self, ux: Tensor, uy: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """(B, T, N, L) each -> {"ux", "uy"} (B, T, N, L), optionally {"cx", "cy"} (B, T, N)."""
        raise NotImplementedError

    def init_state(self, batch: int, device: torch.device | str | None = None) -> TemporalState:  # pragma: no cover
        raise NotImplementedError

    def step(self, ux: Tensor, uy: Tensor, state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        """One frame (B, N, L) each -> the same keys as ``forward_sequence`` without T, and the next state."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _param_like(self) -> Tensor:
        return next(self.parameters(), torch.zeros(()))


def encoder_spec(encoder: dict[str, Any] | str) -> dict[str, Any]:
    """``{"arch": ..., **config}`` for a preset name or a partial spec, with every option filled in."""
    if isinstance(encoder, str):
        arch, config = resolve(encoder)
    elif isinstance(encoder, dict):
        rest = {k: v for k, v in encoder.items() if k != "arch"}
        arch, config = resolve(str(encoder.get("arch", "aohr")), **rest)
    else:
        raise ValueError(f"encoder must be a model name or a {{'arch': ..., **config}} dict, got {encoder!r}")
    return {"arch": arch, **config}


class TemporalLandmarkModel(LandmarkModel):
    """An AOHR encoder + a temporal head + the model's own 1D heatmap decoders (copies of the encoder's).

    ``freeze_encoder`` keeps the encoder fixed (eval mode, no gradients) so that only the temporal parts are
    trained, e.g. on precomputed features (``forward_features``); that is a deviation from the papers'
    end-to-end training, to be stated wherever it is used. ``lambda_c`` weighs the confidence regression of
    Eq. 7 (``set_confidence_loss(False)`` switches it off for the second half of training).
    """

    arch = ""
    head: TemporalHead

    def __init__(self, encoder: dict[str, Any] | str, freeze_encoder: bool = False, lambda_c: float = 1.0) -> None:
        spec = encoder_spec(encoder)
        built = build_model(spec["arch"], **{k: v for k, v in spec.items() if k != "arch"})
        if not isinstance(built, AOHR):
            raise ValueError(f"the encoder must be an AOHR model (it needs encode_1d), got {spec['arch']!r}")
        super().__init__(num_points=built.num_points, scheme=built.scheme, input_size=built.input_size)
        if lambda_c < 0:
            raise ValueError(f"lambda_c must be >= 0, got {lambda_c}")
        self.encoder = built
        self.encoder_config = {"arch": built.arch, **built.config}
        self.codec = built.codec
        self.length = built.length
        self.decoder_x = copy.deepcopy(built.decoder_x)
        self.decoder_y = copy.deepcopy(built.decoder_y)
        self.freeze_encoder = bool(freeze_encoder)
        self.lambda_c = float(lambda_c)
        self.use_confidence_loss = self.lambda_c > 0
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def from_encoder(cls, encoder_model: AOHR, **head_config: Any) -> TemporalLandmarkModel:
        """A temporal model on top of a trained AOHR: its weights, and decoders initialised as copies of its own."""
        if not isinstance(encoder_model, AOHR):
            raise ValueError(f"from_encoder needs an AOHR model, got {type(encoder_model).__name__}")
        model = cls(encoder={"arch": encoder_model.arch, **encoder_model.config}, **head_config)
        model.encoder.load_state_dict(encoder_model.state_dict())
        model.decoder_x.load_state_dict(encoder_model.decoder_x.state_dict())
        model.decoder_y.load_state_dict(encoder_model.decoder_y.state_dict())
        return model

    def train(self, mode: bool = True) -> TemporalLandmarkModel:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # BatchNorm statistics stay those of the trained encoder
        return self

    def set_confidence_loss(self, enabled: bool) -> None:
        """Eq. 7: L_c for the first half of the epochs, L_h alone for the second half."""
        self.use_confidence_loss = bool(enabled) and self.lambda_c > 0

    # ------------------------------------------------------------------------------------------- forward

    def _encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if self.freeze_encoder:
            with torch.no_grad():
                return self.encoder.encode_1d(images)
        return self.encoder.encode_1d(images)

    def _decode_1d(self, sx: Tensor, sy: Tensor) -> tuple[Tensor, Tensor]:
        """The model's decoders on (..., N, L), any leading dims."""
        shape = sx.shape
        n, length = shape[-2], shape[-1]
        hx = self.decoder_x(sx.reshape(-1, n, length)).reshape(shape)
        hy = self.decoder_y(sy.reshape(-1, n, length)).reshape(shape)
        return hx, hy

    def _outputs(self, head_out: dict[str, Tensor]) -> dict[str, Tensor]:
        ux, uy = head_out["ux"], head_out["uy"]
        if self.head.operates_on == "features":
            ux, uy = self._decode_1d(ux, uy)
        out = {"hx": ux, "hy": uy}
        out.update({k: head_out[k] for k in ("cx", "cy") if k in head_out})
        return out

    def _head_input(self, sx: Tensor, sy: Tensor) -> tuple[Tensor, Tensor]:
        return self._decode_1d(sx, sy) if self.head.operates_on == "heatmaps" else (sx, sy)

    def forward_features(self, sx: Tensor, sy: Tensor) -> dict[str, Tensor]:
        """{"hx", "hy"} (B, T, N, L) (+ "cx", "cy" (B, T, N)) from encoder features s^x, s^y (B, T, N, L)."""
        if sx.ndim != 4 or sx.shape != sy.shape or sx.shape[-2:] != (self.num_points, self.length):
            raise ValueError(f"expected features (B, T, {self.num_points}, {self.length}) for both axes, "
                             f"got {tuple(sx.shape)} and {tuple(sy.shape)}")
        return self._outputs(self.head.forward_sequence(*self._head_input(sx, sy)))

    def encode_sequence(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder features (B, T, N, L) per axis for clips (B, T, 3, F, F): all frames in one encoder batch."""
        if images.ndim != 5:
            raise ValueError(f"expected clips (B, T, 3, F, F), got {tuple(images.shape)}")
        b, t = images.shape[:2]
        sx, sy = self._encode(images.reshape(b * t, *images.shape[2:]))
        return sx.reshape(b, t, *sx.shape[1:]), sy.reshape(b, t, *sy.shape[1:])

    def forward_sequence(self, images: Tensor) -> dict[str, Tensor]:
        """{"hx", "hy"} (B, T, N, L) (+ "cx", "cy") for clips (B, T, 3, F, F) starting with an empty history."""
        return self.forward_features(*self.encode_sequence(images))

    def init_state(self, batch: int = 1) -> TemporalState:
        """An empty history for ``batch`` faces."""
        return self.head.init_state(batch, device=self.pixel_mean.device)

    def step_features(self, sx: Tensor, sy: Tensor, state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        """One frame of encoder features (B, N, L) each -> outputs (B, N, L) and the next state."""
        head_out, state = self.head.step(*self._head_input(sx, sy), state)
        return self._outputs(head_out), state

    def step(self, images: Tensor, state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        """Streaming: one frame (B, 3, F, F) of B faces with their state -> outputs (B, N, L), next state."""
        if state.batch != images.shape[0]:
            raise ValueError(f"state holds {state.batch} faces but {images.shape[0]} images were given")
        return self.step_features(*self._encode(images), state)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Per-frame outputs (B, N, L) with an empty history (what ``detect`` and the first tracked frame see)."""
        out, _ = self.step(images, self.init_state(images.shape[0]))
        return out

    # ------------------------------------------------------------------------------------ loss and decode

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Eq. 7: L_h (the encoder's heatmap loss, mean over frames) + lambda_c L_c over (B, T, ...) or (B, ...).

        L_c sums (c - c*)^2 over landmarks and both axes, mean over frames, against ``targets["cx"/"cy"]``;
        it ignores non-finite labels and the heatmap ``weight`` (occluded points are where c* matters most).
        """
        hx = outputs["hx"]
        n, length = hx.shape[-2], hx.shape[-1]
        flat = {k: outputs[k].reshape(-1, n, length) for k in ("hx", "hy")}
        flat_targets = {k: targets[k].reshape(-1, n, length) for k in ("hx", "hy")}
        if "weight" in targets:
            flat_targets["weight"] = targets["weight"].reshape(-1, n)
        total = self.encoder.loss(flat, flat_targets)
        if self.use_confidence_loss and "cx" in outputs and "cx" in targets and "cy" in targets:
            lc = hx.new_zeros(())
            for axis in ("cx", "cy"):
                pred = outputs[axis].reshape(-1, n)
                label = targets[axis].to(pred).reshape(-1, n)
                known = torch.isfinite(label)
                err = torch.where(known, pred - torch.nan_to_num(label), torch.zeros_like(pred))
                lc = lc + err.pow(2).sum(-1).mean()
            total = total + self.lambda_c * lc
        return total

    def heatmaps(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The 1D heatmaps on the codec's scale, as the encoder defines it for its loss type."""
        return self.encoder.heatmaps(outputs)

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Coordinates (..., N, 2) in crop pixels and confidences (..., N), for frames or whole clips."""
        hx, hy = self.heatmaps(outputs)
        lead = hx.shape[:-2]
        n, length = hx.shape[-2], hx.shape[-1]
        coords, conf = self.codec.decode(hx.reshape(-1, n, length), hy.reshape(-1, n, length))
        return coords.reshape(*lead, n, 2), conf.reshape(*lead, n)

    def temporal_parameters(self) -> list[nn.Parameter]:
        """Everything but the encoder: what is trained when ``freeze_encoder`` is on."""
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder_ids]
