"""Per-landmark offset calibration: the mean crop-pixel residual of a model on its training faces.

Why: horizontal-flip augmentation assumes the annotations mirror exactly. When a dataset's coordinates carry a
small convention offset (the shared 300-W crops: about +0.4 crop pixels in x at 128 px, measured by comparing
each face's prediction with that of its mirrored crop; see benchmarks/README.md, "Flip consistency and
calibration"), flipped and unflipped training crops ask for labels that disagree, and the model settles in
between: a systematic x bias that neither more training nor test-time flip removes (flip averaging doubles
it). The residual's mean over the training faces, per landmark and axis, in the model's crop pixels, measures
that bias (and any other systematic one); ``Landmarker`` subtracts it. It is estimated on training faces only,
once per inference mode (plain and flipped), and stored in the model card under ``calibration``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from facetrack.data.sample import FaceSample, read_image
from facetrack.data.transforms import apply_affine, box_from_landmarks
from facetrack.errors import DataError

MODES = ("plain", "flip")


def estimate_offsets(landmarker: Any, samples: Sequence[FaceSample], progress: bool = True) -> dict[str, np.ndarray]:
    """Mean residual (N, 2) in crop pixels of ``landmarker``'s model on ``samples`` for each mode of ``MODES``
    (plain, and flip averaging: both from one batch per face), each face cut from its landmark extent (the crop
    the engines' re-crop passes converge to). The landmarker's own calibration is not applied."""
    if not samples:
        raise DataError("<calibration>", "no faces to calibrate on")
    total = {mode: np.zeros((landmarker.num_points, 2)) for mode in MODES}
    count = np.zeros((landmarker.num_points, 1))
    for sample in tqdm(samples, desc="calibrate", unit="face", disable=not progress):
        if sample.scheme != landmarker.scheme:
            raise DataError(sample.image_path, f"face annotated in {sample.scheme}, the model predicts "
                                               f"{landmarker.scheme}")
        points = np.asarray(sample.landmarks, dtype=np.float64)
        known = np.isfinite(points).all(axis=1)
        if sample.visible is not None:
            known &= np.asarray(sample.visible, dtype=bool)
        tensor, matrices = landmarker.crops(read_image(sample.image_path), [box_from_landmarks(points)])
        with torch.inference_mode():
            coords, _, mirrored, _ = landmarker.predict_mirrored(tensor)
        target = apply_affine(points, matrices[0])
        plain = coords[0].cpu().numpy().astype(np.float64)
        flip = 0.5 * (plain + mirrored[0].cpu().numpy().astype(np.float64))
        for mode, prediction in (("plain", plain), ("flip", flip)):
            total[mode][known] += (prediction - target)[known]
        count[known] += 1
    if np.any(count == 0):
        raise DataError("<calibration>", "some landmarks are never annotated in the calibration faces")
    return {mode: value / count for mode, value in total.items()}


def calibration_card(offsets: dict[str, np.ndarray], faces: int, source: str, command: str) -> dict[str, Any]:
    """The card section: offsets per mode (crop pixels, subtracted from predictions) and where they come from."""
    unknown = set(offsets) - set(MODES)
    if unknown:
        raise ValueError(f"unknown calibration mode(s) {sorted(unknown)}; known: {MODES}")
    return {
        "offsets_px": {mode: np.round(value, 4).tolist() for mode, value in offsets.items()},
        "mean_offset_px": {mode: np.round(value.mean(axis=0), 4).tolist() for mode, value in offsets.items()},
        "faces": int(faces), "source": source, "command": command,
        "units": "model crop pixels (input_size); subtracted from each prediction before mapping back",
    }


def card_offsets(card: dict[str, Any], num_points: int) -> dict[str, np.ndarray]:
    """The offsets of a card's ``calibration`` section (empty when it has none), checked for shape."""
    section = card.get("calibration") or {}
    out: dict[str, np.ndarray] = {}
    for mode, value in (section.get("offsets_px") or {}).items():
        array = np.asarray(value, dtype=np.float64)
        if mode not in MODES or array.shape != (num_points, 2) or not np.isfinite(array).all():
            raise DataError(card.get("name", "<card>"), f"calibration {mode!r} must be finite ({num_points}, 2) "
                                                        f"offsets, got shape {array.shape}")
        out[mode] = array
    return out
