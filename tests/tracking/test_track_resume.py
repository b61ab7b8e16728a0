"""``facetrack track`` never loses and never fakes a result: provenance-checked skip, refusal, resume after an
interruption or a SIGKILL (no row lost or duplicated), outputs valid at any moment, undecodable frames listed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

import facetrack.api as api
import facetrack.io.track_output as track_output
from facetrack.cli import main
from facetrack.io.results import read_landmarks_csv
from facetrack.io.video import write_video

SIZE = (320, 200)
HERE = Path(__file__).resolve().parent
ARGS = ["--no-progress", "--validator", "none"]


@pytest.fixture
def patched(fakes, monkeypatch):
    """Names -> test doubles; detector "stop-at-K" raises Ctrl-C on its K-th call (with --detect-every 1 it runs
    on every frame of the run)."""
    made = []

    def detector(name=None):
        class Stops(fakes.BlobDetector):
            def detect(self, frame):
                if name and name.startswith("stop-at-") and self.calls >= int(name.rsplit("-", 1)[1]):
                    raise KeyboardInterrupt
                return super().detect(frame)

        made.append(Stops())
        made[-1].name = "blob-detector"  # the same detector in the provenance whatever the test's name
        return made[-1]

    monkeypatch.setattr(api, "resolve_engine", lambda *args, **kwargs: fakes.blob_engine())
    monkeypatch.setattr(api, "resolve_detector", detector)
    monkeypatch.setattr(track_output, "CHECKPOINT_S", 0.0)  # checkpoint every frame
    return made


def video(fakes, path, n=12, x0=80, path_fn=None):
    path_fn = path_fn or (lambda t: (x0 + 4 * t, 100))
    write_video(path, fakes.moving_video(n, SIZE, [path_fn]), fps=30, fourcc="MJPG")
    return path


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_another_video_in_the_same_folder_is_refused_not_skipped(fakes, patched, tmp_path, capsys):
    a, b = video(fakes, tmp_path / "a.avi"), video(fakes, tmp_path / "b.avi", n=6)
    out = tmp_path / "out"
    assert main(["track", str(a), "--out", str(out), *ARGS]) == 0
    capsys.readouterr()
    assert main(["track", str(b), "--out", str(out), *ARGS]) == 1  # was: "skip ... already complete", exit 0
    err = capsys.readouterr().err
    assert "REFUSED" in err and "another source" in err and "--force" in err
    assert summary_of(out)["frames_read"] == 12  # a's results untouched
    assert main(["track", str(a), "--out", str(out), *ARGS]) == 0 and "skip" in capsys.readouterr().out
    assert main(["track", str(b), "--out", str(out), "--force", *ARGS]) == 0
    assert summary_of(out)["frames_read"] == 6 and len(read_landmarks_csv(out / "landmarks.csv")) == 6


def test_changed_video_or_options_are_not_skipped(fakes, patched, tmp_path, capsys):
    a = video(fakes, tmp_path / "a.avi")
    out = tmp_path / "out"
    assert main(["track", str(a), "--out", str(out), *ARGS]) == 0
    assert main(["track", str(a), "--out", str(out), "--format", "csv,npz", *ARGS]) == 1
    assert "formats was" in capsys.readouterr().err
    assert main(["track", str(a), "--out", str(out), "--max-faces", "2", *ARGS]) == 1
    video(fakes, a, n=12, x0=90)  # same name, other content
    os.utime(a, ns=(1, 1))
    assert main(["track", str(a), "--out", str(out), *ARGS]) == 1
    assert "another version" in capsys.readouterr().err
    # a folder of someone else's files (no summary of ours) is not overwritten either
    other = tmp_path / "other"
    other.mkdir()
    (other / "landmarks.csv").write_text("mine\n")
    assert main(["track", str(a), "--out", str(other), *ARGS]) == 1
    assert (other / "landmarks.csv").read_text() == "mine\n"


def _frames(out):
    table = read_landmarks_csv(out / "landmarks.csv")  # raises on a repeated (frame, track_id)
    return list(table.frame)


def test_interrupted_twice_resumes_without_losing_or_repeating_rows(fakes, patched, tmp_path, capsys):
    src = video(fakes, tmp_path / "clip.avi", n=20)
    out = tmp_path / "out"
    base = ["track", str(src), "--out", str(out), "--detect-every", "1", "--max-faces", "2",
            "--format", "csv,jsonl,npz,pts", *ARGS]
    assert main([*base, "--detector", "stop-at-8"]) == 130
    first = _frames(out)
    assert first == list(range(8)) and summary_of(out)["completed"] is False
    assert main([*base, "--detector", "stop-at-5"]) == 130  # resumes at frame 8, stops after 5 more
    assert "resuming" in capsys.readouterr().out
    assert _frames(out) == list(range(13))  # was: restarted at 0 and truncated (50 rows -> 2)
    assert main(base) == 0
    s = summary_of(out)
    assert s["completed"] is True and s["frames_read"] == 20 and s["frames_with_face"] == 20
    assert "progress" not in s and not (out / track_output.PARTS_DIR).exists()
    table = read_landmarks_csv(out / "landmarks.csv")
    assert list(table.frame) == list(range(20))
    assert len(set(table.track_id[:8]) & set(table.track_id[8:])) == 0  # resumed tracks get new ids
    npz = np.load(out / "landmarks.npz")
    np.testing.assert_array_equal(npz["frame"], table.frame)
    np.testing.assert_array_equal(npz["track_id"], table.track_id)
    np.testing.assert_allclose(npz["landmarks"], table.landmarks)
    lines = [json.loads(x) for x in (out / "landmarks.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(20))
    assert len(list((out / "annot").iterdir())) == 20
    np.testing.assert_allclose(table.boxes[12], fakes.blob_box(80 + 4 * 12, 100, 30), atol=2.5)
    capsys.readouterr()
    assert main(base) == 0 and "skip" in capsys.readouterr().out


_KILLED_RUN = """
import sys, time
sys.path[:0] = [{here!r}, {root!r}]
import conftest
import facetrack.api as api
import facetrack.io.track_output as track_output
from facetrack.cli import main

