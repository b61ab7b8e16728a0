from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.data.w300 import (
    EXPECTED_COUNTS,
    SPLITS,
    load_300w,
    photo_subject,
    read_manifest,
)
from facetrack.errors import DataError
from facetrack.io.pts import write_pts

FOLDERS = ("afw", "helen/trainset", "helen/testset", "lfpw/trainset", "lfpw/testset", "ibug")
STEMS = {
    "afw": ["111076519_1", "111076519_2", "134212_1"],
    "helen/trainset": ["100032540_1", "100040721_1", "100040721_2"],
    "helen/testset": ["2968560214_1", "2968560214_2"],
    "lfpw/trainset": ["image_0001", "image_0002"],
    "lfpw/testset": ["image_0001", "image_0002"],
    "ibug": ["image_003_1", "image_003_2", "image_004_1"],
}


def write_face(folder: Path, stem: str, rng: np.random.Generator, ext: str = ".jpg") -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{stem}{ext}"), np.zeros((16, 16, 3), np.uint8))
    points = rng.uniform(2.0, 14.0, size=(68, 2)).round(3)
    write_pts(folder / f"{stem}.pts", points)
    return points


@pytest.fixture
def w300(tmp_path: Path, rng: np.random.Generator) -> Path:
    for folder in FOLDERS:
        ext = ".png" if folder.startswith("lfpw") else ".jpg"
        for stem in STEMS[folder]:
            write_face(tmp_path / folder, stem, rng, ext)
    return tmp_path


def test_expected_counts_are_the_official_split_sizes():
    assert sum(EXPECTED_COUNTS[f] for f in SPLITS["train"]) == 3148
    assert sum(EXPECTED_COUNTS[f] for f in SPLITS["common"]) == 554
    assert sum(EXPECTED_COUNTS[f] for f in SPLITS["challenge"]) == 135
    assert sum(EXPECTED_COUNTS[f] for f in SPLITS["full"]) == 689


@pytest.mark.parametrize("split", ["train", "common", "challenge", "full", *FOLDERS])
def test_splits_load_their_folders(w300, split):
    samples = load_300w(w300, split)
    expected = [(f, s) for f in SPLITS[split] for s in sorted(STEMS[f])]
    got = [(str(x.image_path.parent.relative_to(w300).as_posix()), x.image_path.stem) for x in samples]
    assert got == expected


def test_sample_fields(w300, rng):
    points = write_face(w300 / "ibug", "image_010_1", rng)
    (sample,) = [s for s in load_300w(w300, "challenge") if s.image_path.stem == "image_010_1"]
    assert sample.scheme == "ibug68" and sample.landmarks.shape == (68, 2)
    np.testing.assert_allclose(sample.landmarks, points, atol=1e-9)  # .pts is 1-based; we are 0-based
    np.testing.assert_allclose(sample.bbox, [*points.min(0), *points.max(0)])
    assert sample.image_path.suffix == ".jpg" and sample.load_image().shape == (16, 16, 3)
    assert sample.source == "300w/ibug"


def test_subject_groups_faces_of_one_photo(w300):
    by_stem = {(s.source, s.image_path.stem): s.subject for s in load_300w(w300, "train")}
    assert by_stem[("300w/afw", "111076519_1")] == by_stem[("300w/afw", "111076519_2")] == "afw/111076519"
    assert by_stem[("300w/afw", "134212_1")] == "afw/134212"
    assert by_stem[("300w/lfpw/trainset", "image_0001")] == "lfpw/trainset/image_0001"
    assert by_stem[("300w/lfpw/trainset", "image_0001")] != by_stem[("300w/lfpw/trainset", "image_0002")]
    ibug = {s.image_path.stem: s.subject for s in load_300w(w300, "challenge")}
    assert ibug["image_003_1"] == ibug["image_003_2"] == "ibug/image_003" != ibug["image_004_1"]
    # The same LFPW name in the train and test folders is a different photograph.
    assert photo_subject("lfpw/trainset", "image_0001") != photo_subject("lfpw/testset", "image_0001")


def test_partial_copy_warns_about_counts(w300, caplog):
    with caplog.at_level(logging.WARNING, logger="facetrack.data.w300"):
        load_300w(w300, "challenge")
    assert "official 300-W folder has 135" in caplog.text


def test_missing_folder_is_named(w300):
    for path in sorted((w300 / "ibug").iterdir()):
        path.unlink()
    (w300 / "ibug").rmdir()
    with pytest.raises(DataError, match="ibug"):
        load_300w(w300, "full")
    assert len(load_300w(w300, "common")) == 4  # splits without ibug still load


def test_empty_folder_and_missing_root_and_unknown_split(w300, tmp_path):
    for path in (w300 / "afw").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="afw"):
        load_300w(w300, "afw")
    with pytest.raises(DataError, match="not found"):
        load_300w(tmp_path / "nowhere", "full")
    with pytest.raises(ValueError, match="challenge"):
        load_300w(w300, "test")


def _break(pts_path: Path, body: str) -> None:
    pts_path.write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")


