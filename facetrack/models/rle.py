"""RLE: regression with residual log-likelihood estimation (Li et al., ICCV 2021), the source of 1DFormer's
confidence pseudo-labels (Yin et al., IJCAI 2024, section 3.4).

Design (per axis, to match 1DFormer's per-axis confidence branches c^x = f_c^x(s^x), c^y = f_c^y(s^y)):

- Encoder: an AOHR (by default the lite preset) gives per-landmark 1D features s^x_n, s^y_n (L bins) and, through
  its 1D decoders, logits over the L bins of each axis.
- mu: the expectation of softmax(logits) (integral regression, one of the regression heads the RLE paper
  evaluates); sigma_x, sigma_y: a small MLP per axis over s^x_n, s^y_n -- the same 1D features the 1DFormer
  confidence branches see, so its labels are learnable from them -- shared by all landmarks, plus a learned
  per-landmark offset (contour points are less certain than eye corners whatever the image).
- Likelihood: the normalised residual u = (gt - mu) / sigma (one number per axis) has density
  Q(u_x) Q(u_y) G(u), Q the unit Laplace, G a 2D RealNVP that learns the residual's deviation from Q;
  -log P(gt) = log sigma_x + log sigma_y - log Q(u_x) - log Q(u_y) - log G(u) (the paper's Eq. 9, without its
  constant normaliser). At inference the flow is dropped: P is a Laplace around mu per axis, and its scale is
  what the confidence labels are made of (:func:`sigma_to_confidence`).
- Calibration: sigma and the flow share a scale that the likelihood cannot separate (a narrower G with a larger
  sigma gives the same P; dropping the normaliser even favours it), so sigma ranks landmarks correctly but its
  absolute value drifts. The Laplace scale used at inference is therefore b = k * sigma, with k (per axis) the
  maximum-likelihood factor of a Laplace with scales proportional to sigma, k = mean |u|, kept as a running
  average over training batches (like BatchNorm statistics) in the buffer ``residual_scale`` saved with the
  weights. With it, c* is a calibrated probability rather than a rank.
- An optional KL term (``heatmap_weight``) on the AOHR logits against the codec's targets (the AOHR ``kl``
  loss) shapes the distribution whose expectation is mu; it makes a from-scratch model converge in a few CPU
  epochs. RLE alone (``heatmap_weight = 0``) also trains, more slowly.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from facetrack.models.aohr import AOHR, _soft_cross_entropy
from facetrack.models.base import LandmarkModel, batch_weight
from facetrack.models.registry import register_model, resolve

# Default encoder: the real-time AOHR (light backbone at F/8, L = 3F) trained with softmax ("kl") outputs.
DEFAULT_ENCODER = "aohr-lite-128"
_TOP_LEVEL = ("num_points", "scheme", "input_size")


def sigma_to_confidence(sigma: Tensor, tau: float | Tensor) -> Tensor:
    """Confidence in [0, 1) from a Laplace scale: the predicted probability that the landmark lies within
    +-tau of mu, ``1 - exp(-tau / sigma)``.

    Why this mapping: it is a probability (so c* = 0.9 means the same on every face and axis), strictly
    decreasing in sigma, about ``tau / sigma`` for very uncertain points and 1 for certain ones; tau (crop px)
    sets which errors count as "right", i.e. the resolution at which the confidences discriminate.
    """
    sigma = sigma.clamp_min(1e-12)
    return -torch.expm1(-torch.as_tensor(tau, dtype=sigma.dtype, device=sigma.device) / sigma)


def _coupling_net(dim: int, hidden: int, tanh: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(),
                               nn.Linear(hidden, dim)]
    if tanh:  # bounded log-scales keep every coupling well conditioned
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RealNVP(nn.Module):
    """Density on R^dim: a standard normal pushed through affine coupling layers (Dinh et al. 2017).

    Layer i keeps the coordinates where ``mask[i] = 1`` and maps the others as x' = x * exp(s(x_kept)) +
    t(x_kept); masks alternate so every coordinate is transformed. ``init_scale`` scales the initial weights:
    small (the default) starts the flow at the identity, i.e. G = N(0, I).
    """

    def __init__(self, dim: int = 2, layers: int = 6, hidden: int = 64, init_scale: float = 0.01) -> None:
        super().__init__()
        if dim < 2 or layers < 1 or hidden < 1:
            raise ValueError(f"RealNVP needs dim >= 2, layers >= 1, hidden >= 1 (got {dim}, {layers}, {hidden})")
        half = torch.arange(dim) % 2
        masks = torch.stack([half if i % 2 == 0 else 1 - half for i in range(layers)]).float()
        self.register_buffer("masks", masks, persistent=False)  # a constant of the architecture, not a weight
        self.dim = dim
        self.scale_nets = nn.ModuleList(_coupling_net(dim, hidden, tanh=True) for _ in range(layers))
        self.shift_nets = nn.ModuleList(_coupling_net(dim, hidden, tanh=False) for _ in range(layers))
        for net in (*self.scale_nets, *self.shift_nets):
            for m in net.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight, gain=init_scale)
                    nn.init.zeros_(m.bias)

    def forward(self, z: Tensor) -> Tensor:
        """Latent (M, dim) -> data (M, dim): the sampling direction."""
        x = z
        for mask, s_net, t_net in zip(self.masks, self.scale_nets, self.shift_nets):
            kept = x * mask
            s, t = s_net(kept) * (1 - mask), t_net(kept) * (1 - mask)
            x = kept + (1 - mask) * (x * torch.exp(s) + t)
        return x

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data (M, dim) -> latent z (M, dim) and log |det dz/dx| (M,)."""
        z = x
        log_det = x.new_zeros(x.shape[0])
        for mask, s_net, t_net in zip(reversed(self.masks), reversed(self.scale_nets), reversed(self.shift_nets)):
            kept = z * mask
            s, t = s_net(kept) * (1 - mask), t_net(kept) * (1 - mask)
            z = kept + (1 - mask) * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(-1)
        return z, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """log G(x) (M,) by the change of variables through :meth:`inverse`."""
        z, log_det = self.inverse(x)
        return -0.5 * (z.pow(2).sum(-1) + self.dim * math.log(2 * math.pi)) + log_det


