"""ideask21: 2,708 faces of 1,942 photographs (mostly East-Asian, many small or blurred), 21 points (scheme
``ideask21``), as the square crops of ``../shared/data/ideask21`` (``tools/prepare_extra_data.py``).

Layout under ``root``: ``I/`` and ``II/`` (the source folders), a 256x256 crop ``<photo>_<k>.jpg`` per face
(k = the face's rank in the folder's ``label.txt``) with its ``.pts`` (1-based on disk), ``manifest.csv``
(crop, source photo, 2x3 affine source -> crop), ``scheme.json`` and ``dropped.csv`` (78 faces left out).

``bbox`` is the source's own face box as the crops were cut: the central half of the crop (crop side = 2.0 x the
box, centred on it). It is larger than the 21-point extent, which has no chin or forehead point.

Subject = the source photograph (``ideask21/I/001424``): faces of one photo never straddle a split. Identities
are not labelled, so two photos of one person may land on both sides. The source has no test set: the
catalogue's ``train``/``val`` hold out 10 % of the photographs (seed 0); ``all`` is every face.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from facetrack.data.catalog import DatasetSpec, HeldOut, register_dataset
from facetrack.data.crops import crops_root, load_crops
from facetrack.data.sample import FaceSample
from facetrack.data.w300 import read_manifest

NUM_POINTS = 21
CROP_SIZE = 256
FOLDERS = ("I", "II")
SPLITS = ("all", *FOLDERS)


def _subject(crop: str, source: str) -> str:
    return f"ideask21/{PurePosixPath(source).parent}/{PurePosixPath(source).stem}"


def source_box(size: int = CROP_SIZE) -> np.ndarray:
    """The source face box in crop pixels: the central half of a ``size`` crop (0-based pixel centres)."""
    centre, half = (size - 1) / 2.0, size / 4.0
    return np.array([centre - half, centre - half, centre + half, centre + half])


def load_ideask21(root: str | Path, split: str = "all", skip_invalid: bool = False) -> list[FaceSample]:
    """The faces of ``split``: ``"all"`` or one source folder (``"I"``, ``"II"``), in manifest order."""
    root = crops_root(root, split, SPLITS, "ideask21")
    manifest = read_manifest(root / "manifest.csv")
    names = [c for c in manifest if split == "all" or c.split("/", 1)[0] == split]
    box = source_box()
    return load_crops(root, names, "ideask21", NUM_POINTS,
                      subject=lambda c: _subject(c, manifest[c].source),
                      source=lambda c: f"ideask21/{c.split('/', 1)[0]}", bbox=lambda _: box.copy(),
                      skip_invalid=skip_invalid, dataset="ideask21")


SPEC = register_dataset(DatasetSpec(
    name="ideask21", kind="image", scheme="ideask21",
    description="ideask/Face-Alignment: 2,708 faces, 21 points, held-out 10 % of source photographs",
    read=load_ideask21, splits=("train", "val", *SPLITS), default_split="val",
    normalisers=("ocular",), threshold=0.08,
    subject="source photograph (identities are not labelled)",
    held_out=HeldOut(pool="all"),
    terms="ideask/Face-Alignment (no licence stated): research use only",
))
