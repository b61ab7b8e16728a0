"""WFLW (98 points) from its official annotation lists.

Layout (as distributed)::

    <root>/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
    <root>/WFLW_images/<event folder>/<image>.jpg

Each line holds 207 space-separated fields: 196 coordinates ``x0 y0 ... x97 y97``, the face rectangle
``x_min y_min x_max y_max``, six 0/1 attribute flags (pose, expression, illumination, make-up, occlusion,
blur) and the image path relative to ``WFLW_images/``. Expected: 7,500 train and 2,500 test faces; the
test subsets hold 326 large-pose, 314 expression, 698 illumination, 206 make-up, 736 occlusion and 773
blur faces.

Coordinates are used as stored (0-based pixels, like PIPNet, HRNet and STAR read them). WFLW has several
faces per image, so ``subject`` is the image path: a split by subject keeps a photograph on one side.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from facetrack.data.catalog import DatasetSpec, register_dataset
from facetrack.data.sample import FaceSample
from facetrack.data.skipping import Skips
from facetrack.errors import DataError

logger = logging.getLogger(__name__)

NUM_POINTS = 98
ATTRIBUTES = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
_N_FIELDS = 2 * NUM_POINTS + 4 + len(ATTRIBUTES) + 1
SPLITS = ("train", "test")


def wflw_list_path(root: str | Path, split: str) -> Path:
    """Where the official list for ``split`` lives under ``root``."""
    return (Path(root) / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
            / f"list_98pt_rect_attr_{split}.txt")


def load_wflw(root: str | Path, split: str = "test", subset: str | None = None,
              skip_invalid: bool = False) -> list[FaceSample]:
    """Read WFLW ``split`` ("train" or "test"), optionally only the faces flagged with ``subset``.

    ``subset`` is one of ATTRIBUTES ("largepose", "expression", ...) or None/"all". Malformed lines raise
    DataError naming the file and line; with ``skip_invalid`` they are logged and counted instead.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown WFLW split {split!r}; expected one of {SPLITS}")
    if subset == "all":
        subset = None
    if subset is not None and subset not in ATTRIBUTES:
        raise ValueError(f"unknown WFLW subset {subset!r}; expected one of {ATTRIBUTES} or 'all'")
    root = Path(root)
    path = wflw_list_path(root, split)
    if not path.is_file():
        raise DataError(path, "WFLW annotation list not found (expected the official WFLW_annotations layout)")
    image_root = root / "WFLW_images"
    samples: list[FaceSample] = []
    skip = Skips(skip_invalid, logger, "WFLW line", "line(s)")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                sample = _parse_line(line, path, number, image_root)
            except DataError as exc:
                skip(exc)
                continue
            if subset is None or sample.attributes[subset]:
                samples.append(sample)
    skip.report(path)
    return samples


def _parse_line(line: str, path: Path, number: int, image_root: Path) -> FaceSample:
    fields = line.split()
    if len(fields) != _N_FIELDS:
        raise DataError(path, f"expected {_N_FIELDS} fields (196 coordinates, 4 box, 6 flags, image), "
                              f"found {len(fields)}", number)
    try:
        values = [float(v) for v in fields[: 2 * NUM_POINTS + 4]]
        flags = [int(v) for v in fields[2 * NUM_POINTS + 4: -1]]
    except ValueError as exc:
        raise DataError(path, f"not a number ({exc})", number) from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(path, "non-finite coordinate", number)
    if any(f not in (0, 1) for f in flags):
        raise DataError(path, f"attribute flags must be 0 or 1, got {flags}", number)
    landmarks = np.asarray(values[: 2 * NUM_POINTS], dtype=np.float64).reshape(NUM_POINTS, 2)
    bbox = np.asarray(values[2 * NUM_POINTS:], dtype=np.float64)
    if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
        raise DataError(path, f"face rectangle {bbox.tolist()} has x_max < x_min or y_max < y_min", number)
    relative = fields[-1]
    return FaceSample(
        image_path=image_root / relative,
        landmarks=landmarks,
        scheme="wflw98",
        bbox=bbox,
        attributes=dict(zip(ATTRIBUTES, flags)),
        subject=relative,
        source="wflw",
    )


def _subsets_wflw(split: str, faces: list[FaceSample]) -> dict[str, list[FaceSample]]:
    """WFLW is reported as ``full`` then, on the test set, its six attribute subsets, as papers list them."""
    subsets: dict[str, list[FaceSample]] = {"full": faces}
    if split == "test":
        for name in ATTRIBUTES:
            subsets[name] = [s for s in faces if s.attributes.get(name)]
    return subsets


register_dataset(DatasetSpec(
    name="wflw", kind="image", scheme="wflw98",
    description="WFLW (98 points): 7,500 train / 2,500 test with six attribute subsets",
    read=load_wflw, splits=SPLITS, default_split="test", normalisers=("ocular",), threshold=0.10,
    subsets=_subsets_wflw, subject="none (each face its own)", terms="WFLW (Wu et al.): research use only",
))