api.resolve_engine = lambda *a, **k: conftest.blob_engine()
api.resolve_detector = lambda name=None: conftest.BlobDetector()
track_output.CHECKPOINT_S = 0.0
track_output.CHECKPOINT_ROWS = 4
write = track_output.TrackOutput.write
def slow(self, *args, **kwargs):
    write(self, *args, **kwargs)
    time.sleep(0.02)
track_output.TrackOutput.write = slow
sys.exit(main({argv!r}))
"""


def test_sigkill_then_resume_loses_and_repeats_no_row(fakes, patched, tmp_path):
    n = 100
    src = video(fakes, tmp_path / "long.avi", n=n, path_fn=lambda t: (160 + 60 * np.sin(t / 10), 100))
    out = tmp_path / "out"
    argv = ["track", str(src), "--out", str(out), "--format", "csv,jsonl,npz", *ARGS]
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN.format(here=str(HERE), root=str(HERE.parents[1]), argv=argv))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if summary_of(out).get("progress", {}).get("last_frame", -1) >= 30:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # what a kill leaves is valid: summary.json, an npz (was: none at all), the CSV rows before its last line
    killed = summary_of(out)
    assert killed["completed"] is False and killed["progress"]["last_frame"] >= 30
    assert (out / "landmarks.npz").exists(), (killed["progress"], sorted(p.name for p in out.iterdir()))
    npz = np.load(out / "landmarks.npz")
    assert 4 <= len(npz["frame"]) <= n and list(npz["frame"]) == list(range(len(npz["frame"])))
    lines = (out / "landmarks.csv").read_text().split("\n")
    assert len(lines) - 2 >= killed["progress"]["last_frame"]
    assert main(argv) == 0
    s = summary_of(out)
    assert s["completed"] is True and s["frames_read"] == n and s["resumed_from"] >= 31
    table = read_landmarks_csv(out / "landmarks.csv")
    assert list(table.frame) == list(range(n))  # nothing lost, nothing twice
    npz = np.load(out / "landmarks.npz")
    np.testing.assert_array_equal(npz["frame"], table.frame)
    np.testing.assert_allclose(npz["boxes"], table.boxes)
    assert [json.loads(x)["frame"] for x in (out / "landmarks.jsonl").read_text().splitlines()] == list(range(n))


def test_frame_folder_with_a_corrupt_first_frame_lists_it(fakes, patched, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(fakes.moving_video(8, SIZE, [lambda t: (100, 100)])):
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
    (folder / "0000.png").write_bytes(b"not a png at all")  # was: the whole folder failed
    data = (folder / "0005.png").read_bytes()
    (folder / "0005.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["track", str(folder), "--out", str(out), *ARGS]) == 0
    s = summary_of(out)
    assert [b["frame"] for b in s["bad_frames"]] == [0, 5]  # was: frame 5 skipped but not listed
    assert "0005.png" in s["bad_frames"][1]["reason"]
    assert _frames(out) == [1, 2, 3, 4, 6, 7]
    # interrupted after frame 6 and resumed: the frames skipped before the resume stay listed
    s.update(completed=False, progress={"last_frame": 6, "parts": [], "rows": 0, "rows_at_npz": 0, "frames_read": 7,
                                        "frames_with_face": 5, "track_ids": [0]})
    (out / "summary.json").write_text(json.dumps(s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["track", str(folder), "--out", str(out), *ARGS]) == 0
    s = summary_of(out)
    assert s["resumed_from"] == 7 and [b["frame"] for b in s["bad_frames"]] == [0, 5] and s["frames_read"] == 8
    assert _frames(out) == [1, 2, 3, 4, 6, 7]
    (folder / "0000.png").write_bytes((folder / "0001.png").read_bytes())  # only frame 5 is bad now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["track", str(folder), "--out", str(tmp_path / "again"), *ARGS]) == 0
    assert [b["frame"] for b in summary_of(tmp_path / "again")["bad_frames"]] == [5]


def test_npz_is_assembled_from_parts_without_reading_the_csv(tmp_path, monkeypatch):
    import facetrack.io.results as results
    from facetrack.io.track_output import FaceRow, TrackOutput

    monkeypatch.setattr(track_output, "CHECKPOINT_ROWS", 3)
    monkeypatch.setattr(results, "read_landmarks_csv", lambda *a, **k: pytest.fail("the CSV was re-read"))
    sink = TrackOutput(tmp_path, 5, ("csv", "npz"))
    sink.start({"completed": False})
    for i in range(10):
        sink.write(i, i / 30, [FaceRow(1, [0, 0, 10, 10], 0.5, np.full((5, 2), i + 0.12345), None)])
    sink.finish({"completed": True}, completed=True)
    npz = np.load(tmp_path / "landmarks.npz")
    assert npz["landmarks"].shape == (10, 5, 2) and np.isnan(npz["confidences"]).all()
    np.testing.assert_allclose(npz["landmarks"][:, 0, 0], np.arange(10) + 0.123)  # the CSV's rounding


def test_a_failed_attempt_that_tracked_nothing_is_simply_redone(fakes, patched, tmp_path):
    src = tmp_path / "late.avi"
    out = tmp_path / "out"
    assert main(["track", str(src), "--out", str(out), *ARGS]) == 1  # not there yet
    video(fakes, src, n=5)
    assert main(["track", str(src), "--out", str(out), *ARGS]) == 0
    assert summary_of(out)["completed"] is True and summary_of(out)["frames_read"] == 5