class RLE(LandmarkModel):
    """RLE regressor on an AOHR encoder; ``forward`` returns ``coords`` (mu) and ``sigma`` (B, N, 2) in crop
    pixels plus the encoder's logits ``hx``, ``hy`` (B, N, L). See the module docstring for the model.

    ``tau`` is the radius of :func:`sigma_to_confidence` as a fraction of the input size (0.02: 2.56 px at 128,
    about 6% of the inter-ocular distance with the 1.25 crop), so it means the same at every input size.
    """

    arch = "rle"

    def __init__(
        self,
        num_points: int = 68,
        scheme: str = "ibug68",
        input_size: int = 128,
        encoder: dict[str, Any] | None = None,
        sigma_hidden: int = 64,
        flow_layers: int = 6,
        flow_hidden: int = 64,
        heatmap_weight: float = 1.0,
        tau: float = 0.02,
    ) -> None:
        super().__init__(num_points=num_points, scheme=scheme, input_size=input_size)
        if sigma_hidden < 1 or heatmap_weight < 0 or not 0 < tau < 1:
            raise ValueError(f"need sigma_hidden >= 1, heatmap_weight >= 0 and 0 < tau < 1 "
                             f"(got {sigma_hidden}, {heatmap_weight}, {tau})")
        spec = dict(encoder or {})
        clash = sorted(set(spec) & set(_TOP_LEVEL))
        if clash:
            raise ValueError(f"encoder takes {', '.join(clash)} from the RLE model; remove them from 'encoder'")
        if spec.get("loss", "kl") != "kl":
            raise ValueError("the RLE encoder must use loss 'kl': mu is the expectation of its softmax")
        _, full = resolve(DEFAULT_ENCODER, **spec)
        full.update({"num_points": num_points, "scheme": scheme, "input_size": input_size, "loss": "kl"})
        self.encoder = AOHR(**full)
        self.codec = self.encoder.codec
        self.length = self.encoder.length
        self.heatmap_weight = float(heatmap_weight)
        self.tau = float(tau)
        self.sigma_x = self._sigma_head(self.length, sigma_hidden)
        self.sigma_y = self._sigma_head(self.length, sigma_hidden)
        self.sigma_offset = nn.Parameter(torch.zeros(num_points, 2))
        self.flow = RealNVP(2, flow_layers, flow_hidden)
        self.register_buffer("residual_scale", torch.ones(2))  # k of the module docstring, per axis
        self.calibration_momentum = 0.01
        # Bin centres in crop pixels (the codec's bin <-> pixel mapping), for the expectation of each softmax.
        centres = (torch.arange(self.length, dtype=torch.float32) + 0.5) / self.codec.ratio - 0.5
        self.register_buffer("bin_pixels", centres, persistent=False)
        self.config = {
            "num_points": self.num_points, "scheme": self.scheme, "input_size": self.input_size,
            "encoder": {k: v for k, v in self.encoder.config.items() if k not in _TOP_LEVEL},
            "sigma_hidden": sigma_hidden, "flow_layers": flow_layers, "flow_hidden": flow_hidden,
            "heatmap_weight": self.heatmap_weight, "tau": self.tau,
        }

    @staticmethod
    def _sigma_head(length: int, hidden: int) -> nn.Sequential:
        head = nn.Sequential(nn.LayerNorm(length), nn.Linear(length, hidden), nn.ReLU(inplace=True),
                             nn.Linear(hidden, 1))
        # Start at sigma = F / 16 for every landmark (sigmoid(log(1/15)) = 1/16): the errors of a model that has
        # just started to localise, so the residuals begin in the range where Q and G are shaped.
        nn.init.zeros_(head[-1].weight)
        nn.init.constant_(head[-1].bias, math.log(1 / 15))
        return head

    @property
    def tau_pixels(self) -> float:
        """The confidence radius in crop pixels."""
        return self.tau * self.input_size

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        sx, sy = self.encoder.encode_1d(images)
        logits = self.encoder.decode_1d(sx, sy)
        hx, hy = logits["hx"], logits["hy"]
        mu = torch.stack([torch.softmax(hx, -1) @ self.bin_pixels, torch.softmax(hy, -1) @ self.bin_pixels], -1)
        raw = torch.cat([self.sigma_x(sx), self.sigma_y(sy)], -1) + self.sigma_offset  # (B, N, 2)
        # Sigmoid in units of the crop (as RLE does in normalised coordinates): bounded above by the crop size,
        # and d log(sigma) / d raw -> 1 for small sigma, so it behaves like a log-scale where it matters.
        sigma = self.input_size * (torch.sigmoid(raw) + 1e-5)
        return {"hx": hx, "hy": hy, "coords": mu, "sigma": sigma}

    @staticmethod
    def normalised_residual(outputs: dict[str, Tensor], coords: Tensor, weight: Tensor) -> Tensor:
        """u = (gt - mu) / sigma (B, N, 2); 0 for points without ground truth (weight 0 or NaN)."""
        mu, sigma = outputs["coords"], outputs["sigma"]
        valid = (weight > 0)[..., None] & torch.isfinite(coords)
        gt = torch.where(valid, coords.to(mu), mu.detach())  # missing points: a residual of 0, weighted out
        return (gt - mu) / sigma

    def residual_nll(self, outputs: dict[str, Tensor], coords: Tensor, weight: Tensor) -> Tensor:
        """-log P(gt) per landmark (B, N) under Q(u_x) Q(u_y) G(u) / (sigma_x sigma_y); 0 where weight is 0."""
        u = self.normalised_residual(outputs, coords, weight)
        neg_log_q = u.abs() + math.log(2.0)  # unit Laplace
        log_g = self.flow.log_prob(u.reshape(-1, 2)).reshape(u.shape[:-1])
        return (outputs["sigma"].log() + neg_log_q).sum(-1) - log_g

    @torch.no_grad()
    def update_calibration(self, u: Tensor, weight: Tensor) -> None:
        """Move ``residual_scale`` towards this batch's mean |u| per axis (points with weight > 0)."""
        w = (weight > 0).to(u.dtype)[..., None]
        count = w.sum()
        if count > 0:
            batch_scale = (u.abs() * w).sum((0, 1)) / count
            self.residual_scale.lerp_(batch_scale.to(self.residual_scale), self.calibration_momentum)

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Residual log-likelihood summed over landmarks, mean over the batch (+ the optional KL term)."""
        mu = outputs["coords"]
        weight = batch_weight(targets, mu)
        nll = self.residual_nll(outputs, targets["coords"], weight)
        if self.training:
            self.update_calibration(self.normalised_residual(outputs, targets["coords"], weight), weight)
        per_point = nll
        if self.heatmap_weight > 0:
            hx, hy = outputs["hx"], outputs["hy"]
            kl = _soft_cross_entropy(hx, targets["hx"].to(hx)) + _soft_cross_entropy(hy, targets["hy"].to(hy))
            per_point = per_point + self.heatmap_weight * kl
        return (per_point * weight).sum(-1).mean()

    def encode_targets(self, points: np.ndarray, visible: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``coords`` (N, 2) crop px and ``weight`` (N,) (0 for invisible, missing or outside points), plus the
        codec's ``hx``/``hy`` when the KL term is on."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (self.num_points, 2):
            raise ValueError(f"expected points of shape ({self.num_points}, 2), got {points.shape}")
        encoded = self.codec.encode(points, visible)
        targets = {"coords": points.astype(np.float32), "weight": encoded["weight"]}
        if self.heatmap_weight > 0:
            targets.update(hx=encoded["hx"], hy=encoded["hy"])
        return targets

    def laplace_scale(self, outputs: dict[str, Tensor]) -> Tensor:
        """The calibrated Laplace scale b = k * sigma (B, N, 2) in crop px (see the module docstring)."""
        return outputs["sigma"] * self.residual_scale

    def confidences(self, scale: Tensor, tau: float | None = None) -> Tensor:
        """Per-axis confidences (..., 2) from Laplace scales b (..., 2); ``tau`` in crop px (default: the
        model's)."""
        return sigma_to_confidence(scale, self.tau_pixels if tau is None else tau)

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """mu and the probability that both coordinates are within +-tau of it (cx * cy, independent axes)."""
        conf = self.confidences(self.laplace_scale(outputs))
        return outputs["coords"], conf[..., 0] * conf[..., 1]

    @torch.no_grad()
    def predict_sigma(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """mu (B, N, 2) and the calibrated Laplace scales b (B, N, 2), crop px; eval mode, no gradients."""
        was_training = self.training
        self.eval()
        try:
            out = self(images)
            return out["coords"], self.laplace_scale(out)
        finally:
            self.train(was_training)


@register_model("rle")
def build_rle(**config: Any) -> RLE:
    """RLE regressor for confidence pseudo-labels; see :class:`RLE` for the options."""
    return RLE(**config)
