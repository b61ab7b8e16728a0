"""300-W (Sagonas et al.) in its official folder layout, as 68-point iBUG ``FaceSample`` records.

Layout under ``root``: ``afw/``, ``helen/trainset``, ``helen/testset``, ``lfpw/trainset``, ``lfpw/testset`` and
``ibug/``, each a flat folder of images (.jpg/.png) with a same-stem ``.pts``. The development crops in
``../shared/data/300w`` use the same layout plus a ``manifest.csv`` and load through the same function.

This layout ships no face boxes, so ``bbox`` is the landmark extent box ``[min x, min y, max x, max y]``
(the usual "GT box" of 300-W protocols); crop policies add their own margin on top of it.
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from facetrack.data.catalog import DatasetSpec, HeldOut, register_dataset
from facetrack.data.sample import FaceSample
from facetrack.errors import DataError, read_text
from facetrack.geometry import box_from_points
from facetrack.io.pts import read_pts

log = logging.getLogger(__name__)

NUM_POINTS = 68
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Faces per folder in the full official release (afw + helen/trainset + lfpw/trainset = 3,148 training
# faces; common = 554, challenge = 135, full = 689). A folder with another count is a partial copy.
EXPECTED_COUNTS: dict[str, int] = {
    "afw": 337,
    "helen/trainset": 2000,
    "lfpw/trainset": 811,
    "helen/testset": 330,
    "lfpw/testset": 224,
    "ibug": 135,
}

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenge": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
    **{folder: (folder,) for folder in EXPECTED_COUNTS},
}

# "<photo>_<k>": AFW/HELEN ("1051618982_1") and iBUG ("image_003_1") number the faces of one photograph.
# LFPW stems ("image_0001") have no face index, and the photo id must end in a digit to be stripped, so
# "image_0001" is kept whole rather than collapsing every LFPW photo into "image".
_FACE_INDEX = re.compile(r"^(?P<photo>.*\d)_(?P<face>\d+)$")


@dataclass(frozen=True)
class ManifestEntry:
    """One row of a crops manifest: where a crop came from and how its pixels map to the source's."""

    crop: str  # crop name without extension, relative to the dataset root ("afw/1051618982_1")
    source: str  # the source annotation file ("afw/1051618982_1.pts")
    affine: np.ndarray  # (2, 3): 0-based source pixels -> crop pixels
    extra: dict[str, str] = field(default_factory=dict)  # further columns named by the header (ytf68: clip, split)


def photo_subject(folder: str, stem: str) -> str:
    """The source-photograph id of a face, prefixed by its folder, so one photo's faces share a subject."""
    match = _FACE_INDEX.match(stem)
    photo = match.group("photo") if match else stem
    return f"{folder}/{photo}"


def read_manifest(path: str | Path) -> dict[str, ManifestEntry]:
    """Read a crops ``manifest.csv`` (crop name, source file, 6 affine numbers by row) keyed by crop name.

    A header row starting with ``crop`` is allowed; columns it names after the 8 land in ``extra``. Raises
    DataError naming the line of any malformed row.
    """
    path = Path(path)
    text = read_text(path, "manifest file not found", "cannot read manifest")
    entries: dict[str, ManifestEntry] = {}
    extra_names: list[str] = []
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if line_no == 1 and row[0].strip().lower().startswith("crop"):
            extra_names = [name.strip() for name in row[8:]]
            continue
        if len(row) != 8 + len(extra_names):
            raise DataError(path, f"expected {8 + len(extra_names)} columns (crop, source, 6 affine values"
                                  f"{', ' + ', '.join(extra_names) if extra_names else ''}), got {len(row)}", line_no)
        crop, source = row[0].strip(), row[1].strip()
        try:
            values = np.array([float(v) for v in row[2:8]], dtype=np.float64)
        except ValueError:
            raise DataError(path, f"affine values are not numbers: {row[2:]}", line_no) from None
        if not np.all(np.isfinite(values)):
            raise DataError(path, "non-finite affine value", line_no)
        if crop in entries:
            raise DataError(path, f"crop {crop!r} is listed twice", line_no)
        entries[crop] = ManifestEntry(crop=crop, source=source, affine=values.reshape(2, 3),
                                      extra={k: v.strip() for k, v in zip(extra_names, row[8:])})
    return entries


def _subject_from_source(source: str, fallback_folder: str) -> str:
    src = PurePosixPath(source.replace("\\", "/"))
    folder = str(src.parent) if str(src.parent) not in ("", ".") else fallback_folder
    return photo_subject(folder, src.stem)


def _pair_files(folder: Path) -> tuple[dict[str, Path], dict[str, Path], list[Path]]:
    """Map stems to their .pts and image files; also return duplicate images (one stem, two formats)."""
    pts: dict[str, Path] = {}
    images: dict[str, Path] = {}
    duplicates: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_file():
            continue
        suffix = entry.suffix.lower()
        if suffix == ".pts":
            pts[entry.stem] = entry
        elif suffix in IMAGE_SUFFIXES:
            if entry.stem in images:
                duplicates.append(entry)
            else:
                images[entry.stem] = entry
    return pts, images, duplicates


