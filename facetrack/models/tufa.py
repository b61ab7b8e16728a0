"""TUFA: task-agnostic unified face alignment (Xia, PhD thesis 2024, chapter 6; ../shared/papers digest section 7).

A mapping from a 2D *face plane* to the face in the image. A point of the plane (a landmark's position on a
dataset's mean shape, normalised to [-1, 1]) becomes a query by a deterministic sinusoidal *structure prompt*
(Eqs. 6.1-6.3); a Transformer decoder (per layer: MSA among the queries, MCA to the ViT image features, FFN;
Eqs. 6.6-6.11) and an MLP head regress where that point lands in the crop. Hence:

* any scheme: each training dataset has its mean shape on the plane plus a learnable per-point *semantic
  alignment embedding* (a 2D offset, section 6.2.3), so datasets whose definitions differ slightly share one model;
* zero-shot: ``predict_points`` takes arbitrary plane points (e.g. a point placed on the mean face);
* few-shot: a new dataset entry (mean shape + fresh embedding) fine-tuned end to end.

Deviations from the thesis, all in ``config`` and on the model card:

* No pre-trained weights exist offline (the thesis starts from DINO ViT-S weights): the encoder is trained from
  scratch. ``stem: conv`` (default) embeds patches with a small strided-conv stem instead of one 16x16 linear
  projection (a "ViT with a convolutional stem", which trains from scratch on few images far better);
  ``stem: patch`` is the plain ViT patch embedding. ``stem: cnn`` uses a facetrack CNN backbone (``backbone``
  spec; ``token_pool`` pools its feature map into tokens), which training can start from a trained model's
  weights (``backbone_init``: e.g. the shipped aohr-68, trained on the same 300-W faces): the offline stand-in for
  a pre-trained encoder.
* ``prompt_scale``: Eqs. 6.1-6.3 encode x in [-1, 1] with frequencies 1/tau^(4c/C) <= 1 rad per unit, so
  neighbouring landmarks get almost identical prompts (the digest's caution). The coordinates are multiplied by
  ``prompt_scale`` first; 1.0 is the equations as written.
* The head adds its regressed offset to a fixed prior (``prior_scale`` x the plane point, i.e. where the mean
  shape sits in a crop cut ``crop_scale`` around the landmark extent); 0 disables it.
* Confidence: the thesis has none. A linear branch predicts each point's own absolute error (trained on the
  detached error, so the coordinate loss stays Eq. 6.12's L1); confidence = exp(-predicted error / 0.02).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facetrack.models.base import LandmarkModel
from facetrack.models.registry import register_model, register_preset

CONFIDENCE_SCALE = 0.02  # predicted error (normalised crop units, [-1, 1] across the crop) at confidence 1/e


def structure_prompts(points: Tensor, dim: int, tau: float = 10000.0, scale: float = 1.0) -> Tensor:
    """Eqs. 6.1-6.3: plane points (..., 2) -> prompts (..., dim): [sin/cos(x / tau^(2c/(dim/2)))] for c < dim/4,
    then the same for y, x and y first multiplied by ``scale`` (1.0: as written in the thesis)."""
    if dim % 4:
        raise ValueError(f"prompt dim must be a multiple of 4, got {dim}")
    c = torch.arange(dim // 4, device=points.device, dtype=points.dtype)
    freq = tau ** (-2 * c / (0.5 * dim))  # (dim/4,)
    out = []
    for axis in range(2):
        angle = points[..., axis:axis + 1] * scale * freq
        out.append(torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2))  # interleaved 2c, 2c+1
    return torch.cat(out, dim=-1)


class Attention(nn.Module):
    """Multi-head attention with separate query/key/value inputs (plain ops, so it exports to ONNX, unlike the
    fused eval-mode path of ``nn.MultiheadAttention``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, n, c = q.shape
        h = self.heads

        def split(x: Tensor) -> Tensor:
            return x.reshape(b, -1, h, c // h).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(q)), split(self.k(k)), split(self.v(v)))
        return self.out(y.transpose(1, 2).reshape(b, n, c))


class DecoderLayer(nn.Module):
    """LN -> MSA (queries and keys carry the prompts, values do not) -> LN -> MCA (keys: image features plus the
    encoder's positional embedding; queries: tokens plus prompts) -> LN -> FFN, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.cross_attn = Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, t: Tensor, prompts: Tensor, feats: Tensor, pos: Tensor) -> Tensor:
        h = self.norm1(t)
        t = t + self.self_attn(h + prompts, h + prompts, h)
        h = self.norm2(t)
        t = t + self.cross_attn(h + prompts, feats + pos, feats)
        return t + self.ffn(self.norm3(t))


class EncoderLayer(nn.Module):
    """Pre-LN ViT block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h)
        return x + self.mlp(self.norm2(x))


def _stem(kind: str, dim: int, patch: int) -> nn.Module:
    if kind == "patch":
        return nn.Conv2d(3, dim, patch, stride=patch)
    if kind != "conv":
        raise ValueError(f"stem must be 'conv' or 'patch', got {kind!r}")
    steps = int(round(math.log2(patch)))
    if 2 ** steps != patch:
        raise ValueError(f"a conv stem needs a power-of-two patch, got {patch}")
    layers: list[nn.Module] = []
    channels = 3
    for i in range(steps):
        out = dim if i == steps - 1 else max(16, dim // 2 ** (steps - 1 - i))
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1)]
        if i < steps - 1:
            layers += [nn.GroupNorm(1, out), nn.GELU()]
        channels = out
    return nn.Sequential(*layers)


