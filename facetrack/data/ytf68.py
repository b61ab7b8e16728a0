"""ytf68: 4,226 YouTube-Faces frames of 347 people, 68 iBUG points (``../shared/data/ytf68``).

Layout under ``root``: ``train/`` (3,456) and ``test/`` (770), 256x256 crops with their ``.pts`` (1-based on
disk); ``manifest.csv`` (crop, source, 2x3 affine, then ``clip`` = ``Name_X`` and ``split``); ``dropped.csv``
(6 faces with points outside the frame). The 3 frames of a clip are far apart, not consecutive. The keypoints
are probably automatic (pseudo ground truth) and differ systematically from 300-W's: measure before mixing.

The source's ``train``/``test`` folders hold the same 347 people, so they are **not** a held-out split; the
reader offers them as ``source_train``/``source_test``. Subject = the person (``Luis_Fonsi_2`` -> ``Luis_Fonsi``):
the catalogue's ``train``/``val`` pool both folders and hold out 10 % of the people (seed 0), so no person,
and so no clip, is on both sides. ``bbox`` is the landmark extent, as for 300-W.
"""
from __future__ import annotations

from pathlib import Path

from facetrack.data.catalog import DatasetSpec, HeldOut, register_dataset
from facetrack.data.crops import crops_root, load_crops
from facetrack.data.sample import FaceSample
from facetrack.data.w300 import read_manifest
from facetrack.errors import DataError
from facetrack.geometry import box_from_points

NUM_POINTS = 68
SPLITS = ("all", "source_train", "source_test")


def person_of(clip: str) -> str:
    """The person of a clip name ``Name_X`` (X = the clip's digit)."""
    person, _, number = clip.rpartition("_")
    return person if number.isdigit() and person else clip


def load_ytf68(root: str | Path, split: str = "all", skip_invalid: bool = False) -> list[FaceSample]:
    """The faces of ``split``: ``"all"``, ``"source_train"`` or ``"source_test"`` (the source's folders, which
    share people), in manifest order. Each face's ``attributes`` hold ``frame`` (0-2 within its clip)."""
    root = crops_root(root, split, SPLITS, "ytf68")
    manifest = read_manifest(root / "manifest.csv")
    missing = next((c for c, e in manifest.items() if not {"clip", "split"} <= set(e.extra)), None)
    if missing is not None:
        raise DataError(root / "manifest.csv", f"crop {missing!r}: the manifest needs clip and split columns")
    wanted = {"all": ("train", "test"), "source_train": ("train",), "source_test": ("test",)}[split]
    names = [c for c, e in manifest.items() if e.extra["split"] in wanted]
    samples = load_crops(root, names, "ibug68", NUM_POINTS, subject=lambda c: f"ytf/{person_of(manifest[c].extra['clip'])}",
                         source=lambda c: f"ytf68/{manifest[c].extra['split']}", bbox=box_from_points,
                         skip_invalid=skip_invalid, dataset="ytf68")
    for sample in samples:
        stem = sample.image_path.stem
        clip = manifest[f"{sample.source.split('/')[1]}/{stem}"].extra["clip"]
        frame = stem[len(clip):]
        sample.attributes = {"frame": int(frame)} if frame.isdigit() else {}
    return samples


SPEC = register_dataset(DatasetSpec(
    name="ytf68", kind="image", scheme="ibug68",
    description="YouTube Faces frames with 68 (probably automatic) points; held-out 10 % of the people",
    read=load_ytf68, splits=("train", "val", *SPLITS), default_split="val",
    normalisers=("ocular",), threshold=0.08,
    subject="person (YouTube Faces identity, from the clip name)",
    held_out=HeldOut(pool="all"),
    terms="YouTube Faces (Wolf et al. 2011) terms for the images; annotations from udacity/CVND_Exercises (MIT)",
))
