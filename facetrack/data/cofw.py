"""COFW (29 points, with occlusion labels) from ``COFW_train_color.mat`` / ``COFW_test_color.mat``.

The images live inside the .mat file, so samples are ``InMemoryFaceSample`` objects carrying their pixels.
Keys: ``IsTr``/``IsT`` (cell array of images, RGB or grayscale), ``phisTr``/``phisT`` (N x 87: 29 x, 29 y,
29 occlusion flags, 1 = occluded) and ``bboxesTr``/``bboxesT`` (N x 4 ``[x, y, w, h]``). The released
files are MATLAB v7.3 (HDF5, read with h5py: arrays come back transposed and the image cells as object
references); older re-saves (v5) are read with scipy.io.loadmat. The usual sizes are 1,345 train and 507
test faces.

Coordinates: the annotations were made and used in MATLAB (RCPR), where the first pixel's centre is at
1, so by default 1 is subtracted from landmarks and box corners to reach facetrack's 0-based convention.
HRNet and PIPNet use the values as stored; that choice shifts every point by one pixel, which cancels in
an NME computed against the same convention but not when mixing conventions. Pass ``one_based=False``
to keep the stored values.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrack.data.catalog import DatasetSpec, register_dataset
from facetrack.data.sample import FaceSample, to_bgr8
from facetrack.data.skipping import Skips
from facetrack.errors import DataError

logger = logging.getLogger(__name__)

NUM_POINTS = 29
_KEYS = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}


@dataclass
class InMemoryFaceSample(FaceSample):
    """A FaceSample whose pixels are held in memory (datasets that ship images inside one file).

    ``image`` is stored as the dataset gives it; ``load_image`` returns a BGR uint8 copy, so callers may
    modify the result. ``image_path`` is a virtual name (``<file.mat>/<index>``) for reports.
    """

    image: np.ndarray | None = None

    def load_image(self) -> np.ndarray:
        if self.image is None:
            return super().load_image()
        return to_bgr8(self.image).copy()


def load_cofw(path: str | Path, split: str | None = None, one_based: bool = True,
              skip_invalid: bool = False) -> list[InMemoryFaceSample]:
    """Read a COFW .mat file (v7.3 or older); ``split`` ("train"/"test") is inferred from its keys.

    Raises DataError naming the file for a missing file or key, inconsistent counts or a bad face;
    with ``skip_invalid`` bad faces are logged and counted instead.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "COFW .mat file not found")
    import h5py

    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as handle:
            split = _pick_split(path, set(handle.keys()), split)
            images_key, phis_key, boxes_key = _KEYS[split]
            images = _h5_images(handle, images_key, path)
            phis = _h5_matrix(handle, phis_key, path, 3 * NUM_POINTS)
            boxes = _h5_matrix(handle, boxes_key, path, 4) if boxes_key in handle else None
    else:
        import scipy.io

        try:
            mat = scipy.io.loadmat(str(path))
        except Exception as exc:  # scipy raises several types for a damaged file
            raise DataError(path, f"cannot read MATLAB file ({exc})") from None
        split = _pick_split(path, {k for k in mat if not k.startswith("__")}, split)
        images_key, phis_key, boxes_key = _KEYS[split]
        images = [np.asarray(cell) for cell in np.asarray(mat[images_key], dtype=object).ravel()]
        phis = _matrix(np.asarray(mat[phis_key]), phis_key, path, 3 * NUM_POINTS)
        boxes = _matrix(np.asarray(mat[boxes_key]), boxes_key, path, 4) if boxes_key in mat else None
    counts = {images_key: len(images), phis_key: len(phis)}
    if boxes is not None:
        counts[boxes_key] = len(boxes)
    if len(set(counts.values())) != 1:
        raise DataError(path, f"inconsistent face counts {counts}")
    offset = 1.0 if one_based else 0.0
    samples: list[InMemoryFaceSample] = []
    skip = Skips(skip_invalid, logger, "COFW face", "face(s)")
    for i, image in enumerate(images):
        try:
            samples.append(_sample(path, i, image, phis[i], None if boxes is None else boxes[i], offset))
        except DataError as exc:
            skip(exc)
    skip.report(path)
    return samples


def _pick_split(path: Path, keys: set[str], split: str | None) -> str:
    present = [name for name, (images_key, phis_key, _) in _KEYS.items() if {images_key, phis_key} <= keys]
    if split is not None:
        if split not in _KEYS:
            raise ValueError(f"unknown COFW split {split!r}; expected 'train' or 'test'")
        if split not in present:
            raise DataError(path, f"no {_KEYS[split][0]}/{_KEYS[split][1]} keys for split {split!r} "
                                  f"(keys: {sorted(keys)})")
        return split
    if len(present) != 1:
        raise DataError(path, f"cannot tell the split from the keys {sorted(keys)}; pass split='train' or 'test'")
    return present[0]


