from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.data.w300vw import (
    ALL_VIDEOS,
    CATEGORIES,
    TRAIN_VIDEOS,
    VideoFrameSample,
    category_of,
    load_300vw,
    load_skip_frames,
)
from facetrack.errors import DataError
from facetrack.io.pts import write_pts
from facetrack.io.video import write_video


def _level(image: np.ndarray) -> int:
    return int(round(float(image.mean()) / 10.0))


def _points(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.uniform(5, 40, size=(68, 2)).round(3) + k


def _make_video(root: Path, vid: str, n: int, rng: np.random.Generator, layout: str = "avi") -> list[np.ndarray]:
    """Frame k (1-based) is a uniform image of level 10*k; annot/00000k.pts holds its points."""
    folder = root / vid
    (folder / "annot").mkdir(parents=True)
    frames = [np.full((48, 64, 3), 10 * k, np.uint8) for k in range(1, n + 1)]
    if layout == "avi":
        write_video(folder / "vid.avi", frames, fps=25, fourcc="MJPG")
    else:
        (folder / "imgs").mkdir()
        for k, frame in enumerate(frames, start=1):
            cv2.imwrite(str(folder / "imgs" / f"{k:06d}.png"), frame)
    truth = []
    for k in range(1, n + 1):
        pts = _points(rng, k)
        write_pts(folder / "annot" / f"{k:06d}.pts", pts)
        truth.append(pts)
    return truth


def test_category_lists() -> None:
    assert len(ALL_VIDEOS) == len(set(ALL_VIDEOS)) == 114
    sizes = {name: len(CATEGORIES[name]) for name in ("S1", "S2", "S3", "train")}
    assert sizes == {"S1": 31, "S2": 19, "S3": 14, "train": 50}
    union = set().union(*(CATEGORIES[n] for n in ("S1", "S2", "S3", "train")))
    assert union == set(ALL_VIDEOS)
    assert category_of(401) == "S1" and category_of("553") == "S2" and category_of("562") == "S3"
    assert category_of("1") == "train" and "001" in TRAIN_VIDEOS and category_of("999") == "unknown"


@pytest.mark.parametrize("layout", ["avi", "imgs"])
def test_loads_streams_and_reads_frames(tmp_path: Path, rng: np.random.Generator, layout: str) -> None:
    truth = _make_video(tmp_path, "114", 6, rng, layout)
    (seq,) = load_300vw(tmp_path, videos=[114])
    assert seq.video_id == "114" and seq.category == "S1" and len(seq) == 6
    assert seq.frame_numbers.tolist() == [1, 2, 3, 4, 5, 6]
    assert seq.landmarks.shape == (6, 68, 2)
    np.testing.assert_allclose(seq.landmarks, np.stack(truth), atol=1e-3)  # .pts is 1-based on disk
    streamed = [(k, _level(img)) for k, img in seq.frames()]
    assert streamed == [(k, k) for k in range(1, 7)]
    assert _level(seq.read_frame(4)) == 4 and _level(seq.read_frame(2)) == 2
    samples = seq.samples()
    assert len(samples) == 6 and samples[0].scheme == "ibug68" and samples[0].subject == "300vw/114"
    assert _level(samples[4].load_image()) == 5
    assert isinstance(samples[0], VideoFrameSample) == (layout == "avi")
    seq.close()


def test_skip_frames_from_dict_and_json(tmp_path: Path, rng: np.random.Generator) -> None:
    _make_video(tmp_path, "401", 5, rng)
    (seq,) = load_300vw(tmp_path, videos=["401"], skip_frames={401: [2, 4]})
    assert seq.frame_numbers.tolist() == [1, 3, 5] and seq.skipped_frames == (2, 4)
    assert [(k, _level(img)) for k, img in seq.frames()] == [(1, 1), (3, 3), (5, 5)]
    skip_json = tmp_path / "broken.json"
    skip_json.write_text(json.dumps({"401": [5]}))
    (seq,) = load_300vw(tmp_path, videos=["401"], skip_frames=skip_json)
    assert seq.frame_numbers.tolist() == [1, 2, 3, 4]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        load_skip_frames(bad)
    bad.write_text(json.dumps({"401": ["x"]}))
    with pytest.raises(DataError, match="bad.json.*401"):
        load_skip_frames(bad)


def test_missing_videos_warn_and_none_is_an_error(tmp_path: Path, rng: np.random.Generator) -> None:
    _make_video(tmp_path, "114", 2, rng)
    with pytest.warns(UserWarning, match=r"30 of 31 requested 300VW videos are missing: 124 125"):
        seqs = load_300vw(tmp_path, videos="S1")
    assert [s.video_id for s in seqs] == ["114"]
    with pytest.raises(DataError, match="none of the requested"):
        load_300vw(tmp_path, videos="S3")
    with pytest.raises(ValueError, match="S4"):
        load_300vw(tmp_path, videos="S4")


def test_release_folder_is_found(tmp_path: Path, rng: np.random.Generator) -> None:
    _make_video(tmp_path / "300VW_Dataset_2015_12_14", "002", 2, rng)
    assert [s.video_id for s in load_300vw(tmp_path, videos=["002"])] == ["002"]


def test_annotation_count_mismatch_names_the_video(tmp_path: Path, rng: np.random.Generator, caplog) -> None:
    _make_video(tmp_path, "505", 4, rng)
    _make_video(tmp_path, "506", 3, rng)
    write_pts(tmp_path / "505" / "annot" / "000005.pts", _points(rng, 5))
    with pytest.raises(DataError, match=r"505/vid.avi: video 505: 5 annotations but 4 frames"):
        load_300vw(tmp_path, videos=["505", "506"])
    with caplog.at_level(logging.WARNING, logger="facetrack.data.w300vw"):
        seqs = load_300vw(tmp_path, videos=["505", "506"], skip_invalid=True)
    assert [s.video_id for s in seqs] == ["506"]
    assert "skipped 1 invalid video" in caplog.text


def test_malformed_pts_raises_or_is_skipped(tmp_path: Path, rng: np.random.Generator, caplog) -> None:
    _make_video(tmp_path, "507", 3, rng, layout="imgs")
    bad = tmp_path / "507" / "annot" / "000002.pts"
    bad.write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(DataError, match="000002.pts"):
        load_300vw(tmp_path, videos=["507"])
    with caplog.at_level(logging.WARNING, logger="facetrack.data.w300vw"):
        (seq,) = load_300vw(tmp_path, videos=["507"], skip_invalid=True)
    assert seq.frame_numbers.tolist() == [1, 3]
    assert "skipped 1 invalid annotation" in caplog.text


def test_video_without_frames_or_annotations(tmp_path: Path) -> None:
    (tmp_path / "508" / "annot").mkdir(parents=True)
    (tmp_path / "508" / "annot" / "000001.pts").write_text("")
    with pytest.raises(DataError, match="508: neither imgs/ nor vid.avi"):
        load_300vw(tmp_path, videos=["508"])
    (tmp_path / "509").mkdir()
    with pytest.raises(DataError, match="509/annot"):
        load_300vw(tmp_path, videos=["509"])


def test_reads_the_shared_sample_frames(shared_data: Path) -> None:
    root = shared_data / "300vw_frames"
    seqs = {s.video_id: s for s in load_300vw(root, videos=["001", "401"])}
    assert seqs["001"].category == "train" and seqs["401"].category == "S1"
    assert seqs["001"].frame_numbers.tolist() == [6, 9]
    assert seqs["401"].frame_numbers.tolist() == [731, 732]
    for seq in seqs.values():
        for (number, image), pts in zip(seq.frames(), seq.landmarks):
            h, w = image.shape[:2]
            assert image.dtype == np.uint8 and image.ndim == 3
            assert (pts[:, 0] >= 0).all() and (pts[:, 0] < w).all()
            assert (pts[:, 1] >= 0).all() and (pts[:, 1] < h).all()
        # The jaw spans a good part of the face: landmarks are real, not a degenerate cloud.
        assert np.ptp(seq.landmarks[0][:17, 0]) > 20
    with pytest.warns(UserWarning, match="missing"):
        assert [s.video_id for s in load_300vw(root, videos="S1")] == ["401"]
