from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.data.talking_face import TF68_TO_COMMON7, load_talking_face
from facetrack.errors import DataError
from facetrack.io.pts import write_pts


def make_tf(root: Path, numbers, rng: np.random.Generator, split_folders: bool = False) -> dict[int, np.ndarray]:
    image_dir = root / "franck_images" if split_folders else root
    pts_dir = root / "points" if split_folders else root
    image_dir.mkdir(parents=True, exist_ok=True)
    pts_dir.mkdir(parents=True, exist_ok=True)
    truth = {}
    for n in numbers:
        cv2.imwrite(str(image_dir / f"franck_{n:05d}.jpg"), np.zeros((8, 8, 3), np.uint8))
        truth[n] = rng.uniform(0, 100, size=(68, 2)).round(3)
        write_pts(pts_dir / f"franck_{n:05d}.pts", truth[n])
    return truth


@pytest.mark.parametrize("split_folders", [False, True])
def test_frames_sorted_by_number(tmp_path, rng, split_folders):
    # Written out of order, and with the images and points in separate folders as the archives unpack.
    truth = make_tf(tmp_path, [2, 0, 10, 1], rng, split_folders)
    video = load_talking_face(tmp_path)
    assert len(video) == 4
    assert video.frame_numbers.tolist() == [0, 1, 2, 10]
    assert [p.name for p in video.frame_paths] == [f"franck_{n:05d}.jpg" for n in (0, 1, 2, 10)]
    assert video.landmarks.shape == (4, 68, 2)
    for t, n in enumerate([0, 1, 2, 10]):
        np.testing.assert_allclose(video.landmarks[t], truth[n])


def test_numeric_not_lexicographic_order(tmp_path, rng):
    make_tf(tmp_path, [9], rng)
    cv2.imwrite(str(tmp_path / "franck_10.jpg"), np.zeros((8, 8, 3), np.uint8))
    write_pts(tmp_path / "franck_10.pts", np.ones((68, 2)))
    video = load_talking_face(tmp_path)
    assert video.frame_numbers.tolist() == [9, 10]


def test_common7_uses_the_given_table(tmp_path, rng):
    truth = make_tf(tmp_path, [0, 1], rng)
    video = load_talking_face(tmp_path)
    assert video.common7_indices == TF68_TO_COMMON7
    np.testing.assert_allclose(video.common7()[1], truth[1][list(TF68_TO_COMMON7)])
    custom = (0, 1, 2, 3, 4, 5, 6)
    video = load_talking_face(tmp_path, common7_indices=custom)
    np.testing.assert_allclose(video.common7(), np.stack([truth[0][:7], truth[1][:7]]))
    with pytest.raises(ValueError):
        load_talking_face(tmp_path, common7_indices=(0, 1, 2))
    with pytest.raises(ValueError):
        load_talking_face(tmp_path, common7_indices=(0, 1, 2, 3, 4, 5, 68))


def test_default_common7_table_is_plausible():
    """Distinct points, eye corners before nose before mouth, matching the XM2VTS-style TF layout."""
    assert len(set(TF68_TO_COMMON7)) == 7
    assert all(27 <= i <= 36 for i in TF68_TO_COMMON7[:4])
    assert TF68_TO_COMMON7[5:] == (48, 54)


def test_partial_video_warns(tmp_path, rng, caplog):
    make_tf(tmp_path, [0, 1, 3], rng)
    with caplog.at_level(logging.WARNING, logger="facetrack.data.talking_face"):
        video = load_talking_face(tmp_path)
    assert len(video) == 3
    assert "5000 consecutive frames" in caplog.text


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_image", "no frame image"),
        ("missing_pts", "no .pts"),
        ("wrong_count", "expected 68 points"),
        ("nan", "non-finite"),
        ("text", "not a number"),
        ("bad_name", "frame number"),
    ],
)
def test_malformed_frames(tmp_path, rng, case, message):
    make_tf(tmp_path, [0, 1, 2], rng)
    bad = tmp_path / "franck_00001.pts"
    if case == "missing_image":
        (tmp_path / "franck_00001.jpg").unlink()
    elif case == "missing_pts":
        bad.unlink()
        bad = tmp_path / "franck_00001.jpg"
    elif case == "wrong_count":
        write_pts(bad, np.ones((66, 2)))
    elif case == "nan":
        bad.write_text("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "nan 2\n}\n")
    elif case == "text":
        bad.write_text("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "x y\n}\n")
    elif case == "bad_name":
        bad.rename(tmp_path / "franck.pts")
        (tmp_path / "franck_00001.jpg").rename(tmp_path / "franck.jpg")
        bad = tmp_path / "franck.pts"
    with pytest.raises(DataError, match=message) as info:
        load_talking_face(tmp_path)
    assert info.value.path == bad
    video = load_talking_face(tmp_path, skip_invalid=True)
    assert video.frame_numbers.tolist() == [0, 2]


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_talking_face(tmp_path / "absent")
    with pytest.raises(DataError, match="no .pts"):
        load_talking_face(tmp_path)


def test_duplicate_frame_names(tmp_path, rng):
    make_tf(tmp_path, [0, 1], rng)
    (tmp_path / "copy").mkdir()
    cv2.imwrite(str(tmp_path / "copy" / "franck_00001.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="duplicate frame"):
        load_talking_face(tmp_path)
