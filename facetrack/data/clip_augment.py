"""Clip augmentation of Belmonte et al. (WACV 2019, 4.1): every training sequence also reversed in time and
mirrored, here each drawn at random per clip (probability 0.5 each) instead of storing four copies.

Works on the items of ``facetrack.data.sequences.ClipDataset``: a reversed clip reverses every per-frame entry;
a mirrored clip flips the crops, composes each image->crop matrix with the crop's mirror (x -> F - 1 - x, the
convention of ``crop_matrix(flip=True)``), reorders the ground truth by the scheme's ``flip_perm`` and encodes
the targets again from the mirrored crop points, so training targets, ``matrix`` and ``landmarks`` stay
consistent (validation NRMSE and the jitter loss read the last two).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facetrack.data.sequences import _stack_targets
from facetrack.data.transforms import apply_affine
from facetrack.schemes import get_scheme

PER_FRAME = ("crops", "occluded", "matrix", "landmarks", "visible")


class AugmentedClips(Dataset):
    """A clip dataset whose items are reversed (``reverse``) and mirrored (``flip``) at random, each with
    probability 0.5 per item; randomness from torch's generator, which Lightning seeds."""

    def __init__(self, dataset: Any, encode_targets: Any, input_size: int, scheme: str, reverse: bool = True,
                 flip: bool = True) -> None:
        self.dataset = dataset
        self.encode_targets = encode_targets
        self.input_size = int(input_size)
        self.flip_perm = np.asarray(get_scheme(scheme).flip_perm, dtype=np.int64)
        self.reverse, self.flip = bool(reverse), bool(flip)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # num_frames, source, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        draw = torch.rand(2)
        if self.reverse and draw[0] < 0.5:
            item = reverse_clip(item)
        if self.flip and draw[1] < 0.5:
            item = mirror_clip(item, self.encode_targets, self.input_size, self.flip_perm)
        return item


def reverse_clip(item: dict[str, Any]) -> dict[str, Any]:
    """The clip played backwards: every per-frame tensor and target reversed along time."""
    out = dict(item)
    for key in PER_FRAME:
        out[key] = item[key].flip(0)
    out["targets"] = {k: v.flip(0) for k, v in item["targets"].items()}
    return out


def mirror_clip(item: dict[str, Any], encode_targets: Any, input_size: int, flip_perm: np.ndarray) -> dict[str, Any]:
    """The clip mirrored left-right, ground truth reordered so that point k is still the scheme's point k."""
    mirror = np.array([[-1.0, 0.0, input_size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    matrices = item["matrix"].numpy()
    flipped = np.stack([(mirror @ np.vstack([m, [0.0, 0.0, 1.0]]))[:2] for m in matrices])
    landmarks = item["landmarks"].numpy()[:, flip_perm]
    visible = item["visible"].numpy()[:, flip_perm]
    targets = [encode_targets(apply_affine(p, m), v) for p, m, v in zip(landmarks, flipped, visible)]
    out = dict(item)
    out["crops"] = item["crops"].flip(-1)
    out["matrix"] = torch.from_numpy(flipped)
    out["landmarks"] = torch.from_numpy(np.ascontiguousarray(landmarks))
    out["visible"] = torch.from_numpy(np.ascontiguousarray(visible))
    out["occluded"] = item["occluded"][:, torch.from_numpy(flip_perm)]
    out["targets"] = _stack_targets(targets)
    return out
