"""1DFormer (Yin et al., IJCAI 2024): temporal and structural refinement of 1D landmark representations.

Per axis and landmark, the recurrent token mixing of Eq. 2 refines the encoder feature s_nt with a window of
the W - 1 previous *refined* features s'_n(t-1..t-W+1) through confidence-enhanced multi-head attention
(Eq. 3-4); then intra-group (Eq. 5) and inter-group (Eq. 6) residual 1D convolutions model the face's
structure; the model's 1D heatmap decoders (the encoder's per-landmark depthwise filters, copied) follow.

Choices the paper leaves open, and deviations (all switchable or harmless for the function class):
- Attention costs O(L d) per token: W_q, W_k, W_v project L -> H d_h and W_o projects back to L, as in a
  standard Transformer of width L with an inner width H d_h (values are projected and back).
- The alp embeddings e_nw enter only through the projections, so we learn their projections W e_nw (one
  d-vector per landmark and window position for keys and values, per landmark for queries). For 3 H d_h <= L
  that is the same function class as adding e_nw in R^L before projecting, without N W L H d_h work per frame.
  They are added to the attention inputs, not to the residual stream.
- ``norm="pre"`` (default): pre-norm residual units (x + f(LN(x))) with the last layer of every residual
  branch zero-initialised, so a fresh head is exactly the identity and a 1DFormer built on a trained encoder
  starts as that encoder (BL) and only learns corrections. ``norm="post"`` is the paper's LN(x + f(x)) of
  Eq. 5-6 and the vanilla post-norm Transformer block.
- Past frames' keys/values are cached (the state holds the projections of the last W - 1 window tokens, their
  confidences and a validity mask), so streaming costs one token's projections per frame. Frames before a
  clip's start are masked out of the softmax (a shorter window), never zero-padded into it.
- The confidence branches f_c are 2-layer MLPs (L -> hidden -> 1, sigmoid) shared by the landmarks of an axis.
- Ablations (Table 1): ``temporal="none"`` (BL: no temporal module), ``"average"`` (TE^-a: uniform weights over
  the valid window instead of attention, i.e. the window's average feature is added), ``recurrent=False``
  (TE^-r: the window holds raw encoder features), ``confidence=False`` (TE^-c), ``intra_group`` (IR),
  ``inter_group`` (IT). ``confidence`` only exists with attention, ``recurrent`` only with a temporal module:
  the stored config says False otherwise.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from facetrack.models.registry import register_model, register_preset
from facetrack.models.temporal.base import TemporalHead, TemporalLandmarkModel, TemporalState
from facetrack.schemes import get_scheme

TEMPORAL_MODES = ("none", "attention", "average")
NORMS = ("pre", "post")
AXES = ("x", "y")


def _zero_last(seq: nn.Sequential) -> nn.Sequential:
    last = seq[-1]
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)
    return seq


def _residual(x: Tensor, branch: nn.Module, norm: nn.Module, pre: bool) -> Tensor:
    """x + f(LN(x)) (pre-norm) or LN(x + f(x)) (the paper's Eq. 5-6)."""
    return x + branch(norm(x)) if pre else norm(x + branch(x))


def _conv_pair(channels: int, hidden: int, kernel: int, zero_last: bool) -> nn.Sequential:
    """Two 1D convolutions (channels -> hidden -> channels) along L: the residual branch of Eq. 5 and 6."""
    seq = nn.Sequential(
        nn.Conv1d(channels, hidden, kernel, padding=kernel // 2), nn.ReLU(),
        nn.Conv1d(hidden, channels, kernel, padding=kernel // 2),
    )
    return _zero_last(seq) if zero_last else seq


class ConfidenceBranch(nn.Module):
    """f_c: the quality c_nt in (0, 1) of one frame's *unrefined* feature s_nt (Eq. 4)."""

    def __init__(self, length: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(length, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, s: Tensor) -> Tensor:
        return torch.sigmoid(self.mlp(s)).squeeze(-1)


class AxisTemporalBlock(nn.Module):
    """One axis' basic block: (confidence-enhanced) attention over the window, residual, LN, feed-forward."""

    def __init__(self, num_points: int, length: int, window: int, mode: str, recurrent: bool, confidence: bool,
                 heads: int, head_dim: int, ffn_dim: int, conf_hidden: int, pre: bool) -> None:
        super().__init__()
        dim = heads * head_dim
        self.window, self.mode, self.recurrent, self.pre = window, mode, recurrent, pre
        self.heads, self.head_dim = heads, head_dim
        self.norm1 = nn.LayerNorm(length)
        self.norm2 = nn.LayerNorm(length)
        attention = mode == "attention"
        # alp embeddings, learned in projected space (module docstring); random init as in the paper.
        self.embed_q = nn.Parameter(torch.randn(num_points, dim) * 0.02) if attention else None
        self.embed_k = nn.Parameter(torch.randn(num_points, window, dim) * 0.02) if attention else None
        self.embed_v = nn.Parameter(torch.randn(num_points, window, dim) * 0.02)
        self.query = nn.Linear(length, dim) if attention else None
        self.key = nn.Linear(length, dim) if attention else None
        self.value = nn.Linear(length, dim)
        self.proj = nn.Linear(dim, length)
        self.ffn = nn.Sequential(nn.Linear(length, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, length))
        self.confidence = ConfidenceBranch(length, conf_hidden) if confidence and attention else None
        if pre:  # identity at init: both residual branches start at zero
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
            _zero_last(self.ffn)

    def _tokens(self, s: Tensor) -> Tensor:
        return self.norm1(s) if self.pre else s

    def keys_values(self, s: Tensor) -> tuple[Tensor | None, Tensor]:
        """Projections (..., N, D) of window tokens, without their position's embedding (added in ``attend``)."""
        tokens = self._tokens(s)
        return (self.key(tokens) if self.key is not None else None), self.value(tokens)

    def confidences(self, s: Tensor) -> Tensor | None:
        return self.confidence(s) if self.confidence is not None else None

    def attend(self, s: Tensor, keys: Tensor | None, values: Tensor, conf: Tensor | None,
               valid: Tensor) -> Tensor:
        """Refine s (M, N, L) from its window: keys/values (M, N, W, D) with position 0 = frame t itself,
        confidences (M, N, W), valid (M, W) bool -> s' (M, N, L)."""
        m, n, width = values.shape[:3]
        h, dh = self.heads, self.head_dim
        v = (values + self.embed_v[:, :width]).view(m, n, width, h, dh)
        if self.mode == "attention":
            assert keys is not None and self.query is not None and self.embed_q is not None
            q = (self.query(self._tokens(s)) + self.embed_q).view(m, n, h, dh)
            k = (keys + self.embed_k[:, :width]).view(m, n, width, h, dh)
            logits = torch.einsum("mnhd,mnwhd->mnhw", q, k) / math.sqrt(dh)
            if conf is not None:
                logits = logits * conf[:, :, None, :]  # Eq. 4: before the softmax
            logits = logits.masked_fill(~valid[:, None, None, :], float("-inf"))
            weights = torch.softmax(logits, dim=-1)
        else:  # TE^-a: the window's average
            uniform = valid.to(v.dtype) / valid.sum(-1, keepdim=True).to(v.dtype)
            weights = uniform[:, None, None, :].expand(m, n, h, width)
        fused = torch.einsum("mnhw,mnwhd->mnhd", weights, v).reshape(m, n, h * dh)
        x = s + self.proj(fused) if self.pre else self.norm1(s + self.proj(fused))
        return _residual(x, self.ffn, self.norm2, self.pre)


class IntraGroupEncoder(nn.Module):
    """Eq. 5: residual 1D convolutions over each facial component's stacked features, then LN.

    Landmarks in no group (schemes whose groups do not cover every point) pass through unchanged.
    """

    def __init__(self, num_points: int, length: int, groups: list[tuple[int, ...]], kernel: int, expand: int,
                 pre: bool) -> None:
        super().__init__()
        members = [i for g in groups for i in g]
        if len(set(members)) != len(members):
            raise ValueError("landmark groups overlap; intra-group encoding needs disjoint groups")
        rest = [i for i in range(num_points) if i not in set(members)]
        order = members + rest
        self.sizes = [len(g) for g in groups] + [len(rest)]
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("inverse", torch.argsort(torch.tensor(order)), persistent=False)
        self.convs = nn.ModuleList(_conv_pair(len(g), len(g) * expand, kernel, pre) for g in groups)
        self.norms = nn.ModuleList(nn.LayerNorm(length) for _ in groups)
        self.pre = pre

    def forward(self, x: Tensor) -> Tensor:
        parts = torch.split(x[:, self.order], self.sizes, dim=1)
        out = [_residual(p, conv, norm, self.pre) for p, conv, norm in zip(parts, self.convs, self.norms)]
        return torch.cat([*out, parts[-1]], dim=1)[:, self.inverse]


class InterGroupEncoder(nn.Module):
    """Eq. 6: residual 1D convolutions over all landmarks' features stacked as channels, then LN."""

    def __init__(self, num_points: int, length: int, kernel: int, hidden: int, pre: bool) -> None:
        super().__init__()
        self.conv = _conv_pair(num_points, hidden, kernel, pre)
        self.norm = nn.LayerNorm(length)
        self.pre = pre

    def forward(self, x: Tensor) -> Tensor:
        return _residual(x, self.conv, self.norm, self.pre)


class OneDFormerHead(TemporalHead):
    """Temporal blocks (Eq. 2-4) then structure encoders (Eq. 5-6), one set per axis."""

    operates_on = "features"

    def __init__(self, num_points: int, length: int, groups: list[tuple[int, ...]], window: int = 10,
                 temporal: str = "attention", recurrent: bool = True, confidence: bool = True,
                 intra_group: bool = True, inter_group: bool = True, heads: int = 4, head_dim: int = 16,
                 ffn_dim: int = 256, conf_hidden: int = 64, conv_kernel: int = 5, group_expand: int = 2,
                 inter_channels: int = 128, norm: str = "pre") -> None:
        super().__init__()
        pre = norm == "pre"
        self.window = window
        self.num_points, self.length, self.dim = num_points, length, heads * head_dim
        self.temporal = temporal
        self.recurrent = recurrent
        self.blocks = None if temporal == "none" else nn.ModuleDict({
            a: AxisTemporalBlock(num_points, length, window, temporal, recurrent, confidence, heads, head_dim,
                                 ffn_dim, conf_hidden, pre) for a in AXES
        })
        self.attention = temporal == "attention"
        self.has_confidence = self.attention and confidence
        self.intra = nn.ModuleDict({
            a: IntraGroupEncoder(num_points, length, groups, conv_kernel, group_expand, pre) for a in AXES
        }) if intra_group else None
        self.inter = nn.ModuleDict({
            a: InterGroupEncoder(num_points, length, conv_kernel, inter_channels, pre) for a in AXES
        }) if inter_group else None

    # ------------------------------------------------------------------------------------------ pieces

    def _structure(self, axis: str, x: Tensor) -> Tensor:
        """Eq. 5 then Eq. 6 on (..., N, L)."""
        shape = x.shape
        x = x.reshape(-1, *shape[-2:])
        if self.intra is not None:
            x = self.intra[axis](x)
        if self.inter is not None:
            x = self.inter[axis](x)
        return x.reshape(shape)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> TemporalState:
        """Empty history: W - 1 cached tokens per landmark and axis, all invalid."""
        ref = self._param_like()
        device = ref.device if device is None else device
        past = self.window - 1 if self.blocks is not None else 0
        tensors = {"valid": torch.zeros(batch, past, dtype=torch.bool, device=device)}
        if self.blocks is not None:
            for a in AXES:
                shape = (batch, self.num_points, past, self.dim)
                tensors[f"v{a}"] = torch.zeros(shape, dtype=ref.dtype, device=device)
                if self.attention:
                    tensors[f"k{a}"] = torch.zeros(shape, dtype=ref.dtype, device=device)
                if self.has_confidence:
                    tensors[f"c{a}"] = torch.zeros(batch, self.num_points, past, dtype=ref.dtype, device=device)
        return TemporalState(tensors)

    def _temporal_step(self, s: dict[str, Tensor], state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        """Eq. 2 for one frame: refined features and confidences per axis, and the shifted window cache."""
        if self.blocks is None:
            return {f"u{a}": s[a] for a in AXES}, state
        old = state.tensors
        past = self.window - 1

        def push(item: Tensor, cache: Tensor) -> Tensor:
            """This frame's entry in front, the oldest dropped: the W - 1 most recent tokens stay."""
            return torch.cat([item.unsqueeze(2), cache], dim=2)[:, :, :past]

        now = torch.ones(s["x"].shape[0], 1, dtype=torch.bool, device=s["x"].device)
        valid = torch.cat([now, old["valid"]], dim=1)
        out: dict[str, Tensor] = {}
        new = {"valid": valid[:, :past]}
        for a in AXES:
            block = self.blocks[a]
            k_t, v_t = block.keys_values(s[a])
            c_t = block.confidences(s[a])
            keys = torch.cat([k_t.unsqueeze(2), old[f"k{a}"]], dim=2) if k_t is not None else None
            values = torch.cat([v_t.unsqueeze(2), old[f"v{a}"]], dim=2)
            conf = torch.cat([c_t.unsqueeze(2), old[f"c{a}"]], dim=2) if c_t is not None else None
            refined = block.attend(s[a], keys, values, conf, valid)
            out[f"u{a}"] = refined
            if c_t is not None:
                out[f"c{a}"] = c_t
                new[f"c{a}"] = push(c_t, old[f"c{a}"])  # c comes from the raw s_t even with recurrence
            if self.recurrent:  # later windows hold s'_t, not s_t
                k_t, v_t = block.keys_values(refined)
            new[f"v{a}"] = push(v_t, old[f"v{a}"])
            if k_t is not None:
                new[f"k{a}"] = push(k_t, old[f"k{a}"])
        return out, TemporalState(new)

    def _temporal_parallel(self, s: dict[str, Tensor]) -> dict[str, Tensor]:
        """Eq. 2 without recurrence (TE^-r) for whole clips: windows of raw features built by shifting."""
        assert self.blocks is not None
        b, t, n, length = s["x"].shape
        width = self.window
        steps = torch.arange(t, device=s["x"].device)
        valid = (steps[:, None] - torch.arange(width, device=steps.device)[None, :]) >= 0  # (T, W)
        valid = valid.unsqueeze(0).expand(b, t, width).reshape(b * t, width)

        def windows(x: Tensor) -> Tensor:
            """(B, T, N, ...) -> (B*T, N, W, ...): position w holds frame t - w (zeros before the clip)."""
            pad = x.new_zeros((b, width - 1, *x.shape[2:]))
            padded = torch.cat([pad, x], dim=1)
            stacked = torch.stack([padded[:, width - 1 - w: width - 1 - w + t] for w in range(width)], dim=3)
            return stacked.reshape(b * t, *stacked.shape[2:])

        out: dict[str, Tensor] = {}
        for a in AXES:
            block = self.blocks[a]
            k, v = block.keys_values(s[a])
            c = block.confidences(s[a])
            refined = block.attend(s[a].reshape(b * t, n, length), windows(k) if k is not None else None,
                                   windows(v), windows(c) if c is not None else None, valid)
            out[f"u{a}"] = refined.reshape(b, t, n, length)
            if c is not None:
                out[f"c{a}"] = c
        return out

    # -------------------------------------------------------------------------------------- interface

    def forward_sequence(self, ux: Tensor, uy: Tensor) -> dict[str, Tensor]:
        s = {"x": ux, "y": uy}
        if self.blocks is None:
            out = {"ux": ux, "uy": uy}
        elif not self.recurrent:
            out = self._temporal_parallel(s)
        else:  # s'_t needs s'_(t-1): frame by frame, the same arithmetic as streaming
            state = self.init_state(ux.shape[0], ux.device)
            frames = []
            for i in range(ux.shape[1]):
                step_out, state = self._temporal_step({"x": ux[:, i], "y": uy[:, i]}, state)
                frames.append(step_out)
            out = {k: torch.stack([f[k] for f in frames], dim=1) for k in frames[0]} if frames else \
                {"ux": ux, "uy": uy}
        out["ux"] = self._structure("x", out["ux"])
        out["uy"] = self._structure("y", out["uy"])
        return out

    def step(self, ux: Tensor, uy: Tensor, state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        out, state = self._temporal_step({"x": ux, "y": uy}, state)
        out["ux"] = self._structure("x", out["ux"])
        out["uy"] = self._structure("y", out["uy"])
        return out, state


class OneDFormer(TemporalLandmarkModel):
    """AOHR encoder + 1DFormer head + 1D heatmap decoders (``{"hx", "hy"}``, plus ``{"cx", "cy"}`` with the
    confidence branches). See the module docstring for the options and how they map to Table 1."""

    arch = "1dformer"

    def __init__(self, encoder: dict[str, Any] | str = "aohr-hg2-256", window: int = 10,
                 temporal: str = "attention", recurrent: bool = True, confidence: bool = True,
                 intra_group: bool = True, inter_group: bool = True, heads: int = 4, head_dim: int = 16,
                 ffn_dim: int = 256, conf_hidden: int = 64, conv_kernel: int = 5, group_expand: int = 2,
                 inter_channels: int = 128, norm: str = "pre", freeze_encoder: bool = False,
                 lambda_c: float = 1.0) -> None:
        if temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {temporal!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if window < 1 or heads < 1 or head_dim < 1 or ffn_dim < 1 or conf_hidden < 1 or group_expand < 1 \
                or inter_channels < 1:
            raise ValueError("window, heads, head_dim, ffn_dim, conf_hidden, group_expand and inter_channels "
                             "must be >= 1")
        if conv_kernel < 1 or conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {conv_kernel}")
        super().__init__(encoder, freeze_encoder=freeze_encoder, lambda_c=lambda_c)
        confidence = bool(confidence) and temporal == "attention"
        recurrent = bool(recurrent) and temporal != "none"
        groups: list[tuple[int, ...]] = []
        if intra_group:
            scheme = get_scheme(self.scheme)
            if scheme.num_points != self.num_points:
                raise ValueError(f"intra-group encoding takes its groups from scheme {self.scheme!r} "
                                 f"({scheme.num_points} points) but the model has {self.num_points}")
            groups = list(scheme.groups.values())
        self.head = OneDFormerHead(
            self.num_points, self.length, groups, window=window, temporal=temporal, recurrent=recurrent,
            confidence=confidence, intra_group=intra_group, inter_group=inter_group, heads=heads,
            head_dim=head_dim, ffn_dim=ffn_dim, conf_hidden=conf_hidden, conv_kernel=conv_kernel,
            group_expand=group_expand, inter_channels=inter_channels, norm=norm,
        )
        self.config = {
            "encoder": self.encoder_config, "window": int(window), "temporal": temporal, "recurrent": recurrent,
            "confidence": confidence, "intra_group": bool(intra_group), "inter_group": bool(inter_group),
            "heads": int(heads), "head_dim": int(head_dim), "ffn_dim": int(ffn_dim), "conf_hidden": int(conf_hidden),
            "conv_kernel": int(conv_kernel), "group_expand": int(group_expand),
            "inter_channels": int(inter_channels), "norm": norm, "freeze_encoder": self.freeze_encoder,
            "lambda_c": self.lambda_c,
        }


@register_model("1dformer")
def build_onedformer(**config: Any) -> OneDFormer:
    """1DFormer; see :class:`OneDFormer` and the module docstring for the options."""
    return OneDFormer(**config)


# Table 1 rows as option sets, for ablation scripts: build_model("1dformer", **ABLATIONS["BL+TE"], encoder=...).
ABLATIONS: dict[str, dict[str, Any]] = {
    "BL": {"temporal": "none", "intra_group": False, "inter_group": False},
    "BL+TE^-a": {"temporal": "average", "intra_group": False, "inter_group": False},
    "BL+TE^-r": {"temporal": "attention", "recurrent": False, "intra_group": False, "inter_group": False},
    "BL+TE^-c": {"temporal": "attention", "confidence": False, "intra_group": False, "inter_group": False},
    "BL+TE": {"temporal": "attention", "intra_group": False, "inter_group": False},
    "BL+IT": {"temporal": "none", "intra_group": False, "inter_group": True},
    "BL+IR": {"temporal": "none", "intra_group": True, "inter_group": False},
    "BL+IR+IT": {"temporal": "none", "intra_group": True, "inter_group": True},
    "BL+TE+IR": {"temporal": "attention", "intra_group": True, "inter_group": False},
    "BL+TE+IT": {"temporal": "attention", "intra_group": False, "inter_group": True},
    "BL+TE+IR+IT": {"temporal": "attention", "intra_group": True, "inter_group": True},
}

# The paper's tracker: FAN-style encoder at 256 px, L = 768, W = 10.
register_preset("1dformer-hg2-256", "1dformer", {"encoder": "aohr-hg2-256", "window": 10})
# Real-time CPU tracker on the lite encoder (L = 384).
register_preset("1dformer-lite-128", "1dformer", {
    "encoder": "aohr-lite-128", "window": 10, "heads": 4, "head_dim": 16, "ffn_dim": 128, "conf_hidden": 32,
    "conv_kernel": 5, "group_expand": 2, "inter_channels": 64,
})
