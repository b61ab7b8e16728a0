"""SLPT and DSLPT: sparse local patch transformers (Xia, PhD thesis 2024, chapters 4 and 5; digest sections 5-6).

One representation per landmark instead of a dense grid: around the current estimate of each landmark a patch of
the backbone's feature map is cut and resized to K x K (bilinear ``grid_sample``), embedded by a K x K "conv" (a
linear map of the flattened patch) and given a learnable *structure encoding*. N learnable *landmark queries*
aggregate these representations through *inherent relation layers* (pre-LN; MSA among the queries, MCA from the
queries to the representations, MLP), whose attention maps are a case-dependent adjacency between landmarks. A head
shared by every layer regresses each landmark's position inside its own patch (Eq. 4.7). Three coarse-to-fine
stages with the same weights start from the training mean shape and re-crop around the new estimate (Algorithm 1).

* SLPT (``slpt``): each stage halves the patch side; loss Eq. 4.8, the inter-ocular-normalised L2 distance,
  averaged over every stage and layer.
* DSLPT (``dslpt``): the head also predicts a scale per axis (Gaussian, Eq. 5.7, or Laplace), trained by the
  negative log-likelihood of the label in patch coordinates (Eqs. 5.8-5.10), averaged over stages and layers
  (Eq. 5.9 sums them: a constant factor). The next patch side is ``max(6 Z W sx, 6 Z W sy)``, Z = 2, clipped to
  ``[L_down W, L_up W]`` (section 5.2.2); ``patch_rule: fixed`` halves it instead. Inference can stop after any
  stage (``exit_stage``, 0: all). The uncertainty ``U = W sigma`` (Eq. 5.6, crop pixels) gives facetrack's per-landmark
  confidence: the predicted probability that the landmark lies within +-tau F of its estimate on both axes.

Choices the thesis leaves open or that differ here, all in ``config``:

* MCA's value is the representations R (the thesis prints T; digest, Eqs. 4.4 / 5.4). The layer is
  ``facetrack.models.tufa.DecoderLayer`` (MSA on T + Q with value T, MCA with key R + P and value R, MLP) with
  attention written as plain matmuls (``MatmulAttention``).
* Backbone: facetrack's ``plain`` CNN (that of aohr-68) for the CPU models, its F/4 and F/8 maps each reduced by a
  1x1 conv and concatenated after cropping (the thesis's multi-level ResNet variant, Fig. 4.4);
  ``backbone_init`` starts it from a packaged model's backbone (e.g. ``aohr-68``, trained on the same 300-W
  faces): the offline stand-in for ImageNet pre-training, which does not exist here.
* The head's raw output is added to 0.5 (the patch centre) without a squashing function, so a landmark outside
  its patch can still be reached; scales are ``softplus(raw) + 1e-3`` (positivity is not stated in the thesis).
* The crop centres and sizes of a stage come from the previous stage's detached estimate (not stated).
* The mean shape S^0 is the packaged shape model's mean of the 300-W training faces (``shape_check_ibug68``,
  training split only), placed in the crop exactly as the crop policy places a face (its landmark extent,
  ``crop_scale`` times larger, centred); it is a buffer saved with the weights.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facetrack.models.backbones import build_backbone
from facetrack.models.base import LandmarkModel
from facetrack.models.registry import register_model, register_preset
from facetrack.models.rle import sigma_to_confidence
from facetrack.models.tufa import Attention, DecoderLayer

DISTRIBUTIONS = ("none", "gaussian", "laplace")
PATCH_RULES = ("fixed", "dynamic")


def mean_shape_in_crop(scheme: str, input_size: int, crop_scale: float) -> np.ndarray:
    """S^0: the training mean shape (N, 2) in crop pixels, placed as the crop policy places a face's landmarks."""
    from facetrack.data.transforms import apply_affine, box_from_landmarks, crop_matrix
    from facetrack.tracking.plausibility import load_shape_check

    check = load_shape_check() if scheme == "ibug68" else None
    if check is None:
        raise ValueError(f"no packaged mean shape for scheme {scheme!r} (only ibug68 has one)")
    mean = np.asarray(check.model.mean, dtype=np.float64)
    return apply_affine(mean, crop_matrix(box_from_landmarks(mean), input_size, crop_scale))