def _h5_images(handle: Any, key: str, path: Path) -> list[np.ndarray]:
    import h5py

    cells = handle[key]
    if not h5py.check_dtype(ref=cells.dtype):
        raise DataError(path, f"{key} is not a cell array of images (dtype {cells.dtype})")
    images = []
    for ref in np.asarray(cells[()]).ravel():
        if not ref:
            raise DataError(path, f"{key} holds an empty reference at cell {len(images)}")
        # MATLAB stores column-major: an H x W x 3 image reads back as (3, W, H).
        images.append(np.asarray(handle[ref][()]).T)
    return images


def _h5_matrix(handle: Any, key: str, path: Path, width: int) -> np.ndarray:
    if key not in handle:
        raise DataError(path, f"key {key!r} not found")
    return _matrix(np.asarray(handle[key][()]).T, key, path, width)


def _matrix(values: np.ndarray, key: str, path: Path, width: int) -> np.ndarray:
    """An N x width float matrix, accepting the transposed layout a re-save may produce."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise DataError(path, f"{key} has shape {values.shape}, expected N x {width}")
    if values.shape[1] != width and values.shape[0] == width:
        values = values.T
    if values.shape[1] != width:
        raise DataError(path, f"{key} has shape {values.shape}, expected N x {width}")
    return values


def _sample(path: Path, i: int, image: np.ndarray, phi: np.ndarray, box: np.ndarray | None,
            offset: float) -> InMemoryFaceSample:
    where = f"face {i + 1}"
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or image.size == 0:
        raise DataError(path, f"{where}: image has shape {image.shape}, expected H x W or H x W x 3")
    if image.ndim == 3:
        image = np.ascontiguousarray(image[:, :, ::-1])  # MATLAB RGB -> BGR
    else:
        image = np.ascontiguousarray(image)
    if not np.all(np.isfinite(phi)):
        raise DataError(path, f"{where}: non-finite landmark values")
    flags = phi[2 * NUM_POINTS:]
    if not np.all(np.isin(flags, (0.0, 1.0))):
        raise DataError(path, f"{where}: occlusion flags must be 0 or 1")
    landmarks = phi[: 2 * NUM_POINTS].reshape(2, NUM_POINTS).T - offset
    bbox = None
    if box is not None:
        if not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
            raise DataError(path, f"{where}: bad box [x, y, w, h] = {box.tolist()}")
        x0, y0 = box[0] - offset, box[1] - offset
        bbox = np.array([x0, y0, x0 + box[2], y0 + box[3]], dtype=np.float64)
    return InMemoryFaceSample(
        image_path=path / f"{i:04d}",
        landmarks=np.ascontiguousarray(landmarks, dtype=np.float64),
        scheme="cofw29",
        bbox=bbox,
        visible=flags == 0.0,
        subject=f"{path.stem}/{i:04d}",
        source="cofw",
        image=image,
    )


def export_images(samples: list[InMemoryFaceSample], folder: str | Path) -> list[FaceSample]:
    """Write each in-memory image as ``<folder>/<index>.png`` and return file-backed copies of the samples.

    File-based tools (``facetrack detect`` with ``--boxes``) need images on disk; PNG keeps pixels exact.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    exported: list[FaceSample] = []
    for sample in samples:
        target = folder / f"{Path(sample.image_path).name}.png"
        if not cv2.imwrite(str(target), sample.load_image()):
            raise DataError(target, "cannot write image")
        record = {f.name: getattr(sample, f.name) for f in fields(FaceSample)}
        record["image_path"] = target
        exported.append(FaceSample(**record))
    return exported


def cofw_mat(root: str | Path, split: str | None) -> Path:
    """The .mat file of ``split`` when ``root`` is the COFW folder (``COFW_{train,test}_color.mat``), else ``root``.
    Faces are named ``<file.mat>/<index>``, so this is also the root prediction paths are matched against."""
    path = Path(root)
    if path.is_dir():
        path = path / ("COFW_train_color.mat" if split == "train" else "COFW_test_color.mat")
    return path


def read_cofw(root: str | Path, split: str = "test") -> list[InMemoryFaceSample]:
    """COFW ``split`` from the folder holding both .mat files, or from one .mat file (whose keys tell the split)."""
    return load_cofw(cofw_mat(root, split), split if Path(root).is_dir() else None)


register_dataset(DatasetSpec(
    name="cofw", kind="image", scheme="cofw29",
    description="COFW (29 points): 1,345 train / 507 test, occlusion flags; root = the folder or a .mat file",
    read=read_cofw, splits=("train", "test"), default_split="test", normalisers=("pupil", "ocular"),
    threshold=0.10, subject="none (each face its own)", matching_root=cofw_mat,
    terms="COFW (Burgos-Artizzu et al.): research use only",
))
