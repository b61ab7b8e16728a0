"""AFLW-19 in the layout most users have: HRNet's CSV lists plus the AFLW images.

Files (HRNet-Facial-Landmark-Detection ``data/aflw``)::

    <root>/face_landmarks_aflw_{train,test,test_frontal}.csv
    <root>/images/<image_name>          (or the images directly under <root>)

Columns, in this order (HRNet ``lib/datasets/aflw.py`` reads them by position): ``image_name, scale,
box_size, center_w, center_h``, then 19 ``x, y`` pairs. ``scale`` is HRNet's crop size / 200; ``box_size``
is the face size that AFLW's NME is normalised by. The usual sizes are 20,000 train, 4,386 test
("AFLW-Full") and 1,314 test_frontal faces.

``bbox`` is the square of side ``box_size`` centred on ``(center_w, center_h)``: its sqrt(w*h), its
max side and its height all equal ``box_size``, so every box normaliser reproduces HRNet's AFLW NME.
Coordinates are used as stored (0-based; HRNet adds 1 before its MATLAB-style crop and removes it after).
A point with y <= 0 is an unannotated (invisible) point, the rule HRNet uses to mask its targets.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from facetrack.data.catalog import DatasetSpec, register_dataset
from facetrack.data.sample import FaceSample
from facetrack.data.skipping import Skips
from facetrack.errors import DataError

logger = logging.getLogger(__name__)

NUM_POINTS = 19
SPLITS = ("train", "test", "test_frontal")
_META = ("scale", "box_size", "center_w", "center_h")
_N_COLUMNS = 1 + len(_META) + 2 * NUM_POINTS


def aflw_csv_path(root: str | Path, split: str) -> Path:
    """HRNet's CSV for ``split`` under ``root``."""
    return Path(root) / f"face_landmarks_aflw_{split}.csv"


def load_aflw(root: str | Path, split: str = "test", csv_path: str | Path | None = None,
              image_root: str | Path | None = None, skip_invalid: bool = False) -> list[FaceSample]:
    """Read AFLW-19 ``split`` ("train", "test" or "test_frontal") from HRNet's CSV.

    ``csv_path`` and ``image_root`` override where the list and the images are looked for. Malformed rows
    raise DataError naming the file and line; with ``skip_invalid`` they are logged and counted instead.
    """
    if csv_path is None and split not in SPLITS:
        raise ValueError(f"unknown AFLW split {split!r}; expected one of {SPLITS}")
    root = Path(root)
    path = Path(csv_path) if csv_path is not None else aflw_csv_path(root, split)
    if not path.is_file():
        raise DataError(path, "AFLW annotation CSV not found (expected HRNet's face_landmarks_aflw_*.csv)")
    if image_root is None:
        image_root = root / "images" if (root / "images").is_dir() else root
    image_root = Path(image_root)
    samples: list[FaceSample] = []
    skip = Skips(skip_invalid, logger, "AFLW row", "row(s)")
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if number == 1 and row[0].strip() == "image_name":
                _check_header(row, path)
                continue
            try:
                samples.append(_parse_row(row, path, number, image_root))
            except DataError as exc:
                skip(exc)
    skip.report(path)
    return samples


def _check_header(row: list[str], path: Path) -> None:
    names = [cell.strip() for cell in row]
    if len(names) != _N_COLUMNS:
        raise DataError(path, f"header has {len(names)} columns, expected {_N_COLUMNS} "
                              "(image_name, scale, box_size, center_w, center_h, 19 x/y pairs)", 1)
    if tuple(names[1:5]) != _META:
        raise DataError(path, f"columns 2-5 are {names[1:5]}, expected {list(_META)} (HRNet's order)", 1)


def _parse_row(row: list[str], path: Path, number: int, image_root: Path) -> FaceSample:
    if len(row) != _N_COLUMNS:
        raise DataError(path, f"expected {_N_COLUMNS} columns, found {len(row)}", number)
    name = row[0].strip()
    if not name:
        raise DataError(path, "empty image_name", number)
    try:
        values = [float(cell) for cell in row[1:]]
    except ValueError as exc:
        raise DataError(path, f"not a number ({exc})", number) from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(path, "non-finite value", number)
    _scale, box_size, cx, cy = values[:4]
    if box_size <= 0:
        raise DataError(path, f"box_size must be positive, got {box_size}", number)
    landmarks = np.asarray(values[4:], dtype=np.float64).reshape(NUM_POINTS, 2)
    half = box_size / 2.0
    return FaceSample(
        image_path=image_root / name,
        landmarks=landmarks,
        scheme="aflw19",
        bbox=np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float64),
        visible=landmarks[:, 1] > 0,
        subject=name,
        source="aflw",
    )


register_dataset(DatasetSpec(
    name="aflw", kind="image", scheme="aflw19",
    description="AFLW-19 from HRNet's CSVs (box-normalised: max side of the box)",
    read=load_aflw, splits=SPLITS, default_split="test", normalisers=("max_side",), threshold=0.07,
    subject="none (each face its own)", terms="AFLW (Koestinger et al.): research use only",
))
