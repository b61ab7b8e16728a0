"""``facetrack track``: output schemas, formats, batches, resume, failures, interruption."""
from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest

import facetrack.api as api
from facetrack.cli import main
from facetrack.io.pts import read_pts
from facetrack.io.results import landmarks_csv_header, read_landmarks_csv
from facetrack.io.video import write_video

SIZE = (320, 200)
SUMMARY_KEYS = {"frames_read", "frames_with_face", "tracks", "model", "detector", "timings_ms", "fps", "completed",
                "reason", "source", "truncated"}


@pytest.fixture
def patched(fakes, monkeypatch):
    """The CLI builds its Tracker by name: route names to the test doubles."""
    detectors = []

    def detector(name=None):
        if name == "explode":
            class Explodes(fakes.BlobDetector):
                def detect(self, frame):
                    if self.calls >= 1:
                        raise KeyboardInterrupt
                    return super().detect(frame)
            return Explodes()
        detectors.append(fakes.BlobDetector())
        return detectors[-1]

    monkeypatch.setattr(api, "resolve_engine", lambda *args, **kwargs: fakes.blob_engine())
    monkeypatch.setattr(api, "resolve_detector", detector)
    return detectors


def video(fakes, path, n=12, paths=None):
    paths = paths if paths is not None else [lambda t: (80 + 4 * t, 100)]
    write_video(path, fakes.moving_video(n, SIZE, paths), fps=30, fourcc="MJPG")
    return path