class TUFA(LandmarkModel):
    """TUFA. ``datasets``: ``[[name, num_points], ...]``, the first one the model's own scheme (what ``forward``
    and ``predict`` return, so ``Landmarker`` and ``facetrack detect`` run it like any 68-point model).

    Each dataset has a mean shape on the plane (buffer ``mean.<name>``, set by training with ``set_mean_shape``)
    and a semantic alignment embedding (parameter ``align.<name>``, zeros at start). Outputs are normalised crop
    coordinates u = 2 x / (F - 1) - 1.
    """

    arch = "tufa"

    def __init__(self, *, datasets: Sequence[Sequence[Any]] = (("300w", 68),), scheme: str = "ibug68",
                 input_size: int = 128, patch: int = 16, stem: str = "conv", dim: int = 128, heads: int = 4,
                 depth: int = 4, decoder_layers: int = 3, mlp_ratio: float = 2.0, prompt_scale: float = 1.0,
                 tau: float = 10000.0, prior_scale: float = 0.8, backbone: dict[str, Any] | None = None,
                 token_pool: int = 1, backbone_init: str = "", num_points: int | None = None) -> None:
        datasets = [(str(n), int(k)) for n, k in datasets]
        if not datasets:
            raise ValueError("TUFA needs at least one dataset")
        if num_points is not None and num_points != datasets[0][1]:
            raise ValueError(f"num_points {num_points} differs from the first dataset's {datasets[0][1]}")
        super().__init__(num_points=datasets[0][1], scheme=scheme, input_size=input_size)
        if input_size % patch:
            raise ValueError(f"input_size {input_size} is not a multiple of patch {patch}")
        self.config = {"datasets": [list(d) for d in datasets], "scheme": scheme, "input_size": input_size,
                       "patch": patch, "stem": stem, "dim": dim, "heads": heads, "depth": depth,
                       "decoder_layers": decoder_layers, "mlp_ratio": mlp_ratio, "prompt_scale": prompt_scale,
                       "tau": tau, "prior_scale": prior_scale, "backbone": backbone, "token_pool": token_pool,
                       "backbone_init": backbone_init}
        self.datasets = [n for n, _ in datasets]
        self.dim, self.prompt_scale, self.tau, self.prior_scale = dim, float(prompt_scale), float(tau), prior_scale
        if stem == "cnn":  # a facetrack CNN backbone (e.g. aohr-68's), its features pooled into tokens
            from facetrack.models.backbones import build_backbone

            net, spec = build_backbone(backbone or {"name": "plain"}, input_size)
            self.config["backbone"] = spec
            size = input_size // net.stride
            if size % token_pool:
                raise ValueError(f"feature size {size} is not a multiple of token_pool {token_pool}")
            tokens = (size // token_pool) ** 2
            self.stem = nn.Sequential(net, nn.Conv2d(net.out_channels, dim, token_pool, stride=token_pool))
        else:
            tokens = (input_size // patch) ** 2
            self.stem = _stem(stem, dim, patch)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, mlp_ratio) for _ in range(depth))
        self.encoder_norm = nn.LayerNorm(dim)
        self.decoder = nn.ModuleList(DecoderLayer(dim, heads, mlp_ratio) for _ in range(decoder_layers))
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 2))
        self.error_head = nn.Linear(dim, 1)
        self.align = nn.ParameterDict({n: nn.Parameter(torch.zeros(k, 2)) for n, k in datasets})
        for n, k in datasets:  # placeholder until set_mean_shape: a point cloud is no face, training sets it
            self.register_buffer(f"mean_{n}", torch.zeros(k, 2))

    # ------------------------------------------------------------------------------------------ plane
    def set_mean_shape(self, name: str, shape: np.ndarray | Tensor) -> None:
        """Set dataset ``name``'s mean shape on the plane ((N, 2), normalised to [-1, 1])."""
        buf = getattr(self, f"mean_{name}")
        shape = torch.as_tensor(np.asarray(shape), dtype=buf.dtype)
        if shape.shape != buf.shape:
            raise ValueError(f"mean shape of {name} must be {tuple(buf.shape)}, got {tuple(shape.shape)}")
        buf.copy_(shape)

    def mean_shape(self, name: str | None = None) -> Tensor:
        return getattr(self, f"mean_{name or self.datasets[0]}")

    def anchors(self, name: str | None = None) -> Tensor:
        """The plane positions of a dataset's landmarks: mean shape + semantic alignment embedding (N, 2)."""
        name = name or self.datasets[0]
        return self.mean_shape(name) + self.align[name]

    # ------------------------------------------------------------------------------------------ network
    def encode(self, images: Tensor) -> Tensor:
        """Image features F (B, L, C) (the positional embedding added at the input and reused by the MCA keys)."""
        x = self.stem(self.normalize(images)).flatten(2).transpose(1, 2) + self.pos
        for layer in self.encoder:
            x = layer(x)
        return self.encoder_norm(x)

    def decode_points(self, feats: Tensor, plane: Tensor) -> dict[str, Tensor]:
        """Plane points (B, Q, 2) -> {"coords": normalised crop coordinates (B, Q, 2), "error": (B, Q)}."""
        prompts = structure_prompts(plane, self.dim, self.tau, self.prompt_scale)
        t = torch.zeros_like(prompts)
        pos = self.pos.expand(feats.shape[0], -1, -1)
        for layer in self.decoder:
            t = layer(t, prompts, feats, pos)
        coords = self.prior_scale * plane + self.head(t)
        return {"coords": coords, "error": F.softplus(self.error_head(t).squeeze(-1))}

    def forward(self, images: Tensor, plane: Tensor | None = None) -> dict[str, Tensor]:
        """The model's own scheme (all its anchors, no masking) or the given plane points (B, Q, 2) / (Q, 2)."""
        feats = self.encode(images)
        if plane is None:
            plane = self.anchors()
        if plane.ndim == 2:
            plane = plane.unsqueeze(0).expand(images.shape[0], -1, -1)
        return self.decode_points(feats, plane.to(feats.dtype))

    # ------------------------------------------------------------------------------------------ targets/loss
    def to_normalised(self, points: Tensor | np.ndarray) -> Tensor | np.ndarray:
        return points * (2.0 / (self.input_size - 1)) - 1.0

    def to_pixels(self, coords: Tensor) -> Tensor:
        return (coords + 1.0) * (0.5 * (self.input_size - 1))

    def encode_targets(self, points: np.ndarray, visible: np.ndarray | None = None) -> dict[str, np.ndarray]:
        points = np.asarray(points, dtype=np.float64)
        weight = np.ones(len(points)) if visible is None else np.asarray(visible, dtype=np.float64)
        return {"points": self.to_normalised(points), "weight": weight}

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Eq. 6.12: mean L1 between mapped anchors and labels (normalised crop units; masked points excluded),
        plus the confidence branch's L1 to the detached per-point error."""
        pred, gt = outputs["coords"], targets["points"].to(outputs["coords"].dtype)
        weight = targets.get("weight")
        weight = torch.ones(pred.shape[:2], device=pred.device) if weight is None else weight.to(pred.dtype)
        l1 = (pred - gt).abs().sum(-1)
        denom = weight.sum().clamp_min(1.0)
        error = (pred - gt).detach().norm(dim=-1)
        conf_loss = ((outputs["error"] - error).abs() * weight).sum() / denom
        return (l1 * weight).sum() / denom + conf_loss

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.to_pixels(outputs["coords"]), torch.exp(-outputs["error"] / CONFIDENCE_SCALE)

    @torch.no_grad()
    def predict_points(self, images: Tensor, plane: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        """Zero-shot: any plane points (Q, 2) (e.g. ``plane_from_mean_face``) -> crop px (B, Q, 2), conf (B, Q)."""
        was = self.training
        self.eval()
        try:
            return self.decode(self(images, torch.as_tensor(np.asarray(plane), dtype=torch.float32)))
        finally:
            self.train(was)

    def plane_from_mean_face(self, points: np.ndarray, size: int = 256) -> np.ndarray:
        """Plane points for positions given in the pixels of ``mean_face_image(size=size)`` (so a user can
        place new points on that picture of the mean face)."""
        matrix = self._plane_to_pixels(size)
        points = np.asarray(points, dtype=np.float64)
        return (points - matrix[:, 2]) / matrix[0, 0]

    def mean_face_image(self, name: str | None = None, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """The dataset's anchors drawn at ``size`` px (white dots on black, uint8) and the plane -> pixel scaling
        (2x3, [[s, 0, c], [0, s, c]]): where to pick zero-shot points."""
        import cv2

        matrix = self._plane_to_pixels(size)
        s = matrix[0, 0]
        image = np.zeros((size, size, 3), np.uint8)
        for x, y in self.anchors(name).detach().cpu().numpy() * s + 0.5 * (size - 1):
            cv2.circle(image, (int(round(x)), int(round(y))), 2, (255, 255, 255), -1)
        return image, matrix

    @staticmethod
    def _plane_to_pixels(size: int) -> np.ndarray:
        s = 0.4 * (size - 1)
        return np.array([[s, 0.0, 0.5 * (size - 1)], [0.0, s, 0.5 * (size - 1)]])

    def add_dataset(self, name: str, num_points: int, mean_shape: np.ndarray) -> None:
        """Few-shot: a new dataset entry (mean shape on the plane, fresh zero embedding); ``config`` follows."""
        if name in self.align:
            raise ValueError(f"dataset {name!r} exists")
        self.align[name] = nn.Parameter(torch.zeros(num_points, 2, device=self.pos.device))
        self.register_buffer(f"mean_{name}", torch.zeros(num_points, 2, device=self.pos.device))
        self.set_mean_shape(name, mean_shape)
        self.datasets.append(name)
        self.config["datasets"].append([name, int(num_points)])


def plane_shape(shape: np.ndarray, reference: np.ndarray | None = None,
                pairs: Sequence[tuple[Sequence[int], int]] = ()) -> np.ndarray:
    """A mean shape mapped onto the face plane: with ``reference`` (the primary dataset's plane shape) and
    correspondences ``pairs`` ((reference indices averaged, own index)), affine-aligned onto it (least squares);
    without, centred and scaled so its larger extent spans [-1, 1]."""
    shape = np.asarray(shape, dtype=np.float64)
    if reference is None:
        centre = 0.5 * (shape.min(0) + shape.max(0))
        return (shape - centre) / (0.5 * float(np.max(shape.max(0) - shape.min(0))))
    if len(pairs) < 3:
        raise ValueError("an affine alignment needs at least 3 corresponding points")
    src = np.stack([shape[j] for _, j in pairs])
    dst = np.stack([np.asarray(reference)[list(i)].mean(0) for i, _ in pairs])
    a = np.hstack([src, np.ones((len(src), 1))])
    matrix, *_ = np.linalg.lstsq(a, dst, rcond=None)  # (3, 2)
    return np.hstack([shape, np.ones((len(shape), 1))]) @ matrix


MEAN_FACE_SIZE = 256  # the mean-face picture (``mean_face_image``, ``facetrack meanface``) user points are placed on


def resolve_points(model: Any, points: Any) -> Tensor:
    """Plane points (Q, 2) of a query: a dataset name of the model (its scheme's anchors, e.g. "mtfl5") or
    positions (Q, 2) in the pixels of the ``MEAN_FACE_SIZE`` mean-face picture (``facetrack meanface``).

    Raises ``ModelError`` for a model that is not TUFA, an unknown name or malformed positions (saying which)."""
    from facetrack.errors import ModelError

    if not isinstance(model, TUFA):
        raise ModelError(f"points= needs a TUFA model (e.g. tufa-68): {type(model).__name__} predicts only its own "
                         f"{getattr(model, 'num_points', '?')} points")
    if isinstance(points, str):
        if points not in model.datasets:
            raise ModelError(f"points={points!r}: the model knows the schemes {', '.join(model.datasets)} (or give "
                             f"positions on its mean face)")
        return model.anchors(points).detach().float()
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or not len(array):
        raise ModelError(f"points: expected positions (Q, 2) on the {MEAN_FACE_SIZE} px mean face, got shape "
                         f"{array.shape}")
    if not np.isfinite(array).all():
        raise ModelError("points: positions must be finite numbers")
    return torch.as_tensor(model.plane_from_mean_face(array, MEAN_FACE_SIZE), dtype=torch.float32)


def points_in_crops(landmarker: Any, image: np.ndarray, boxes: Sequence[np.ndarray], rolls: Sequence[float] | None,
                    plane: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Plane points (Q, 2) asked on the crops of ``boxes`` (turned by ``rolls``, as the Landmarker cuts them) ->
    (K, Q, 2) image pixels and (K, Q) confidences."""
    crops, matrices = landmarker.crops(image, boxes, rolls)
    coords, conf = landmarker.model.predict_points(crops, plane)
    return landmarker.to_image(coords, matrices), conf.cpu().numpy().astype(np.float64)


def query_points(landmarker: Any, image: np.ndarray, boxes: np.ndarray,
                 plane: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot in a full image: any plane points (Q, 2) for K face boxes -> (K, Q, 2) image pixels, (K, Q).

    ``landmarker``: a ``facetrack.landmarker.Landmarker`` of a TUFA model. The face is first located with the
    model's own scheme (one pass on ``boxes``), then cropped around those landmarks as in training, and the plane
    points are asked on that crop. Plane points: ``model.anchors(name)`` rows, or ``resolve_points``. (The
    ``Detector(model="tufa-68", points=...)`` API does this after its detection and re-crop passes.)
    """
    from facetrack.data.transforms import box_from_landmarks

    model = landmarker.model
    if not isinstance(model, TUFA):
        raise TypeError(f"zero-shot points need a TUFA model, got {type(model).__name__}")
    first, _ = landmarker.predict_boxes(image, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    plane = torch.as_tensor(np.asarray(plane), dtype=torch.float32) if not isinstance(plane, Tensor) else plane
    return points_in_crops(landmarker, image, [box_from_landmarks(p) for p in first], None, plane)


@register_model("tufa")
def build_tufa(**config: Any) -> TUFA:
    return TUFA(**config)


# The CPU recipe's size (about 1.3 M parameters at 128 px: 64 image tokens) and the thesis's ViT-S/16 (C = 384,
# 6 heads, 12 encoder and 6 decoder layers, 256 px), for the GPU recipe.
register_preset("tufa-cpu", "tufa", {"input_size": 128, "patch": 16, "stem": "conv", "dim": 128, "heads": 4,
                                      "depth": 4, "decoder_layers": 3, "mlp_ratio": 2.0})
# aohr-68's backbone (plain ResNet-style, stride 8: 20x20 features at 160 px, pooled to 10x10 tokens) + 2 ViT layers.
register_preset("tufa-aohr", "tufa", {"input_size": 160, "stem": "cnn", "patch": 16, "dim": 128, "heads": 4,
                                       "depth": 2, "decoder_layers": 3, "mlp_ratio": 2.0, "token_pool": 2,
                                       "backbone": {"name": "plain", "channels": [16, 32, 64, 128], "blocks": [1, 2, 1],
                                                    "out_channels": 128},
                                       "backbone_init": "facetrack/weights/aohr-68.safetensors"})
register_preset("tufa-vits16", "tufa", {"input_size": 256, "patch": 16, "stem": "patch", "dim": 384, "heads": 6,
                                         "depth": 12, "decoder_layers": 6, "mlp_ratio": 4.0})
