"""Training and validation data: faces from a dataset reader -> model-input crops, targets and the crop matrix.

Validation NME is measured in *original image pixels* (as the benchmarks do), so every item carries the
image->crop matrix and the ground truth in original pixels; predictions are mapped back with the exact
inverse of that matrix. Training crops come from ``Augmenter`` (random crop geometry around the GT landmark
box, flips, colour, blur, occluders); validation crops are the centred ``crop_for_inference`` crop.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facetrack.data.sample import FaceSample
from facetrack.data.transforms import Augmenter, apply_affine, box_from_landmarks, crop_for_inference
from facetrack.errors import DataError
from facetrack.schemes import get_scheme
from facetrack.train.config import DataSection

log = logging.getLogger(__name__)

EncodeTargets = Callable[[np.ndarray, "np.ndarray | None"], dict[str, np.ndarray]]


@dataclass
class ExpressionAugment:
    """Warp a training still to a random expression of a shape model fitted on the training faces
    (``facetrack.data.synthetic.expression_variant``) with probability ``prob``, before the crop augmentation."""

    shape_model: Any
    prob: float
    sd: float = 1.0

    def __call__(self, image: np.ndarray, points: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from facetrack.data.synthetic import expression_variant

        return expression_variant(image, points, self.shape_model, seed, self.sd)


class LandmarkDataset(Dataset):
    """Items: ``image`` (3, F, F) float32 RGB in [0, 1], ``targets`` (the model's encoded targets as float32
    tensors), ``matrix`` (2, 3) float64 image->crop, ``landmarks`` (N, 2) float64 GT in original pixels,
    ``visible`` (N,) bool and ``index``.

    Randomness (training only): each item draws its seed from torch's generator, which Lightning seeds and
    DataLoader re-seeds per worker and epoch, so runs are reproducible and epochs differ. ``seed`` fixes the
    augmentation of each index instead (for tests and debugging).
    """

    def __init__(
        self,
        samples: Sequence[FaceSample],
        encode_targets: EncodeTargets,
        input_size: int,
        scheme: str,
        train: bool,
        crop_scale: float = 1.25,
        augmenter: Augmenter | None = None,
        seed: int | None = None,
        expression: ExpressionAugment | None = None,
    ) -> None:
        if not samples:
            raise ValueError("a dataset needs at least one face")
        self.scheme = get_scheme(scheme)
        wrong = next((s for s in samples if s.scheme != self.scheme.name), None)
        if wrong is not None:
            raise DataError(wrong.image_path, f"face annotated in scheme {wrong.scheme!r}, the model predicts "
                                              f"{self.scheme.name!r}")
        self.samples = list(samples)
        self.encode_targets = encode_targets
        self.input_size = int(input_size)
        self.train = train
        self.crop_scale = float(crop_scale)
        self.augmenter = augmenter if train else None
        self.expression = expression if train and augmenter is not None else None
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image = sample.load_image()
        points = np.asarray(sample.landmarks, dtype=np.float64)
        n = len(points)
        visible = np.ones(n, dtype=bool) if sample.visible is None else np.asarray(sample.visible, dtype=bool)
        try:
            box = box_from_landmarks(points)
        except ValueError as exc:
            raise DataError(sample.image_path, f"cannot crop the face: {exc}") from None
        if self.augmenter is not None:
            rng = self._rng(index)
            if self.expression is not None and visible.all() and rng.random() < self.expression.prob:
                image, points = self.expression(image, points, int(rng.integers(0, 2**62)))
                box = box_from_landmarks(points)
            result = self.augmenter(image, points, box, self.scheme, rng)
            crop, crop_points, matrix = result.crop, result.points, result.matrix
            order = result.order
        else:
            crop, matrix = crop_for_inference(image, box, self.input_size, self.crop_scale)
            crop_points = apply_affine(points, matrix)
            order = np.arange(n)
        targets = self.encode_targets(crop_points, visible[order])
        rgb = np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1))
        return {
            "image": torch.from_numpy(rgb).float().div_(255.0),
            "targets": {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in targets.items()},
            "matrix": torch.from_numpy(np.asarray(matrix, dtype=np.float64)),
            "landmarks": torch.from_numpy(points),
            "visible": torch.from_numpy(visible),
            "index": index,
        }

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng([self.seed, index])
        return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


# ----------------------------------------------------------------------------------------------------------
# Dataset names -> (train, val) sample lists

def load_samples(data: DataSection, source: str | Path = "<recipe>") -> tuple[list[FaceSample], list[FaceSample] | None]:
    """The training faces and, when ``data.val_split`` names one, the validation faces of a catalogued image
    dataset (``facetrack.data.catalog``): ``data.split`` read as ``catalog.pool`` reads it."""
    from facetrack.data import catalog

    trainable = catalog.list_datasets("image", trainable=True)
    if data.dataset not in trainable:
        raise DataError(source, f"unknown data.dataset {data.dataset!r}; known: {', '.join(trainable)}")
    if not data.root:
        raise DataError(source, f"data.root is empty: set it to the {data.dataset} folder (e.g. data.root=PATH)")
    train = catalog.pool(data.dataset, data.root, data.split)
    val = catalog.load(data.dataset, data.root, data.val_split) if data.val_split else None
    return train, val


def relative_name(sample: FaceSample, root: str | Path) -> str:
    """A face's image path relative to the dataset root (stable across machines), POSIX style."""
    path, root = Path(sample.image_path), Path(root)
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def split_train_val(
    data: DataSection, source: str | Path, out_dir: str | Path
) -> tuple[list[FaceSample], list[FaceSample]]:
    """Training and validation faces for a recipe; a held-out split is written to (or reused from)
    ``<out>/split.json`` so that resumed runs and ``facetrack evaluate`` see exactly the same faces.
    """
    from facetrack.data.splits import split_by_subject

    train, val = load_samples(data, source)
    if val is not None:
        return train, val
    split_path = Path(out_dir) / "split.json"
    if split_path.is_file():
        return _reuse_split(split_path, train, data)
    train, val = split_by_subject(train, data.val_fraction, data.seed)
    if not val:
        raise DataError(source, f"data.val_fraction={data.val_fraction} leaves no validation faces")
    record = {
        "dataset": data.dataset, "root": str(Path(data.root)), "split": data.split,
        "val_fraction": data.val_fraction, "seed": data.seed, "by": "subject",
        "val_subjects": sorted({s.subject for s in val}),
        "train": [relative_name(s, data.root) for s in train],
        "val": [relative_name(s, data.root) for s in val],
    }
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    log.info("held out %d of %d faces (%d subjects) for validation -> %s", len(val), len(train) + len(val),
             len(record["val_subjects"]), split_path)
    return train, val