def test_outputs_and_schemas(fakes, patched, tmp_path, capsys):
    src = video(fakes, tmp_path / "clip.avi")
    out = tmp_path / "out"
    rc = main(["track", str(src), "--out", str(out), "--format", "csv,jsonl,npz,pts", "--render", "--no-progress",
               "--validator", "none"])
    assert rc == 0
    header = (out / "landmarks.csv").read_text().splitlines()[0].split(",")
    assert header == landmarks_csv_header(68)
    assert header[:8] == ["frame", "time_s", "track_id", "box_x0", "box_y0", "box_x1", "box_y1", "score"]
    table = read_landmarks_csv(out / "landmarks.csv", 68)
    assert list(table.frame) == list(range(12)) and set(table.track_id) == {0}
    np.testing.assert_allclose(table.boxes[5], fakes.blob_box(100, 100, 30), atol=2.5)
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["completed"] is True and summary["reason"] is None
    assert (summary["frames_read"], summary["frames_with_face"], summary["tracks"]) == (12, 12, 1)
    assert set(summary["timings_ms"]) == {"decode", "detection", "landmarks", "total"}
    assert summary["fps"] > 0 and summary["detector"] == "blob-detector"
    lines = [json.loads(x) for x in (out / "landmarks.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and set(lines[0]) == {"frame", "time_s", "faces"}
    assert set(lines[0]["faces"][0]) == {"track_id", "box", "score", "landmarks", "confidences", "pose"}
    npz = np.load(out / "landmarks.npz")
    np.testing.assert_allclose(npz["landmarks"], table.landmarks)
    assert sorted(p.name for p in (out / "annot").iterdir())[:2] == ["000001.pts", "000002.pts"]
    np.testing.assert_allclose(read_pts(out / "annot" / "000006.pts"), table.landmarks[5], atol=1e-3)
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()
    assert "12 frames, 12 with a face" in capsys.readouterr().out


def test_batch_folder_resume_and_failures(fakes, patched, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    video(fakes, folder / "a.avi")
    video(fakes, folder / "b.avi", paths=[])  # no face at all
    (folder / "c.mp4").write_bytes(b"garbage" * 50)  # unreadable
    out = tmp_path / "out"
    args = ["track", str(folder), "--out", str(out), "--no-progress", "--validator", "none"]
    assert main(args) == 1  # c failed, the others went on
    err = capsys.readouterr().err
    assert "FAILED" in err and "c.mp4" in err
    a, b, c = (json.loads((out / n / "summary.json").read_text()) for n in "abc")
    assert a["completed"] and a["frames_with_face"] == 12
    assert b["completed"] and b["frames_with_face"] == 0 and b["note"] == "no face found in any frame"
    assert (out / "b" / "landmarks.csv").read_text().count("\n") == 1  # header only
    assert c["completed"] is False and "cannot open" in c["reason"]
    before = (out / "a" / "landmarks.csv").stat().st_mtime_ns
    patched.clear()
    assert main(args) == 1
    assert "skip" in capsys.readouterr().out
    assert (out / "a" / "landmarks.csv").stat().st_mtime_ns == before
    assert len(patched) == 1  # one Tracker; a and b were skipped without running the detector
    assert patched[0].calls == 0
    assert main(args + ["--force"]) == 1 and patched[-1].calls > 0


def test_several_sources_get_unique_folders_and_missing_file_fails(fakes, patched, tmp_path):
    one, two = tmp_path / "x" / "clip.avi", tmp_path / "y" / "clip.avi"
    one.parent.mkdir()
    two.parent.mkdir()
    video(fakes, one, n=3)
    video(fakes, two, n=3)
    out = tmp_path / "out"
    rc = main(["track", str(one), str(two), str(tmp_path / "missing.mp4"), "--out", str(out), "--no-progress",
               "--validator", "none"])
    assert rc == 1
    assert (out / "clip" / "landmarks.csv").exists() and (out / "clip_2" / "landmarks.csv").exists()
    assert "not found" in json.loads((out / "missing" / "summary.json").read_text())["reason"]


def test_ctrl_c_keeps_rows_and_says_stopped_early(fakes, patched, tmp_path):
    # The detector runs on frame 0, then (with --detect-every 1 and room for a second face) raises Ctrl-C.
    src = video(fakes, tmp_path / "clip.avi")
    out = tmp_path / "out"
    rc = main(["track", str(src), "--out", str(out), "--detector", "explode", "--detect-every", "1",
               "--max-faces", "2", "--no-progress", "--validator", "none"])
    assert rc == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] is False and "interrupted" in summary["reason"]
    assert summary["frames_read"] == 1
    assert list(read_landmarks_csv(out / "landmarks.csv").frame) == [0]
    # an interrupted video is not complete: the next run does it again
    from facetrack.tracking.session import is_complete

    assert not is_complete(out)


def test_truncated_video_completes_with_a_note(fakes, patched, tmp_path):
    src = video(fakes, tmp_path / "cut.avi", n=30)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["track", str(src), "--out", str(out), "--no-progress", "--validator", "none"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truncated"] is True and "truncated" in summary["reason"]
    assert 0 < summary["frames_read"] < 30


def test_smooth_choice_reaches_the_tracker(fakes, patched, tmp_path, monkeypatch):
    seen = []
    real = api.Tracker.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("smoothing"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(api.Tracker, "__init__", spy)
    src = video(fakes, tmp_path / "a.avi", n=4)
    for i, extra in enumerate(([], ["--smooth", "none"], ["--smooth", "one-euro"], ["--smooth"])):
        assert main(["track", str(src), "--out", str(tmp_path / f"o{i}"), "--no-progress", *extra]) == 0
    assert seen == ["aligned", None, "one-euro", "aligned"]  # a bare --smooth (the old flag) is the default


def test_camera_that_stops(fakes, patched, tmp_path):
    from facetrack.api import Tracker
    from facetrack.io.video import CameraSource
    from facetrack.tracking.session import track_to_folder

    class StoppingCamera(CameraSource):
        def __init__(self):  # no device: frames from memory, then the camera goes away
            self.index, self.name, self.fps, self.size = 0, "camera 0", 30.0, SIZE
            self.frame_count, self.truncated, self.frames_read, self._cap = None, False, 0, None

        def __iter__(self):
            for i, frame in enumerate(fakes.moving_video(5, SIZE, [lambda t: (100, 100)])):
                yield i, i / 30, frame

    tracker = Tracker(model="x", detector="y", validator=None)
    summary = track_to_folder(tracker, StoppingCamera(), tmp_path / "cam", show=True, progress=False)
    assert summary["completed"] and summary["live"] and summary["frames_read"] == 5
    assert "camera stopped" in summary["reason"]


def test_bad_arguments(patched, tmp_path, capsys):
    assert main(["track", "x.mp4", "--format", "csv,gif", "--out", str(tmp_path)]) == 1
    assert "gif" in capsys.readouterr().err
    assert main(["track", "x.mp4", "--max-faces", "0", "--out", str(tmp_path)]) == 1