def _load_folder(
    root: Path, folder: str, manifest: dict[str, ManifestEntry], skip_invalid: bool
) -> tuple[list[FaceSample], int]:
    """Load one 300-W folder; returns its samples and how many files were skipped as invalid."""
    directory = root / folder
    pts_files, images, duplicates = _pair_files(directory)
    if not pts_files and not images:
        raise DataError(directory, "300-W folder has no images and no .pts files")
    problems: list[DataError] = [
        DataError(dup, f"two images share the stem {dup.stem!r}; keep one") for dup in duplicates
    ]
    problems += [
        DataError(images[stem], "image has no .pts annotation with the same name")
        for stem in sorted(set(images) - set(pts_files))
    ]
    samples: list[FaceSample] = []
    for stem, pts_path in sorted(pts_files.items()):
        if stem not in images:
            problems.append(DataError(pts_path, "annotation has no image with the same name (.jpg/.png)"))
            continue
        try:
            points = read_pts(pts_path, num_points=NUM_POINTS)
        except DataError as exc:
            problems.append(exc)
            continue
        entry = manifest.get(f"{folder}/{stem}")
        subject = _subject_from_source(entry.source, folder) if entry else photo_subject(folder, stem)
        samples.append(
            FaceSample(
                image_path=images[stem],
                landmarks=points,
                scheme="ibug68",
                bbox=box_from_points(points),  # the landmark extent: 300-W's stand-in for a face box
                subject=subject,
                source=f"300w/{folder}",
            )
        )
    if problems and not skip_invalid:
        raise problems[0]
    for problem in problems:
        log.warning("skipping invalid 300-W file: %s", problem)
    expected = EXPECTED_COUNTS.get(folder)
    if expected is not None and len(pts_files) != expected:
        log.warning(
            "%s: %d annotated faces, the official 300-W folder has %d (partial copy?)",
            directory, len(pts_files), expected,
        )
    return samples, len(problems)


def load_300w(root: str | Path, split: str = "full", skip_invalid: bool = False) -> list[FaceSample]:
    """Load a 300-W split ("train", "common", "challenge", "full" or one folder such as "helen/testset").

    Raises DataError naming the folder when one of the split's folders is absent, and naming the file for a
    .pts without image, an image without .pts or a malformed .pts (with ``skip_invalid`` those are logged,
    counted and skipped). Counts that differ from ``EXPECTED_COUNTS`` only log a warning.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"unknown 300-W split {split!r}; known: {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(root, "300-W root folder not found")
    missing = [folder for folder in SPLITS[split] if not (root / folder).is_dir()]
    if missing:
        raise DataError(
            root / missing[0],
            f"300-W folder missing (split {split!r} needs {', '.join(SPLITS[split])})",
        )
    manifest_path = root / "manifest.csv"
    manifest = read_manifest(manifest_path) if manifest_path.is_file() else {}
    samples: list[FaceSample] = []
    skipped = 0
    for folder in SPLITS[split]:
        folder_samples, folder_skipped = _load_folder(root, folder, manifest, skip_invalid)
        samples.extend(folder_samples)
        skipped += folder_skipped
    if skipped:
        log.warning("300-W split %r: skipped %d invalid files, loaded %d faces", split, skipped, len(samples))
    return samples


def _subsets_300w(split: str, faces: list[FaceSample]) -> dict[str, list[FaceSample]]:
    """300-W ``full`` is reported as AOHR Table 3's rows: common, challenge, full."""
    if split != "full":
        return {split: faces}
    common = [s for s in faces if s.source != "300w/ibug"]
    challenge = [s for s in faces if s.source == "300w/ibug"]
    return {"common": common, "challenge": challenge, "full": common + challenge}


def load_shared_crops(root: str | Path, split: str = "all", skip_invalid: bool = False) -> list[FaceSample]:
    """The 300-W development crops (``../shared/data/300w``): ``"all"`` is every crop (the official training
    folders they come from); any ``load_300w`` split also works."""
    return load_300w(root, "train" if split == "all" else split, skip_invalid)


_300W_TERMS = "300-W (Sagonas et al.): research use only"
_300W_SUBJECT = "source photograph (faces of one photo share it)"
register_dataset(DatasetSpec(
    name="300w", kind="image", scheme="ibug68",
    description="300-W in its official layout: train 3,148 / common 554 / challenge 135 / full 689",
    read=load_300w, splits=tuple(SPLITS), default_split="full", normalisers=("ocular",), threshold=0.08,
    subsets=_subsets_300w, subject=_300W_SUBJECT, terms=_300W_TERMS,
))
register_dataset(DatasetSpec(
    name="shared300w", kind="image", scheme="ibug68",
    description="the 300-W development crops: val = 10 % of the source photographs held out (seed 0)",
    read=load_shared_crops, splits=("val", "train", "all"), default_split="val", normalisers=("ocular",),
    threshold=0.08, subject=_300W_SUBJECT, held_out=HeldOut(pool="all", val_fraction=0.1, seed=0),
    terms=_300W_TERMS,
))