def sample_patches(features: Tensor, centres: Tensor, sides: Tensor, size: int, input_size: int) -> Tensor:
    """Bilinear K x K resampling of square patches: features (B, C, H, W) covering the crop, centres (B, N, 2) and
    sides (B, N) in crop pixels -> (B, N, C * K * K). Sample k sits at the centre of the k-th of K equal cells of
    the patch, as a K x K resize of the patch would place it; outside the crop the features are zero."""
    b, n = centres.shape[:2]
    cells = (torch.arange(size, device=centres.device, dtype=centres.dtype) + 0.5) / size - 0.5  # (K,)
    offsets = sides[..., None] * cells  # (B, N, K)
    xs = centres[..., 0:1] + offsets  # (B, N, K)
    ys = centres[..., 1:2] + offsets
    grid = torch.stack([xs[:, :, None, :].expand(b, n, size, size), ys[:, :, :, None].expand(b, n, size, size)], -1)
    grid = (grid + 0.5) * (2.0 / input_size) - 1.0  # crop px -> [-1, 1] over the crop's extent [-0.5, F - 0.5]
    patches = F.grid_sample(features, grid.reshape(b, n * size, size, 2).to(features.dtype), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # (B, C, N * K, K)
    c = features.shape[1]
    return patches.reshape(b, c, n, size, size).permute(0, 2, 1, 3, 4).reshape(b, n, c * size * size)


class MatmulAttention(Attention):
    """``tufa.Attention`` computed as softmax(q k^T / sqrt(d)) v with plain matmuls: for N = 68 tokens this trains
    about 10x faster on a CPU than the fused ``scaled_dot_product_attention``, whose CPU backward dominated a step."""

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, n, c = q.shape
        h = self.heads

        def split(x: Tensor) -> Tensor:
            return x.reshape(b, -1, h, c // h).transpose(1, 2)

        weights = torch.softmax(split(self.q(q)) @ split(self.k(k)).transpose(-1, -2) * (c // h) ** -0.5, dim=-1)
        return self.out((weights @ split(self.v(v))).transpose(1, 2).reshape(b, n, c))


class RelationLayer(DecoderLayer):
    """The inherent relation layer (pre-LN; MSA, MCA, MLP): ``tufa.DecoderLayer`` with ``MatmulAttention``, called
    as ``layer(T, Q, R, P)``: MSA queries/keys T + Q, values T; MCA queries T + Q, keys R + P, values R."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__(dim, heads, mlp_ratio)
        self.self_attn = MatmulAttention(dim, heads)
        self.cross_attn = MatmulAttention(dim, heads)


class MultiLevelBackbone(nn.Module):
    """A facetrack backbone whose maps at the requested strides are each reduced to ``channels`` by a 1x1 conv.

    Backbones with a sequential ``body`` (``plain``, ``lite``) expose the last map at every stride; others only
    their output (whose stride must then be the single level)."""

    def __init__(self, spec: dict[str, Any] | str, input_size: int, strides: list[int], channels: int) -> None:
        super().__init__()
        self.net, self.spec = build_backbone(spec, input_size)
        self.strides = [int(s) for s in strides]
        if not self.strides or len(set(self.strides)) != len(self.strides):
            raise ValueError(f"levels must be distinct backbone strides, got {strides}")
        self.taps: list[int] = []
        widths: list[int] = []
        body = getattr(self.net, "body", None)
        if isinstance(body, nn.Sequential):
            found = self._find_taps(body, input_size)
            missing = [s for s in self.strides if s not in found]
            if missing:
                raise ValueError(f"backbone {self.spec['name']} has no map at stride(s) {missing}; has {sorted(found)}")
            self.taps = [found[s][0] for s in self.strides]
            widths = [found[s][1] for s in self.strides]
        elif self.strides == [self.net.stride]:
            widths = [self.net.out_channels]
        else:
            raise ValueError(f"backbone {self.spec['name']} gives only its stride-{self.net.stride} output")
        self.reduce = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths)
        self.out_channels = channels * len(widths)

    @staticmethod
    @torch.no_grad()
    def _find_taps(body: nn.Sequential, input_size: int) -> dict[int, tuple[int, int]]:
        """stride -> (index of the last body layer at that stride, its channels)."""
        was = body.training
        body.eval()
        x = torch.zeros(1, 3, input_size, input_size)
        found: dict[int, tuple[int, int]] = {}
        for i, layer in enumerate(body):
            x = layer(x)
            found[input_size // x.shape[-1]] = (i, x.shape[1])
        body.train(was)
        return found

    def forward(self, images: Tensor) -> list[Tensor]:
        if not self.taps:
            return [self.reduce[0](self.net(images))]
        maps, x, wanted = [], images, set(self.taps)
        for i, layer in enumerate(self.net.body):
            x = layer(x)
            if i in wanted:
                maps.append(x)
            if i >= max(self.taps):
                break
        return [conv(m) for conv, m in zip(self.reduce, maps)]


class SLPT(LandmarkModel):
    """SLPT (``distribution: none``, fixed halving patches) or DSLPT (Gaussian / Laplace, dynamic patches).

    ``forward`` returns, per stage s and relation layer l: ``coords`` (S, D, B, N, 2) in crop pixels, ``t`` the
    in-patch positions (S, D, B, N, 2), ``sigma`` their scales (S, D, B, N, 2) (DSLPT only), and each stage's patch
    ``corner`` (S, B, N, 2) and ``side`` (S, B, N). In eval mode only the exit stage's last layer is kept.
    """

    arch = "slpt"

    def __init__(
        self,
        num_points: int = 68,
        scheme: str = "ibug68",
        input_size: int = 160,
        crop_scale: float = 1.25,
        backbone: dict[str, Any] | str | None = None,
        backbone_init: str = "",
        levels: list[int] | tuple[int, ...] = (4, 8),
        level_channels: int = 32,
        patch_size: int = 7,
        dim: int = 128,
        heads: int = 4,
        layers: int = 4,
        mlp_ratio: float = 2.0,
        stages: int = 3,
        initial_patch: float = 0.25,
        distribution: str = "none",
        patch_rule: str = "fixed",
        l_down: float = 0.5,
        l_up: float = 0.7,
        context: float = 2.0,
        tau: float = 0.02,
        exit_stage: int = 0,
    ) -> None:
        super().__init__(num_points=num_points, scheme=scheme, input_size=input_size)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        if patch_rule not in PATCH_RULES:
            raise ValueError(f"patch_rule must be one of {PATCH_RULES}, got {patch_rule!r}")
        if patch_rule == "dynamic" and distribution == "none":
            raise ValueError("the dynamic patch rule needs a predicted scale: set distribution gaussian or laplace")
        if not 0 <= exit_stage <= stages:
            raise ValueError(f"exit_stage must be 0 (all stages) or 1..{stages}, got {exit_stage}")
        if not 0 < tau < 1:
            raise ValueError(f"tau is a fraction of the input size in (0, 1), got {tau}")
        if not (0 < l_down <= l_up) or stages < 1 or layers < 1 or patch_size < 1 or not 0 < initial_patch <= 1:
            raise ValueError("need 0 < l_down <= l_up, stages, layers, patch_size >= 1 and 0 < initial_patch <= 1")
        self.encoder = MultiLevelBackbone(backbone or {"name": "plain"}, input_size, list(levels), level_channels)
        self.config = {
            "num_points": self.num_points, "scheme": self.scheme, "input_size": self.input_size,
            "crop_scale": float(crop_scale), "backbone": self.encoder.spec, "backbone_init": backbone_init,
            "levels": [int(v) for v in levels], "level_channels": level_channels, "patch_size": patch_size,
            "dim": dim, "heads": heads, "layers": layers, "mlp_ratio": float(mlp_ratio), "stages": stages,
            "initial_patch": float(initial_patch), "distribution": distribution, "patch_rule": patch_rule,
            "l_down": float(l_down), "l_up": float(l_up), "context": float(context),
            "tau": float(tau), "exit_stage": int(exit_stage),
        }
        self.patch_size, self.stages, self.distribution = patch_size, stages, distribution
        self.embed = nn.Linear(self.encoder.out_channels * patch_size * patch_size, dim)
        self.embed_norm = nn.LayerNorm(dim)
        self.structure = nn.Parameter(torch.randn(num_points, dim) * 0.02)  # P: structure encoding
        self.queries = nn.Parameter(torch.randn(num_points, dim) * 0.02)    # Q: landmark queries
        self.relations = nn.ModuleList(RelationLayer(dim, heads, mlp_ratio) for _ in range(layers))
        outputs = 2 if distribution == "none" else 4
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, outputs))
        with torch.no_grad():  # start every estimate at its patch centre with a moderate scale
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.zero_()
        shape = mean_shape_in_crop(scheme, input_size, crop_scale)
        if shape.shape != (num_points, 2):
            raise ValueError(f"mean shape {shape.shape} does not match {num_points} points")
        self.register_buffer("initial_shape", torch.tensor(shape, dtype=torch.float32))
        a, b = _ocular(scheme)
        self._ocular = (a, b)
        if backbone_init and not self.structure.is_meta:  # the hub's shape probe builds on the meta device
            self._load_backbone(backbone_init)

    @property
    def exit_stage(self) -> int:
        """The stage inference stops after (DSLPT's early exit, Table 5.19); in ``config`` so exported graphs differ."""
        return self.config["exit_stage"] or self.stages

    @exit_stage.setter
    def exit_stage(self, stage: int) -> None:
        if not 1 <= stage <= self.stages:
            raise ValueError(f"exit_stage must be in 1..{self.stages}, got {stage}")
        self.config["exit_stage"] = int(stage)

    def _load_backbone(self, name_or_path: str) -> None:
        """Copy a packaged or saved facetrack model's ``backbone.*`` tensors into this model's backbone."""
        from safetensors.torch import load_file

        from facetrack.models.hub import locate_card, read_card

        card_path = locate_card(name_or_path)
        card = read_card(card_path)
        if card["config"].get("backbone") != self.encoder.spec:
            raise ValueError(f"backbone_init {name_or_path}: its backbone {card['config'].get('backbone')} differs from "
                             f"{self.encoder.spec}")
        tensors = load_file(str(card_path.with_name(card["weights"])))
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        self.encoder.net.load_state_dict(state, strict=True)

    # ------------------------------------------------------------------------------------------ forward
    def _stage(self, maps: list[Tensor], centres: Tensor, sides: Tensor) -> tuple[Tensor, Tensor | None]:
        """One SLPT pass: in-patch positions (D, B, N, 2) and scales (D, B, N, 2) or None, every layer."""
        patches = torch.cat([sample_patches(m, centres, sides, self.patch_size, self.input_size) for m in maps], -1)
        # Concatenating per level keeps each level's K x K block together; the embedding is one linear map.
        reps = self.embed_norm(self.embed(patches))
        b = reps.shape[0]
        queries = self.queries.expand(b, -1, -1)
        structure = self.structure.expand(b, -1, -1)
        t = torch.zeros_like(reps)  # T^1 = 0, as in DETR
        outs = []
        for layer in self.relations:
            t = layer(t, queries, reps, structure)
            outs.append(self.head(t))
        raw = torch.stack(outs)  # (D, B, N, 2 or 4)
        pos = 0.5 + raw[..., :2]
        sigma = None if self.distribution == "none" else F.softplus(raw[..., 2:]) + 1e-3
        return pos, sigma

    def next_sides(self, sides: Tensor, sigma: Tensor | None) -> Tensor:
        """Patch sides of the next stage (B, N): halved (SLPT), or from the last layer's scales clipped to
        [l_down, l_up] x the current side (DSLPT, section 5.2.2)."""
        c = self.config
        if c["patch_rule"] == "fixed" or sigma is None:
            return sides * 0.5
        wanted = 6.0 * c["context"] * sides * sigma[-1].amax(-1)
        return torch.minimum(torch.maximum(wanted, c["l_down"] * sides), c["l_up"] * sides)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        maps = self.encoder(self.normalize(images))
        b = images.shape[0]
        centres = self.initial_shape.to(maps[0].dtype).expand(b, -1, -1)
        sides = torch.full((b, self.num_points), self.config["initial_patch"] * self.input_size,
                           dtype=maps[0].dtype, device=images.device)
        stages = self.stages if self.training else self.exit_stage
        out: dict[str, list[Tensor]] = {"coords": [], "t": [], "sigma": [], "corner": [], "side": []}
        for _ in range(stages):
            pos, sigma = self._stage(maps, centres, sides)
            corner = centres - 0.5 * sides[..., None]
            coords = corner + sides[..., None] * pos  # Eq. 4.7 / 5.5
            for key, value in (("coords", coords), ("t", pos), ("sigma", sigma), ("corner", corner), ("side", sides)):
                if value is not None:
                    out[key].append(value)
            centres = coords[-1].detach()
            sides = self.next_sides(sides, None if sigma is None else sigma.detach())
        if not self.training:  # inference keeps only what decode needs
            result = {"coords": out["coords"][-1][-1], "side": out["side"][-1]}
            if out["sigma"]:
                result["sigma"] = out["sigma"][-1][-1]
            return result
        return {k: torch.stack(v) for k, v in out.items() if v}

    # ------------------------------------------------------------------------------------------ targets/loss
    def encode_targets(self, points: np.ndarray, visible: np.ndarray | None = None) -> dict[str, np.ndarray]:
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (self.num_points, 2):
            raise ValueError(f"expected points of shape ({self.num_points}, 2), got {points.shape}")
        weight = np.ones(len(points)) if visible is None else np.asarray(visible, dtype=np.float64)
        return {"points": points.astype(np.float32), "weight": weight.astype(np.float32)}

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """SLPT: Eq. 4.8; DSLPT: Eq. 5.9 with the Gaussian or Laplace NLL (Eq. 5.8), both averaged over every
        stage, relation layer and labelled landmark."""
        coords = outputs["coords"].float()  # (S, D, B, N, 2)
        gt = targets["points"].to(coords)
        weight = targets.get("weight")
        weight = torch.ones(gt.shape[:2], device=gt.device) if weight is None else weight.to(coords)
        denom = (weight.sum() * coords.shape[0] * coords.shape[1]).clamp_min(1.0)
        if self.distribution == "none":
            a, b = self._ocular
            d = (gt[:, a] - gt[:, b]).norm(dim=-1).clamp_min(1.0)  # (B,)
            per = (coords - gt).norm(dim=-1) / d[:, None]  # (S, D, B, N)
            return (per * weight).sum() / denom
        corner, side = outputs["corner"].float(), outputs["side"].float()  # (S, B, N, 2), (S, B, N)
        mu_gt = (gt - corner) / side[..., None]  # Eq. 5.10, (S, B, N, 2)
        mu, sigma = outputs["t"].float(), outputs["sigma"].float()
        diff = mu - mu_gt[:, None]
        if self.distribution == "gaussian":
            nll = sigma.log() + 0.5 * (diff / sigma).pow(2)
        else:
            nll = sigma.log() + diff.abs() / sigma
        return (nll.mean(-1) * weight).sum() / denom

    def uncertainty(self, outputs: dict[str, Tensor]) -> Tensor:
        """U (B, N): the mean over both axes of W sigma (Eq. 5.6), crop pixels; DSLPT only."""
        if "sigma" not in outputs:
            raise ValueError("SLPT predicts no uncertainty (distribution: none)")
        sigma, side = outputs["sigma"], outputs["side"]
        if sigma.ndim == 5:  # training outputs: the last stage's last layer
            sigma, side = sigma[-1, -1], side[-1]
        return (side[..., None] * sigma).mean(-1)

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        coords = outputs["coords"]
        if coords.ndim == 5:
            coords = coords[-1, -1]
        if "sigma" not in outputs:  # SLPT has no uncertainty: every landmark is reported as fully confident
            return coords, torch.ones(coords.shape[:2], dtype=coords.dtype, device=coords.device)
        return coords, self.confidence(outputs)

    def confidence(self, outputs: dict[str, Tensor]) -> Tensor:
        """(B, N): the predicted probability that the landmark lies within +-tau F of its estimate on both axes,
        from the last stage's W sigma: erf(tau / (sqrt(2) W sigma)) per axis (Gaussian), 1 - exp(-tau / (W sigma))
        (Laplace, ``rle.sigma_to_confidence``)."""
        sigma, side = outputs["sigma"], outputs["side"]
        if sigma.ndim == 5:
            sigma, side = sigma[-1, -1], side[-1]
        scale = (side[..., None] * sigma).float()  # crop px
        tau = self.config["tau"] * self.input_size
        per_axis = torch.erf(tau / (2 ** 0.5 * scale)) if self.distribution == "gaussian" else sigma_to_confidence(
            scale, tau)
        return per_axis.prod(-1)


def _ocular(scheme: str) -> tuple[int, int]:
    from facetrack.schemes import get_scheme

    ocular = get_scheme(scheme).ocular
    if ocular is None:
        raise ValueError(f"scheme {scheme} has no outer eye corners for the normalised loss")
    return int(ocular[0]), int(ocular[1])


class DSLPT(SLPT):
    """DSLPT: SLPT with a distribution head (Gaussian by default) and the dynamic patch rule."""

    arch = "dslpt"

    def __init__(self, distribution: str = "gaussian", patch_rule: str = "dynamic", **config: Any) -> None:
        super().__init__(distribution=distribution, patch_rule=patch_rule, **config)
        if distribution == "none":
            raise ValueError("DSLPT predicts a distribution: gaussian or laplace")


@register_model("slpt")
def build_slpt(**config: Any) -> SLPT:
    return SLPT(**config)


@register_model("dslpt")
def build_dslpt(**config: Any) -> DSLPT:
    return DSLPT(**config)


# CPU models: aohr-68's plain backbone (160 px, F/4 and F/8 maps, each reduced to 16 channels) started from aohr-68's
# weights, 4 relation layers of width 64 (2 heads of 32, the thesis's head width), K = 7, 3 stages. Width 128 made a
# training step on one CPU thread 3x slower (1.06 vs 0.37 s per batch of 16).
_CPU = {"input_size": 160, "backbone": {"name": "plain", "channels": [16, 32, 64, 128], "blocks": [1, 2, 1],
                                        "out_channels": 128},
        "backbone_init": "aohr-68", "levels": [4, 8], "level_channels": 16, "patch_size": 7, "dim": 64, "heads": 2,
        "layers": 4, "mlp_ratio": 2.0, "stages": 3}
register_preset("slpt-68", "slpt", _CPU)
register_preset("dslpt-68", "dslpt", _CPU)
# The thesis's size for a GPU: 256 px, one 64 x 64 map (a 2-stack hourglass of width 256 stands in for
# HRNet-W18C-lite, which facetrack does not have), C_I = 256 with 8 heads of 32, 6 layers, K = 7, 3 stages.
_GPU = {"input_size": 256, "backbone": {"name": "hourglass", "stacks": 2, "depth": 4, "width": 256},
        "levels": [4], "level_channels": 256, "patch_size": 7, "dim": 256, "heads": 8, "layers": 6,
        "mlp_ratio": 4.0, "stages": 3}
register_preset("slpt-hg-256", "slpt", _GPU)
register_preset("dslpt-hg-256", "dslpt", _GPU)
