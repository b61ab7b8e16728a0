"""overlay.mp4: H.264 through imageio-ffmpeg when installed, mp4v otherwise; the codec is said (facetrack/io/video.py)."""
from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from facetrack.io.video import OverlayWriter, h264_available


def frames(n=6, size=(63, 47)):  # odd sides: H.264's yuv420p needs even ones
    return [np.full((size[1], size[0], 3), 20 * i, np.uint8) for i in range(n)]


def stream_codec(path):
    import imageio_ffmpeg

    info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True, timeout=60).stderr
    return next(line for line in info.splitlines() if "Video:" in line)


@pytest.mark.parametrize("prefer_h264", [True, False])
def test_overlay_plays_back_with_the_codec_it_reports(tmp_path, prefer_h264):
    path = tmp_path / "overlay.mp4"
    writer = OverlayWriter(path, 25.0, prefer_h264=prefer_h264)
    for frame in frames():
        writer.write(frame)
    writer.write(np.zeros((10, 10, 3), np.uint8))  # another size is resized to the first frame's
    writer.close()
    assert writer.codec == ("h264" if prefer_h264 and h264_available() else "mp4v")
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 7
    if h264_available():
        assert ("h264" if writer.codec == "h264" else "mpeg4") in stream_codec(path)


def test_without_imageio_ffmpeg_falls_back_to_mp4v(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert not h264_available()
    writer = OverlayWriter(tmp_path / "o.mp4", 30.0)
    writer.write(frames(1)[0])
    writer.close()
    assert writer.codec == "mp4v" and (tmp_path / "o.mp4").stat().st_size > 0
