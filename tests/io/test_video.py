from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.errors import DataError
from facetrack.io.video import (
    CameraSource,
    ImageFolderSource,
    VideoFileSource,
    open_source,
    write_video,
)

N_FRAMES = 30


def _frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame i: a uniform gray level that identifies it even after lossy coding."""
    return np.full((h, w, 3), (i * 8) % 256, np.uint8)


def _level(frame: np.ndarray) -> int:
    return int(round(float(frame.mean()) / 8.0))


@pytest.fixture
def mp4(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    assert write_video(path, (_frame(i) for i in range(N_FRAMES)), fps=25.0) == N_FRAMES
    return path


@pytest.fixture
def avi(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    write_video(path, (_frame(i) for i in range(N_FRAMES)), fps=20.0, fourcc="MJPG")
    return path


def test_iterates_all_frames_with_times(mp4: Path) -> None:
    with open_source(mp4) as src:
        assert isinstance(src, VideoFileSource)
        assert src.frame_count == N_FRAMES and len(src) == N_FRAMES
        assert src.size == (64, 48)
        assert src.fps == pytest.approx(25.0)
        seen = list(src)
    assert [i for i, _, _ in seen] == list(range(N_FRAMES))
    assert [t for _, t, _ in seen] == pytest.approx([i / 25.0 for i in range(N_FRAMES)])
    assert [_level(f) for _, _, f in seen] == list(range(N_FRAMES))
    assert all(f.dtype == np.uint8 and f.shape == (48, 64, 3) for _, _, f in seen)
    assert not src.truncated and src.frames_read == N_FRAMES


def test_iteration_restarts_and_ignores_random_access(mp4: Path) -> None:
    with open_source(mp4) as src:
        src.read(17)
        first = [_level(f) for _, _, f in src]
        second = [_level(f) for _, _, f in src]
    assert first == second == list(range(N_FRAMES))


def test_random_access_matches_sequential_decode(mp4: Path) -> None:
    with open_source(mp4) as src:
        sequential = {i: f for i, _, f in src}
        for i in [29, 3, 3, 4, 0, 15, 28, 1]:
            np.testing.assert_array_equal(src.read(i), sequential[i])
        assert src._seek_reliable  # a constant-rate file keeps its fast seeks
        with pytest.raises(IndexError):
            src.read(N_FRAMES)
        with pytest.raises(IndexError):
            src.read(-1)


class _LyingCapture:
    """Delegates to a real capture but misreports one property, as broken containers do."""

    def __init__(self, cap: cv2.VideoCapture, prop: int, error: float) -> None:
        self._cap, self._prop, self._error = cap, prop, error

    def get(self, prop: int) -> float:
        value = self._cap.get(prop)
        return value + self._error if prop == self._prop else value

    def __getattr__(self, name: str):
        return getattr(self._cap, name)


@pytest.mark.parametrize("prop,error", [(cv2.CAP_PROP_POS_FRAMES, 5.0), (cv2.CAP_PROP_POS_MSEC, 120.0)],
                         ids=["position", "timestamp"])
def test_unverified_seek_falls_back_to_sequential_reads(mp4: Path, prop: int, error: float) -> None:
    with open_source(mp4) as src:
        sequential = {i: f for i, _, f in src}
        np.testing.assert_array_equal(src.read(25), sequential[25])  # forward: no seek needed
        src._cap = _LyingCapture(src._cap, prop, error)
        np.testing.assert_array_equal(src.read(3), sequential[3])  # backward: seek, caught lying
        assert src._seek_reliable is False
        for i in [7, 29, 2]:  # backwards and forwards without seeking
            np.testing.assert_array_equal(src.read(i), sequential[i])


def test_truncated_video_yields_what_it_has_and_warns(avi: Path, tmp_path: Path) -> None:
    data = avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    src = open_source(cut)
    assert src.frame_count == N_FRAMES  # the header still announces the full length
    levels = []
    with pytest.warns(RuntimeWarning, match=r"stopped at frame \d+ of 30"):
        for _, _, frame in src:
            levels.append(_level(frame))
    assert 0 < len(levels) < N_FRAMES
    assert levels == list(range(len(levels)))
    assert src.truncated and src.frames_read == len(levels)
    with pytest.raises(DataError, match="cut.avi"):
        src.read(N_FRAMES - 1)
    src.close()


def test_truncated_mp4_without_index_is_a_data_error(mp4: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(mp4.read_bytes()[:2000])
    with pytest.raises(DataError, match="cut.mp4"):
        open_source(cut)


def test_missing_empty_and_zero_frame_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        open_source(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.mp4"):
        open_source(empty)
    zero = tmp_path / "zero.avi"
    cv2.VideoWriter(str(zero), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48)).release()
    assert zero.stat().st_size > 0
    with pytest.raises(DataError, match="zero.avi.*no decodable frames"):
        open_source(zero)


def test_folder_natural_order_gray_and_16bit(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in [1, 2, 10, 11]:  # lexical order would put 10 and 11 before 2
        if i % 2:
            cv2.imwrite(str(folder / f"f{i}.png"), np.full((20, 30), i * 8, np.uint8))
        else:
            cv2.imwrite(str(folder / f"f{i}.png"), np.full((20, 30), i * 8 * 256, np.uint16))
    (folder / "notes.txt").write_text("not a frame")
    with open_source(folder, fps=10.0) as src:
        assert isinstance(src, ImageFolderSource)
        assert src.frame_count == 4 and src.size == (30, 20)
        seen = list(src)
        assert [p.name for p in src.files] == ["f1.png", "f2.png", "f10.png", "f11.png"]
        assert [_level(f) for _, _, f in seen] == [1, 2, 10, 11]
        assert [t for _, t, _ in seen] == pytest.approx([0.0, 0.1, 0.2, 0.3])
        assert all(f.shape == (20, 30, 3) and f.dtype == np.uint8 for _, _, f in seen)
        assert _level(src.read(2)) == 10


def test_folder_with_corrupt_frame_skips_it_with_a_warning(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), _frame(i))
    (tmp_path / "001.jpg").write_bytes(b"garbage")
    src = open_source(tmp_path)
    with pytest.warns(RuntimeWarning, match="001.jpg"):
        indices = [i for i, _, _ in src]
    assert indices == [0, 2] and src.bad_frames == [1]


def test_empty_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no image frames"):
        open_source(tmp_path)


def test_missing_camera_is_a_data_error() -> None:
    with pytest.raises(DataError, match="camera 97"):
        open_source(97)
    with pytest.raises(DataError, match="camera 97"):
        CameraSource(97)


def test_write_video_rejects_mixed_sizes_and_no_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frame 1"):
        write_video(tmp_path / "a.mp4", [_frame(0), _frame(1, h=32)], fps=25)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "b.mp4", [], fps=25)


def test_write_video_normalises_gray_frames(tmp_path: Path) -> None:
    path = tmp_path / "gray.avi"
    write_video(path, [np.full((16, 16), 80, np.uint8)] * 3, fps=5, fourcc="MJPG")
    with open_source(path) as src:
        frames = [f for _, _, f in src]
    assert len(frames) == 3 and frames[0].shape == (16, 16, 3)
    assert abs(float(frames[0].mean()) - 80) < 3


def test_explicit_fps_sets_times(avi: Path) -> None:
    with open_source(avi, fps=10.0) as src:
        assert [t for _, t, _ in src][:3] == pytest.approx([0.0, 0.1, 0.2])


def test_reads_a_real_clip(shared_data: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_source(shared_data / "videos" / "single_face.mp4") as src:
            assert src.size == (640, 360)
            n = sum(1 for _ in src)
            assert n == src.frame_count == 72
            assert src.read(71).shape == (360, 640, 3)


def test_variable_frame_rate_clip_reads_exact_frames(shared_data: Path) -> None:
    """face_noface.mov is variable-rate: a frame-number seek lands several frames off, and must be caught."""
    with open_source(shared_data / "videos" / "face_noface.mov") as src:
        wanted = (150, 5, 120)
        times, kept = [], {}
        for i, t, f in src:
            times.append(t)
            if i in wanted:
                kept[i] = f
        assert len(times) == 169 and not src.truncated
        assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))
        for i in wanted:
            np.testing.assert_array_equal(src.read(i), kept[i])
        assert not src._seek_reliable


def test_estimated_frame_count_is_corrected_not_truncation(shared_data: Path) -> None:
    """no_face.mp4 announces 98 frames and decodes 95: a header estimate, not a damaged file."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_source(shared_data / "videos" / "no_face.mp4") as src:
            announced = src.frame_count
            n = sum(1 for _ in src)
    assert n <= announced and n == src.frame_count and not src.truncated
