"""Datasets shipped as face crops with one ``.pts`` per crop, listed by a manifest (ideask21, mtfl5, ytf68).

The shared loader behind their readers: a list of crop names (``<folder>/<stem>``, relative to the root) ->
``FaceSample`` records, with the image next to its ``.pts`` and the per-dataset parts (subject, face box,
source tag) passed in. ``dropped.csv`` (crop, source, reason) lists faces the data's maker left out.
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from facetrack.data.sample import FaceSample
from facetrack.errors import DataError, read_text
from facetrack.io.pts import read_pts

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_csv_rows(path: str | Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV whose header starts with ``columns`` (further columns are kept); DataError names the line."""
    path = Path(path)
    rows = list(csv.reader(read_text(path, "file not found", "cannot read").splitlines()))
    if not rows or tuple(c.strip() for c in rows[0][: len(columns)]) != columns:
        raise DataError(path, f"expected a header starting with {','.join(columns)}", 1)
    header = [c.strip() for c in rows[0]]
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} columns, got {len(row)}", line_no)
        out.append({k: v.strip() for k, v in zip(header, row)})
    return out


def crops_root(root: str | Path, split: str, splits: tuple[str, ...], dataset: str) -> Path:
    """The dataset folder, after checking the split name (ValueError) and that the folder exists (DataError)."""
    if split not in splits:
        raise ValueError(f"unknown {dataset} split {split!r}; known: {', '.join(splits)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, f"{dataset} folder not found")
    return root


def read_dropped(root: str | Path) -> dict[str, str]:
    """``dropped.csv`` of a dataset folder: crop name -> why its maker left it out ({} when there is none)."""
    path = Path(root) / "dropped.csv"
    if not path.is_file():
        return {}
    return {row["crop"]: row["reason"] for row in read_csv_rows(path, ("crop", "source", "reason"))}


def _image_of(stem_path: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = stem_path.with_name(stem_path.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def load_crops(
    root: str | Path,
    names: Iterable[str],
    scheme: str,
    num_points: int,
    subject: Callable[[str], str],
    source: Callable[[str], str],
    bbox: Callable[[np.ndarray], np.ndarray | None] | None = None,
    skip_invalid: bool = False,
    dataset: str = "crops",
) -> list[FaceSample]:
    """One ``FaceSample`` per crop name (``<root>/<name>.pts`` + its image), in the order given.

    ``subject(name)``, ``source(name)`` and ``bbox(points)`` supply the per-dataset fields. A missing image, a
    missing or malformed ``.pts`` raises DataError naming the file; with ``skip_invalid`` it is logged, counted
    and skipped. Names listed in ``dropped.csv`` are never loaded.
    """
    root = Path(root)
    dropped = read_dropped(root)
    samples: list[FaceSample] = []
    problems: list[DataError] = []
    for name in names:
        if name in dropped:
            log.info("%s: %s is in dropped.csv (%s); not loaded", dataset, name, dropped[name])
            continue
        stem_path = root / name
        image = _image_of(stem_path)
        try:
            if image is None:
                raise DataError(stem_path.with_suffix(".jpg"), "crop image not found")
            points = read_pts(stem_path.with_name(stem_path.name + ".pts"), num_points=num_points)
        except DataError as exc:
            problems.append(exc)
            continue
        samples.append(FaceSample(image_path=image, landmarks=points, scheme=scheme,
                                  bbox=None if bbox is None else bbox(points), subject=subject(name),
                                  source=source(name)))
    if problems and not skip_invalid:
        raise problems[0]
    for problem in problems:
        log.warning("skipping invalid %s face: %s", dataset, problem)
    if problems:
        log.warning("%s: skipped %d invalid faces, loaded %d", dataset, len(problems), len(samples))
    return samples