GOOD_LINE = "1.0 2.0"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_image", "no image"),
        ("missing_pts", "no .pts"),
        ("wrong_count", "n_points"),
        ("nan", "non-finite"),
        ("text", "not a number"),
        ("truncated", "closing"),
        ("duplicate_image", "share the stem"),
    ],
)
def test_malformed_files_raise_naming_the_file_or_are_skipped(w300, case, message, caplog):
    folder = w300 / "ibug"
    target = folder / "image_003_2.pts"
    bad_file = target
    if case == "missing_image":
        (folder / "image_003_2.jpg").unlink()
    elif case == "missing_pts":
        target.unlink()
        bad_file = folder / "image_003_2.jpg"
    elif case == "wrong_count":
        _break(target, "\n".join([GOOD_LINE] * 67))
    elif case == "nan":
        _break(target, "\n".join([GOOD_LINE] * 67 + ["nan 3.0"]))
    elif case == "text":
        _break(target, "\n".join([GOOD_LINE] * 67 + ["left eye"]))
    elif case == "truncated":
        target.write_text("version: 1\nn_points: 68\n{\n" + "\n".join([GOOD_LINE] * 10))
    elif case == "duplicate_image":
        cv2.imwrite(str(folder / "image_003_2.png"), np.zeros((4, 4, 3), np.uint8))
        bad_file = folder / "image_003_2.png"
    with pytest.raises(DataError, match=message) as info:
        load_300w(w300, "challenge")
    assert info.value.path == bad_file
    with caplog.at_level(logging.WARNING, logger="facetrack.data.w300"):
        samples = load_300w(w300, "challenge", skip_invalid=True)
    expected = 3 if case == "duplicate_image" else 2  # a duplicate image still pairs with its .pts
    assert len(samples) == expected
    assert "skipped 1 invalid" in caplog.text


def test_wrong_point_count_with_matching_header_is_rejected(w300):
    write_pts(w300 / "ibug" / "image_003_1.pts", np.ones((49, 2)))
    with pytest.raises(DataError, match="expected 68 points"):
        load_300w(w300, "ibug")


def test_manifest_reading_and_subject(w300, tmp_path):
    manifest = w300 / "manifest.csv"
    manifest.write_text(
        "afw/111076519_1,afw/111076519_1.pts,1.0,0.0,-5.0,0.0,1.0,-6.0\n"
        "afw/134212_1,afw/999_3.pts,2.0,0.0,0.0,0.0,2.0,0.0\n"
    )
    entries = read_manifest(manifest)
    assert entries["afw/111076519_1"].source == "afw/111076519_1.pts"
    np.testing.assert_allclose(entries["afw/111076519_1"].affine, [[1, 0, -5], [0, 1, -6]])
    subjects = {s.image_path.stem: s.subject for s in load_300w(w300, "afw")}
    assert subjects["134212_1"] == "afw/999"  # the manifest's source file decides the photograph
    assert subjects["111076519_2"] == "afw/111076519"  # not in the manifest: from its own name

    with_header = tmp_path / "h.csv"
    with_header.write_text("crop,source,a,b,c,d,e,f\nx/y,x/y.pts,1,0,0,0,1,0\n")
    assert list(read_manifest(with_header)) == ["x/y"]
    bad = tmp_path / "bad.csv"
    bad.write_text("x/y,x/y.pts,1,0,0,0,1,0\nx/z,x/z.pts,1,0,zero,0,1,0\n")
    with pytest.raises(DataError, match="bad.csv:2"):
        read_manifest(bad)
    bad.write_text("x/y,x/y.pts,1,0,0\n")
    with pytest.raises(DataError, match="bad.csv:1: expected 8 columns"):
        read_manifest(bad)
    bad.write_text("x/y,x/y.pts,1,0,0,0,1,0\nx/y,x/y.pts,1,0,0,0,1,0\n")
    with pytest.raises(DataError, match="twice"):
        read_manifest(bad)
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "none.csv")


def test_shared_crops_load(shared_data, caplog):
    root = shared_data / "300w"
    if not root.is_dir():
        pytest.skip("no 300w crops")
    with caplog.at_level(logging.WARNING, logger="facetrack.data.w300"):
        samples = load_300w(root, "train")
    assert len(samples) == 2012
    assert "official 300-W folder has 2000" in caplog.text  # helen/trainset is partial
    assert all(s.landmarks.shape == (68, 2) and np.isfinite(s.landmarks).all() for s in samples)
    manifest = read_manifest(root / "manifest.csv")
    assert len(manifest) == 2012
    # The crop's landmarks are the source landmarks mapped by the manifest affine, i.e. inside the 384 crop.
    assert all((s.bbox[:2] >= -1).all() and (s.bbox[2:] <= 385).all() for s in samples)
    subjects = {s.subject for s in samples}
    assert len(subjects) < len(samples)  # several faces per photograph in AFW/HELEN
    assert {s.subject.split("/")[0] for s in samples} == {"afw", "helen", "lfpw"}
