from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from facetrack.data.cofw import InMemoryFaceSample, export_images, load_cofw
from facetrack.errors import DataError


def _dataset(rng: np.random.Generator, n: int = 3):
    """RGB and gray images, phis (N x 87) with 1-based coordinates, boxes [x, y, w, h]."""
    images = []
    for i in range(n):
        h, w = 40 + 3 * i, 50 + 5 * i
        images.append(rng.integers(0, 256, size=(h, w) if i == 1 else (h, w, 3), dtype=np.uint8))
    phis = np.zeros((n, 87))
    phis[:, :29] = rng.uniform(1, 40, size=(n, 29))
    phis[:, 29:58] = rng.uniform(1, 35, size=(n, 29))
    phis[:, 58:] = rng.integers(0, 2, size=(n, 29))
    boxes = np.column_stack([rng.uniform(1, 5, n), rng.uniform(1, 5, n),
                             rng.uniform(20, 30, n), rng.uniform(20, 30, n)])
    return images, phis, boxes


def _cell(images: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((len(images), 1), dtype=object)
    for i, img in enumerate(images):
        cell[i, 0] = img
    return cell


def _save_v5(path: Path, images, phis, boxes, prefix: str = "T") -> Path:
    scipy.io.savemat(str(path), {f"Is{prefix}": _cell(images), f"phis{prefix}": phis, f"bboxes{prefix}": boxes})
    return path


def _save_v73(path: Path, images, phis, boxes, prefix: str = "T") -> Path:
    """The MATLAB v7.3 layout: column-major arrays, the image cell as object references into #refs#."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        cells = f.create_dataset(f"Is{prefix}", (1, len(images)), dtype=h5py.ref_dtype)
        for i, img in enumerate(images):
            cells[0, i] = refs.create_dataset(f"i{i}", data=img.T).ref
        f.create_dataset(f"phis{prefix}", data=phis.T)
        f.create_dataset(f"bboxes{prefix}", data=boxes.T)
    return path


def _check_round_trip(samples, images, phis, boxes, offset: float) -> None:
    assert len(samples) == len(images)
    for s, img, phi, box in zip(samples, images, phis, boxes):
        assert isinstance(s, InMemoryFaceSample)
        assert s.scheme == "cofw29" and s.landmarks.shape == (29, 2)
        np.testing.assert_allclose(s.landmarks[:, 0], phi[:29] - offset)
        np.testing.assert_allclose(s.landmarks[:, 1], phi[29:58] - offset)
        np.testing.assert_array_equal(s.visible, phi[58:] == 0)
        np.testing.assert_allclose(s.bbox, [box[0] - offset, box[1] - offset,
                                            box[0] - offset + box[2], box[1] - offset + box[3]])
        out = s.load_image()
        assert out.dtype == np.uint8 and out.shape == img.shape[:2] + (3,)
        expected = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, ::-1]
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("saver", [_save_v5, _save_v73], ids=["v5", "v7.3"])
def test_round_trip(tmp_path: Path, rng: np.random.Generator, saver) -> None:
    images, phis, boxes = _dataset(rng)
    path = saver(tmp_path / "COFW_test_color.mat", images, phis, boxes)
    _check_round_trip(load_cofw(path), images, phis, boxes, offset=1.0)
    _check_round_trip(load_cofw(path, one_based=False), images, phis, boxes, offset=0.0)


@pytest.mark.parametrize("saver", [_save_v5, _save_v73], ids=["v5", "v7.3"])
def test_train_keys_and_split_checks(tmp_path: Path, rng: np.random.Generator, saver) -> None:
    images, phis, boxes = _dataset(rng, n=2)
    path = saver(tmp_path / "COFW_train_color.mat", images, phis, boxes, prefix="Tr")
    samples = load_cofw(path)
    assert len(samples) == 2 and load_cofw(path, split="train")[1].subject == "COFW_train_color/0001"
    with pytest.raises(DataError, match="IsT/phisT"):
        load_cofw(path, split="test")


def test_load_image_returns_a_copy(tmp_path: Path, rng: np.random.Generator) -> None:
    images, phis, boxes = _dataset(rng, n=1)
    sample = load_cofw(_save_v73(tmp_path / "c.mat", images, phis, boxes))[0]
    first = sample.load_image()
    first[:] = 0
    assert sample.load_image().any()


def test_inconsistent_counts_and_shapes(tmp_path: Path, rng: np.random.Generator) -> None:
    images, phis, boxes = _dataset(rng)
    path = _save_v73(tmp_path / "a.mat", images, phis[:2], boxes)
    with pytest.raises(DataError, match=r"a.mat: inconsistent face counts"):
        load_cofw(path)
    path = _save_v5(tmp_path / "b.mat", images, phis[:, :58], boxes)
    with pytest.raises(DataError, match=r"b.mat: phisT has shape \(3, 58\)"):
        load_cofw(path)


def test_bad_faces_raise_or_are_skipped(tmp_path: Path, rng: np.random.Generator, caplog) -> None:
    images, phis, boxes = _dataset(rng)
    phis[1, 60] = 0.5  # not an occlusion flag
    path = _save_v73(tmp_path / "c.mat", images, phis, boxes)
    with pytest.raises(DataError, match="c.mat: face 2: occlusion flags"):
        load_cofw(path)
    with caplog.at_level(logging.WARNING, logger="facetrack.data.cofw"):
        samples = load_cofw(path, skip_invalid=True)
    assert [s.subject for s in samples] == ["c/0000", "c/0002"]
    assert "skipped 1 invalid face" in caplog.text


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_cofw(tmp_path / "none.mat")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(DataError, match="junk.mat"):
        load_cofw(junk)
    other = tmp_path / "other.mat"
    scipy.io.savemat(str(other), {"x": np.zeros(3)})
    with pytest.raises(DataError, match="cannot tell the split"):
        load_cofw(other)


def test_export_images_writes_exact_pngs(tmp_path: Path, rng: np.random.Generator) -> None:
    images, phis, boxes = _dataset(rng)
    samples = load_cofw(_save_v5(tmp_path / "COFW_test_color.mat", images, phis, boxes))
    exported = export_images(samples, tmp_path / "out")
    assert [p.image_path.name for p in exported] == ["0000.png", "0001.png", "0002.png"]
    for original, copy in zip(samples, exported):
        assert type(copy) is not InMemoryFaceSample and copy.image_path.is_file()
        np.testing.assert_array_equal(copy.load_image(), original.load_image())
        np.testing.assert_array_equal(copy.landmarks, original.landmarks)
        np.testing.assert_array_equal(copy.visible, original.visible)
