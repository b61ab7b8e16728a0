"""Run a landmark model on face boxes of a full image and return landmarks in that image's pixels.

The one place where crops are cut for inference and predictions are mapped back, so ``detect``, ``track``
and the evaluation of any model go through the same geometry as training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from facetrack.calibration import card_offsets
from facetrack.data.transforms import apply_affine, crop_matrix, invert_affine, warp
from facetrack.models.base import LandmarkModel
from facetrack.models.onnx_runtime import predictor_for
from facetrack.schemes import get_scheme

# Re-crop passes on a fresh detection (see ``Landmarker``). Measured on the 202 held-out 300-W faces with the
# default detector and aohr-68: NME 4.94 % with 1 pass, 4.84 % with 2, against 4.56 % from ground-truth boxes
# (benchmarks/README.md); later frames of a track are cropped from landmarks and need none.
REFINE = 2


class Landmarker:
    """A landmark model with its crop policy.

    ``refine``: how many extra passes an engine makes on a fresh detection, re-cropping around the landmark
    extent of the previous pass: detector boxes are cut differently from the landmark-extent boxes the models
    are trained on, and one re-crop removes that mismatch whatever the detector (tracking does the same from
    frame to frame). See ``facetrack.tracking.engine``.

    ``runtime``: "auto" runs the encoder with onnxruntime on the CPU when it can (same outputs to ~1e-6,
    about 1.5x faster at batch 1), "torch" keeps PyTorch, "onnx" insists (see ``facetrack.models.onnx_runtime``),
    "int8" runs the static int8 graph the card names (``facetrack quantize``; about 2x faster; the predict graph
    of a per-frame model, the step graph of a temporal model; opt-in: it costs some accuracy and jitter).

    ``flip``: test-time flip augmentation: every crop also runs mirrored (one batch of 2K), and the mirrored
    prediction, mapped back and re-ordered by the scheme's flip permutation, is averaged with the direct one.
    Lower error (3.39 -> 3.27 % for aohr-68) for about 2.4x the time per face (benchmarks/README.md, "Flip
    consistency and calibration"); off by default.

    ``calibrate``: subtract the model card's per-landmark offsets for this mode (``facetrack.calibration``:
    the mean residual on the training faces, in crop pixels), when the card has them.
    """

    def __init__(self, model: LandmarkModel | str | Path, crop_scale: float | None = None, refine: int = REFINE,
                 device: str | torch.device = "cpu", runtime: str = "auto", flip: bool = False,
                 calibrate: bool = True) -> None:
        if not isinstance(model, LandmarkModel):
            from facetrack.models.hub import load_model

            model = load_model(model, map_location=device)
        card = getattr(model, "card", {}) or {}
        int8 = None
        if runtime == "int8":
            from facetrack.models.quantize import int8_graph

            card_path = getattr(model, "card_path", None)
            int8 = int8_graph(card, None if card_path is None else Path(card_path).parent)
        # BatchNorm folded into the convolutions: the same outputs with fewer CPU operator calls.
        self.model = model.to(device).eval().inference_copy()
        # the network, in PyTorch or onnxruntime (float, or the card's int8 graph)
        self.predictor = predictor_for(self.model, runtime, device, int8)
        self.runtime = self.predictor.runtime
        # a model with outputs besides the landmarks (ATPN: head pose, p(face)) gives them from the same network call:
        # ``aux`` holds those of the last crops predicted (NumPy, one row per crop)
        aux_predictor = getattr(self.model, "aux_predictor", None)
        self._predict_aux = aux_predictor(self.runtime) if callable(aux_predictor) else None
        self.aux: dict[str, np.ndarray] = {}
        self.crop_scale = float(crop_scale if crop_scale is not None else card.get("crop", {}).get("scale", 1.25))
        if refine < 0:
            raise ValueError(f"refine must be >= 0, got {refine}")
        self.refine = int(refine)
        self.device = torch.device(device)
        self.name = str(card.get("name", model.arch))
        self.flip = bool(flip)
        self._flip_perm = torch.as_tensor(get_scheme(self.model.scheme).flip_perm, dtype=torch.long)
        offsets = card_offsets(card, self.model.num_points).get("flip" if flip else "plain") if calibrate else None
        self.offsets = None if offsets is None else torch.as_tensor(offsets, dtype=torch.float32, device=self.device)

    @property
    def scheme(self) -> str:
        return self.model.scheme

    @property
    def num_points(self) -> int:
        return self.model.num_points

    def crops(self, image: np.ndarray, boxes: Sequence[np.ndarray] | np.ndarray,
              rolls: Sequence[float] | np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Model-input tensor (K, 3, F, F) RGB [0, 1] for K boxes, and their (K, 2, 3) image->crop matrices.

        ``rolls``: each crop's rotation in degrees (``crop_matrix``), so a rolled face comes out upright; the
        boxes are then upright boxes (``facetrack.data.transforms.upright_box``)."""
        size = self.model.input_size
        rolls = np.zeros(len(boxes)) if rolls is None else np.asarray(rolls, dtype=np.float64).reshape(len(boxes))
        matrices = np.stack([crop_matrix(box, size, self.crop_scale, roll) for box, roll in zip(boxes, rolls)])
        crops = np.stack([warp(image, m, size) for m in matrices])
        rgb = crops[..., ::-1].astype(np.float32) / 255.0
        tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).to(self.device)
        return tensor, matrices

    def predict_boxes(self, image: np.ndarray, boxes: np.ndarray,
                      rolls: Sequence[float] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (K, N, 2) in image pixels and confidences (K, N) for K landmark-extent-like boxes (turned by
        ``rolls`` degrees, see ``crops``)."""
        tensor, matrices = self.crops(image, boxes, rolls)
        coords, conf = self.predict_crops(tensor)
        return self.to_image(coords, matrices), conf.cpu().numpy().astype(np.float64)

    @staticmethod
    def to_image(coords: torch.Tensor, matrices: np.ndarray) -> np.ndarray:
        """Crop-pixel landmarks (K, N, 2) mapped back to image pixels through their (K, 2, 3) crop matrices."""
        coords_np = coords.detach().cpu().numpy().astype(np.float64)
        return np.stack([apply_affine(c, invert_affine(m)) for c, m in zip(coords_np, matrices)])

    def predict_crops(self, crops: torch.Tensor, calibrated: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop-pixel landmarks (K, N, 2) and confidences (K, N) of model-input crops: with ``flip`` averaged with
        the mirrored crops' predictions, then (``calibrated``) less the card's offsets."""
        if self.flip:
            coords, conf, mirrored, mirrored_conf = self.predict_mirrored(crops)
            coords, conf = 0.5 * (coords + mirrored), 0.5 * (conf + mirrored_conf)
        else:
            coords, conf = self._run(crops)
        return (self.calibrated(coords) if calibrated else coords), conf

    def _run(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predictor on model-input crops; a model's extra outputs, if any, go to ``aux``."""
        if self._predict_aux is None:
            return self.predictor.predict(crops)
        coords, conf, aux = self._predict_aux(crops)
        self.aux = {k: v.detach().cpu().numpy() for k, v in aux.items()}
        return coords, conf

    def calibrated(self, coords: torch.Tensor) -> torch.Tensor:
        """Crop-pixel landmarks (..., N, 2) less the card's offsets for this mode (unchanged without any)."""
        return coords if self.offsets is None else coords - self.offsets.to(coords)

    def predict_mirrored(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Uncalibrated predictions of the crops and of their mirrors (one batch of 2K), the mirrors' mapped back
        to the crops' frame and order: (coords, conf, mirrored coords, mirrored conf)."""
        k = crops.shape[0]
        both, conf = self._run(torch.cat([crops, crops.flip(-1)]))
        self.aux = {key: value[:k] for key, value in self.aux.items()}
        mirrored = both[k:, self._flip_perm].clone()
        mirrored[..., 0] = (self.model.input_size - 1) - mirrored[..., 0]
        return both[:k], conf[:k], mirrored, conf[k:, self._flip_perm]
