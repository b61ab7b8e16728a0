"""The interface every landmark model follows, so training, inference and the hub treat them alike."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# ImageNet statistics: models see RGB in [0, 1] and normalise internally, so callers never need to know.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LandmarkModel(nn.Module):
    """Base class: a network plus the codec that turns its raw outputs into crop-pixel coordinates.

    Subclasses set ``arch`` and ``config`` (the JSON-serialisable kwargs with which
    ``build_model(arch, **config)`` rebuilds an identical architecture), ``scheme``, ``num_points``,
    ``input_size`` and ``codec``, and implement ``forward``, ``loss`` and ``decode``.
    """

    arch: str = ""

    def __init__(self, *, num_points: int, scheme: str, input_size: int) -> None:
        super().__init__()
        if num_points < 1 or input_size < 8:
            raise ValueError(f"num_points must be >= 1 and input_size >= 8 (got {num_points}, {input_size})")
        self.num_points = int(num_points)
        self.scheme = str(scheme)
        self.input_size = int(input_size)
        self.config: dict[str, Any] = {}
        self.codec: Any = None
        # Constants, not weights: kept out of the state_dict so weight files hold only learned tensors.
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """RGB [0, 1] (B, 3, F, F) -> ImageNet-normalised input; checks the shape callers most often get wrong."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"expected images (B, 3, F, F), got {tuple(images.shape)}")
        if images.shape[-1] != self.input_size:
            raise ValueError(f"expected {self.input_size}x{self.input_size} crops, got {images.shape[-1]}")
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_targets(self, points: np.ndarray, visible: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Training targets for one face (crop px, (N, 2)) in the layout ``loss`` expects once batched."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (self.num_points, 2):
            raise ValueError(f"expected points of shape ({self.num_points}, 2), got {points.shape}")
        return self.codec.encode(points, visible)

    def inference_copy(self) -> LandmarkModel:
        """An eval-mode copy with BatchNorm folded into the convolutions: same outputs, fewer CPU operator calls.

        For inference only; its state_dict differs, so save and train the original.
        """
        from facetrack.models.blocks import fold_batchnorm

        return fold_batchnorm(copy.deepcopy(self).eval())

    @torch.no_grad()
    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Coordinates (B, N, 2) in crop pixels and confidences (B, N); eval mode, no gradients."""
        if not self.training:  # switching modes walks every submodule: ~0.8 ms per call for a 128-module CNN
            return self.decode(self(images))
        self.eval()
        try:
            return self.decode(self(images))
        finally:
            self.train(True)


def batch_weight(targets: dict[str, Tensor], reference: Tensor) -> Tensor:
    """Per-landmark weights (B, N) from the targets, or ones when the codec gave none."""
    weight = targets.get("weight")
    if weight is None:
        return torch.ones(reference.shape[:2], dtype=reference.dtype, device=reference.device)
    return weight.to(reference.dtype).reshape(reference.shape[:2])
