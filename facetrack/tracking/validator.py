"""The face validator (CRCT's FV, Eq. 6): the probability that a set of landmarks sits on a face.

A tracker that follows its own landmarks drifts off a face that leaves, turns away or is occluded, and the
landmark model's confidences alone do not always notice. The validator sees a 64x64 crop cut from the
landmark-extent box plus a fourth channel where the landmarks are drawn, so it scores both "is there a face
here" and "do these landmarks line up with it". This module is inference only; it is trained, on the *training*
split of 300W only, by ``facetrack.train.validator``:

    python -m facetrack.train.validator train --data ../shared/data/300w --out facetrack/weights/face_validator

Weights are safetensors + a JSON card (< 1 MB).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from facetrack.data.transforms import apply_affine, crop_matrix, face_roll, upright_box, warp
from facetrack.errors import ModelError
from facetrack.schemes import IBUG68

logger = logging.getLogger(__name__)

ARCH = "face-validator"
INPUT_SIZE = 64
CROP_SCALE = 1.25
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "weights" / "face_validator"


class FaceValidatorNet(nn.Module):
    """Four stride-2 conv blocks on (B, 4, 64, 64) -> one logit per crop; about 90k parameters."""

    def __init__(self, width: int = 16, hidden: int = 32) -> None:
        super().__init__()
        chans = [4, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        side = INPUT_SIZE // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1] * side * side, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, 1))
        self.config = {"width": width, "hidden": hidden}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def validator_crop(image: np.ndarray, landmarks: np.ndarray, upright: bool = False) -> np.ndarray:
    """(64, 64, 4) uint8: the BGR crop around the landmark extent and the landmarks drawn as a 4th channel.

    The same function builds training samples and inference inputs, so both see identical geometry. ``upright``:
    the crop is turned by the landmarks' roll (iBUG-68 shapes), as the landmark crops are, so a face lying
    sideways is judged like an upright one and landmarks turned against their face stand out.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    roll = face_roll(points, IBUG68) if upright and len(points) == IBUG68.num_points else 0.0
    box = upright_box(points, roll)
    side = max(box[2] - box[0], box[3] - box[1])
    if not math.isfinite(side) or side < 1e-3:
        box = np.concatenate([box[:2] - 0.5, box[2:] + 0.5])
    matrix = crop_matrix(box, INPUT_SIZE, CROP_SCALE, roll)
    crop = warp(image, matrix, INPUT_SIZE)
    mask = np.zeros((INPUT_SIZE, INPUT_SIZE), np.uint8)
    shift = 4
    for x, y in np.round(apply_affine(points, matrix) * (1 << shift)).astype(np.int64):
        if abs(x) < (1 << 20) and abs(y) < (1 << 20):
            cv2.circle(mask, (int(x), int(y)), 1 << shift, 255, -1, cv2.LINE_AA, shift)
    return np.concatenate([crop, mask[..., None]], axis=2)


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(K, 64, 64, 4) uint8 BGR+mask -> float32 (K, 4, 64, 64) RGB+mask in [0, 1]."""
    x = crops[..., [2, 1, 0, 3]].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


class FaceValidator:
    """A trained ``FaceValidatorNet`` with its card; ``score(image, [landmarks, ...])`` -> p(face) per face."""

    def __init__(self, net: FaceValidatorNet, card: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.card = card or {}
        self.upright = bool(self.card.get("crop", {}).get("upright", False))
        self._forward: Any = None  # onnxruntime on first use (0.1 ms per face against 0.5-4 in PyTorch), else the net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of (K, 4, 64, 64) inputs, through onnxruntime when it is installed."""
        if self._forward is None:
            self._forward = self.net
            try:
                from facetrack.models.onnx_runtime import onnx_function

                self._forward = onnx_function(self.net, ARCH, torch.zeros(1, 4, INPUT_SIZE, INPUT_SIZE))
            except (ImportError, RuntimeError) as exc:
                logger.info("face validator runs in PyTorch (%s)", exc)
        return self._forward(x)

    @torch.inference_mode()
    def score(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        if len(landmarks) == 0:
            return np.zeros(0)
        crops = np.stack([validator_crop(image, p, self.upright) for p in landmarks])
        return torch.sigmoid(self.forward(to_tensor(crops))).numpy().astype(np.float64)


def save_validator(net: FaceValidatorNet, path: str | Path, card: dict[str, Any],
                   upright: bool = False) -> tuple[Path, Path]:
    """Write PATH.safetensors and PATH.json (architecture, config, crop policy, data, metrics)."""
    from safetensors.torch import save_file

    stem = Path(path).with_suffix("") if Path(path).suffix in (".json", ".safetensors") else Path(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights, card_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(weights), metadata={"arch": ARCH})
    weights.chmod(0o644)  # safetensors writes 0600; packaged weights must be readable by every user
    full = {"arch": ARCH, "config": net.config, "input_size": INPUT_SIZE, "crop": {"scale": CROP_SCALE, "upright": upright},
            "weights": weights.name, **card}
    card_path.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    return weights, card_path


def load_validator(path: str | Path | None = None) -> FaceValidator | None:
    """The packaged validator (or the one at ``path``); None when the files are absent, ModelError when bad."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    stem = DEFAULT_PATH if path is None else Path(path)
    stem = stem.with_suffix("") if stem.suffix in (".json", ".safetensors") else stem
    card_path, weights = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not card_path.exists() or not weights.exists():
        if path is not None:
            raise ModelError(f"{stem}: face validator weights not found (.safetensors + .json)")
        return None
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if card.get("arch") != ARCH or card.get("input_size") != INPUT_SIZE:
            raise ModelError(f"{card_path}: not a {ARCH} card with input size {INPUT_SIZE}")
        net = FaceValidatorNet(**card.get("config", {}))
        net.load_state_dict(load_file(str(weights)))
    except (json.JSONDecodeError, SafetensorError, RuntimeError, TypeError) as exc:
        raise ModelError(f"{stem}: cannot load the face validator: {exc}") from exc
    return FaceValidator(net, card)
