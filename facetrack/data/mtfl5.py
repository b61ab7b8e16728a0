"""mtfl5: 10,645 MTFL faces (Zhang et al. 2014), 5 points (scheme ``mtfl5``), 80x80 images as the source gives
them (``../shared/data/mtfl5``).

Layout under ``root``: ``lfw_5590/`` (4,151) and ``net_7876/`` (3,499) -- MTFL's training set -- and ``AFLW/``
(2,995) -- its test set -- each image with its ``.pts`` (1-based on disk); ``split.csv`` (crop, train|test)
follows the source lists; ``dropped.csv``: the 2,350 ``net_7876/_*`` images whose points sit ~28 px too high.
The ``AFLW/`` labels carry a constant shift of about (+1.4, +1.2) px against other detectors' points (possibly
a 1-based origin), left as given: compare test numbers with that in mind.

No face box ships (the images are already face crops): ``bbox`` is None. Subject: the LFW identity for
``lfw_5590`` (``Aaron_Eckhart_0001`` -> ``lfw/Aaron_Eckhart``), the source photograph for ``net_7876``
(``1002_0_0`` -> ``net/1002``) and for ``AFLW`` (``0001-image20056`` -> ``aflw/image20056``; several faces of
one AFLW photo share it). The test set comes from other photographs than the training set; the catalogue's
``train``/``val`` hold out 10 % of the training subjects (seed 0) and ``test`` is MTFL's test set.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from facetrack.data.catalog import DatasetSpec, HeldOut, register_dataset
from facetrack.data.crops import crops_root, load_crops, read_csv_rows
from facetrack.data.sample import FaceSample
from facetrack.errors import DataError

NUM_POINTS = 5
FOLDERS = ("lfw_5590", "net_7876", "AFLW")
SOURCE_SPLITS = ("train", "test")
SPLITS = (*SOURCE_SPLITS, "all", *FOLDERS)


def subject_of(crop: str) -> str:
    """The subject of a crop name: LFW identity, or source photograph (net_7876, AFLW)."""
    folder, stem = crop.split("/", 1)
    if folder == "lfw_5590":
        person, _, number = stem.rpartition("_")
        return f"lfw/{person if number.isdigit() and person else stem}"
    if folder == "net_7876":
        return f"net/{stem.split('_', 1)[0]}"
    if folder == "AFLW":
        return f"aflw/{stem.split('-', 1)[-1]}"
    return f"{folder}/{PurePosixPath(stem).name}"


def load_mtfl5(root: str | Path, split: str = "test", skip_invalid: bool = False) -> list[FaceSample]:
    """The faces of ``split``: MTFL's ``"train"`` or ``"test"`` (``split.csv``), ``"all"`` (both), or one
    folder (``"lfw_5590"``, ``"net_7876"``, ``"AFLW"``), in ``split.csv`` order."""
    root = crops_root(root, split, SPLITS, "mtfl5")
    rows = read_csv_rows(root / "split.csv", ("crop", "split"))
    bad = next((i for i, r in enumerate(rows) if r["split"] not in SOURCE_SPLITS), None)
    if bad is not None:
        raise DataError(root / "split.csv", f"split must be train or test, got {rows[bad]['split']!r}", bad + 2)
    if split in SOURCE_SPLITS:
        names = [r["crop"] for r in rows if r["split"] == split]
    elif split in FOLDERS:
        names = [r["crop"] for r in rows if r["crop"].split("/", 1)[0] == split]
    else:
        names = [r["crop"] for r in rows]
    return load_crops(root, names, "mtfl5", NUM_POINTS, subject=subject_of,
                      source=lambda c: f"mtfl5/{c.split('/', 1)[0]}", skip_invalid=skip_invalid, dataset="mtfl5")


SPEC = register_dataset(DatasetSpec(
    name="mtfl5", kind="image", scheme="mtfl5",
    description="MTFL: 5 points on 80x80 faces; train = LFW + web faces, test = AFLW",
    read=load_mtfl5, splits=("val", *SPLITS), default_split="test",
    normalisers=("pupil",), threshold=0.10,
    subject="LFW identity (lfw_5590) or source photograph (net_7876, AFLW)",
    held_out=HeldOut(pool="train"),
    terms="MTFL (Zhang et al. 2014): research use; images from LFW, the web and AFLW (research only)",
))
