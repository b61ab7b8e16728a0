"""Training data: crop shapes, targets that decode back to the ground truth, and the held-out split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from facetrack.data.transforms import Augmenter, apply_affine, invert_affine
from facetrack.data.w300 import load_300w
from facetrack.errors import DataError
from facetrack.models.registry import build_model
from facetrack.train.config import AugmentSection, DataSection
from facetrack.train.dataset import LandmarkDataset, build_datasets, load_samples, split_train_val

from .conftest import TINY_MODEL


@pytest.fixture(scope="module")
def model():
    return build_model(TINY_MODEL["arch"], **TINY_MODEL["config"])


def data_section(root: Path, **kwargs) -> DataSection:
    return DataSection(dataset="300w", root=str(root), split="train", val_fraction=0.25, **kwargs)


def decode_to_image(model, item: dict) -> np.ndarray:
    """Decode an item's *targets* as if they were predictions and map them back to original pixels."""
    targets = item["targets"]
    coords, _ = model.codec.decode(targets["hx"][None], targets["hy"][None])
    return apply_affine(coords[0].double().numpy(), invert_affine(item["matrix"].numpy()))


def test_item_layout(w300_root: Path, model) -> None:
    samples = load_300w(w300_root, "train")
    ds = LandmarkDataset(samples, model.encode_targets, model.input_size, model.scheme, train=False)
    item = ds[0]
    f, n, length = model.input_size, model.num_points, model.codec.length
    assert item["image"].shape == (3, f, f) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["targets"]["hx"].shape == (n, length) and item["targets"]["weight"].shape == (n,)
    assert item["matrix"].shape == (2, 3) and item["matrix"].dtype == torch.float64
    assert torch.equal(item["landmarks"], torch.from_numpy(samples[0].landmarks))
    assert item["visible"].dtype == torch.bool and bool(item["visible"].all())
    # RGB order: the crop equals the BGR image warped, channels reversed.
    from facetrack.data.transforms import warp

    bgr = warp(samples[0].load_image(), item["matrix"].numpy(), f)
    assert np.allclose(item["image"].numpy(), bgr[:, :, ::-1].transpose(2, 0, 1) / 255.0)


def test_validation_targets_decode_back_to_ground_truth(w300_root: Path, model) -> None:
    samples = load_300w(w300_root, "train")
    ds = LandmarkDataset(samples, model.encode_targets, model.input_size, model.scheme, train=False, crop_scale=1.25)
    for i in range(len(ds)):
        item = ds[i]
        assert float(item["targets"]["weight"].min()) == 1.0  # centred crop: every point inside
        err = np.linalg.norm(decode_to_image(model, item) - samples[i].landmarks, axis=1)
        assert err.max() < 0.1, f"face {i}: max error {err.max():.3f} px"


def test_augmented_targets_decode_back_to_ground_truth(w300_root: Path, model) -> None:
    samples = load_300w(w300_root, "train")
    augmenter = Augmenter(out_size=model.input_size, scale=1.25, scale_range=(0.8, 1.2), rotation=30.0,
                          shift=0.1, flip_prob=0.0, occlusion_prob=1.0)
    ds = LandmarkDataset(samples, model.encode_targets, model.input_size, model.scheme, train=True,
                         augmenter=augmenter, seed=3)
    rotated = 0
    for i in range(len(ds)):
        item = ds[i]
        linear = item["matrix"].numpy()[:, :2]
        rotated += abs(linear[0, 1]) > 1e-3
        inside = item["targets"]["weight"].numpy() > 0
        assert inside.sum() > 40
        err = np.linalg.norm(decode_to_image(model, item) - samples[i].landmarks, axis=1)[inside]
        assert err.max() < 0.1, f"face {i}: max error {err.max():.3f} px"
    assert rotated >= len(ds) // 2  # the augmentation really rotated the crops


def test_flipped_targets_follow_the_flip_permutation(w300_root: Path, model) -> None:
    from facetrack.schemes import get_scheme

    samples = load_300w(w300_root, "train")
    augmenter = Augmenter(out_size=model.input_size, rotation=0.0, shift=0.0, scale_range=(1.0, 1.0),
                          flip_prob=1.0, occlusion_prob=0.0, blur_prob=0.0)
    ds = LandmarkDataset(samples, model.encode_targets, model.input_size, model.scheme, train=True,
                         augmenter=augmenter, seed=0)
    item = ds[0]
    perm = np.asarray(get_scheme("ibug68").flip_perm)
    decoded = decode_to_image(model, item)  # in flipped order: decoded[i] is the mirror of point perm[i]
    assert np.abs(decoded[np.argsort(perm)] - samples[0].landmarks).max() < 0.1


def test_augmentation_is_reproducible_with_a_seed_and_varies_without(w300_root: Path, model) -> None:
    samples = load_300w(w300_root, "train")
    make = lambda seed: LandmarkDataset(samples, model.encode_targets, model.input_size, model.scheme, True,
                                        augmenter=Augmenter(out_size=model.input_size), seed=seed)
    assert torch.equal(make(5)[1]["image"], make(5)[1]["image"])
    free = make(None)
    torch.manual_seed(0)
    first = free[1]["matrix"]
    assert not torch.equal(first, free[1]["matrix"])