def _reuse_split(path: Path, samples: list[FaceSample], data: DataSection) -> tuple[list[FaceSample], list[FaceSample]]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        val_names = set(record["val"])
        train_names = set(record["train"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(path, f"cannot read the saved split ({exc})") from None
    if record.get("dataset") != data.dataset or record.get("split") != data.split:
        raise DataError(path, f"saved split is of {record.get('dataset')}/{record.get('split')}, the recipe "
                              f"trains on {data.dataset}/{data.split}; use another trainer.out")
    names = [relative_name(s, data.root) for s in samples]
    unknown = sorted(set(names) - val_names - train_names)
    if unknown:
        raise DataError(path, f"{len(unknown)} faces of the dataset are in neither side of the saved split "
                              f"(e.g. {unknown[0]}); the dataset changed since the split was made")
    train = [s for s, name in zip(samples, names) if name not in val_names]
    val = [s for s, name in zip(samples, names) if name in val_names]
    return train, val


def build_datasets(
    data: DataSection, source: str | Path, out_dir: str | Path, encode_targets: EncodeTargets,
    input_size: int, scheme: str,
) -> tuple[LandmarkDataset, LandmarkDataset]:
    """(train, val) datasets of a recipe for a model with ``input_size`` and ``scheme``."""
    train, val = split_train_val(data, source, out_dir)
    augmenter = Augmenter(out_size=input_size, scale=data.crop_scale, **data.augment.augmenter_kwargs()) \
        if data.augment.enabled else None
    expression = None
    if augmenter is not None and data.augment.expression_prob > 0:
        from facetrack.data.sequences import fit_training_shape_model

        if not 0 < data.augment.expression_prob <= 1 or data.augment.expression_sd <= 0:
            raise DataError(source, "data.augment.expression_prob must be in (0, 1] and expression_sd > 0")
        expression = ExpressionAugment(fit_training_shape_model(train), data.augment.expression_prob,
                                       data.augment.expression_sd)
    return (
        LandmarkDataset(train, encode_targets, input_size, scheme, True, data.crop_scale, augmenter,
                        expression=expression),
        LandmarkDataset(val, encode_targets, input_size, scheme, False, data.crop_scale),
    )