def test_batches_collate(w300_root: Path, model) -> None:
    train, val = build_datasets(data_section(w300_root), "recipe.yaml", w300_root.parent / "run",
                                model.encode_targets, model.input_size, model.scheme)
    batch = next(iter(DataLoader(train, batch_size=3)))
    assert batch["image"].shape == (3, 3, model.input_size, model.input_size)
    assert batch["targets"]["hy"].shape == (3, model.num_points, model.codec.length)
    assert batch["matrix"].shape == (3, 2, 3) and batch["landmarks"].shape == (3, model.num_points, 2)
    loss = model.loss(model(batch["image"]), batch["targets"])
    assert torch.isfinite(loss)


def test_held_out_split_is_by_subject_saved_and_reused(w300_root: Path, tmp_path: Path) -> None:
    data = data_section(w300_root)
    out = tmp_path / "run"
    train, val = split_train_val(data, "recipe.yaml", out)
    assert len(train) + len(val) == 12 and len(val) == 3
    assert not {s.subject for s in train} & {s.subject for s in val}
    record = json.loads((out / "split.json").read_text())
    assert record["dataset"] == "300w" and record["by"] == "subject" and len(record["val"]) == 3
    assert all(not Path(name).is_absolute() for name in record["val"])
    # Another seed or fraction in the recipe does not change a run's saved split: evaluation relies on it.
    again_train, again_val = split_train_val(DataSection(**{**data.__dict__, "seed": 7}), "recipe.yaml", out)
    assert [s.image_path for s in again_val] == [s.image_path for s in val]
    assert [s.image_path for s in again_train] == [s.image_path for s in train]


def test_saved_split_refuses_a_changed_dataset(w300_root: Path, tmp_path: Path) -> None:
    from .conftest import write_300w

    out = tmp_path / "run"
    split_train_val(data_section(w300_root), "recipe.yaml", out)
    bigger = write_300w(tmp_path / "bigger", per_folder=5)
    with pytest.raises(DataError, match="neither side of the saved split") as info:
        split_train_val(data_section(bigger), "recipe.yaml", out)
    assert info.value.path == out / "split.json"


def test_explicit_validation_split_skips_the_held_out_split(w300_root: Path, tmp_path: Path) -> None:
    train, val = split_train_val(data_section(w300_root, val_split="afw"), "recipe.yaml", tmp_path / "run")
    assert len(train) == 12 and len(val) == 4
    assert not (tmp_path / "run" / "split.json").exists()


def test_dataset_errors(w300_root: Path, model) -> None:
    with pytest.raises(DataError, match="unknown data.dataset 'lfw'"):
        load_samples(DataSection(dataset="lfw", root=str(w300_root)), "r.yaml")
    with pytest.raises(DataError, match="data.root is empty"):
        load_samples(DataSection(dataset="300w", root=""), "r.yaml")
    with pytest.raises(DataError, match="unknown data.dataset 'tf'; known: 300w") as info:  # a video dataset
        load_samples(DataSection(dataset="tf", root=str(w300_root)), "r.yaml")
    assert str(info.value.path) == "r.yaml"
    samples = load_300w(w300_root, "train")
    samples[0].scheme = "wflw98"
    with pytest.raises(DataError, match="scheme 'wflw98'"):
        LandmarkDataset(samples, model.encode_targets, model.input_size, model.scheme, train=False)


def test_augment_section_matches_the_augmenter() -> None:
    kwargs = AugmentSection().augmenter_kwargs()
    augmenter = Augmenter(out_size=64, **kwargs)
    for key, value in kwargs.items():
        assert getattr(augmenter, key) == value


def test_expression_augmentation_warps_faces_with_matching_labels(w300_root: Path, model, tmp_path: Path) -> None:
    from facetrack.errors import DataError

    section = data_section(w300_root)
    section.augment = AugmentSection(expression_prob=1.0, expression_sd=1.5, rotation=0.0, occlusion_prob=0.0,
                                     flip_prob=0.0)
    train, _ = build_datasets(section, "recipe.yaml", tmp_path / "run", model.encode_targets, model.input_size,
                              model.scheme)
    assert train.expression is not None
    train.seed = 1
    moved = 0
    for i in range(len(train)):
        item = train[i]
        gt = item["landmarks"].numpy()  # the warped face's labels, in the warped image's pixels
        inside = item["targets"]["weight"].numpy() > 0
        assert np.linalg.norm(decode_to_image(model, item) - gt, axis=1)[inside].max() < 0.1
        moved += np.abs(gt - train.samples[i].landmarks).max() > 1.0
    assert moved == len(train)  # every face got a new expression
    section.augment = AugmentSection(expression_prob=1.5)
    with pytest.raises(DataError, match="expression_prob"):
        build_datasets(section, "recipe.yaml", tmp_path / "run", model.encode_targets, model.input_size,
                       model.scheme)
