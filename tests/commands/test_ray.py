"""``facetrack track --ray`` on a local Ray instance started in this process: three short clips cut from the
packaged astronaut photo (the real detector and model find the face) and one corrupt file, which must be
reported while the others finish; a second run skips the finished videos and retries the corrupt one."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest

from facetrack.cli import main
from facetrack.io.results import read_landmarks_csv
from facetrack.io.video import write_video

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'facetrack[ray]')")
STILL = Path(__file__).resolve().parents[2] / "facetrack" / "assets" / "astronaut.png"


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_worker_niceness", "0")  # Ray's default (15) starves workers on a busy machine
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def clips(folder: Path, count: int = 3, frames: int = 5) -> list[Path]:
    still = cv2.imread(str(STILL))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):  # the camera pans over the astronaut's face
        images = [cv2.resize(still[3 * t:3 * t + 300, 100 + 4 * t + 10 * k:400 + 4 * t + 10 * k], (192, 192))
                  for t in range(frames)]
        paths.append(folder / f"clip{k}.avi")
        write_video(paths[-1], images, fps=30, fourcc="MJPG")
    return paths


def test_ray_batch_reports_the_corrupt_video_and_resumes(local_ray, tmp_path, capsys):
    videos = tmp_path / "videos"
    good = clips(videos)
    (videos / "broken.avi").write_bytes(b"RIFF\0\0\0\0AVI LIST" + bytes(range(256)) * 8)  # not a video
    out = tmp_path / "out"

    rc = main(["track", str(videos), "--out", str(out), "--no-progress", "--ray"])
    assert rc == 1  # a failure
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["completed"] is True and manifest["ray"]["cpus"] == 2
    assert manifest["counts"] == {"tracked": 3, "skipped": 0, "failed": 1, "not_finished": 0}
    (failed,) = manifest["failed"]
    assert failed["source"].endswith("broken.avi") and failed["attempts"] == 2 and len(failed["errors"]) == 2
    assert "cannot open" in failed["reason"]
    assert "broken.avi" in capsys.readouterr().err
    for path in good:  # the single-process layout: DIR/<video>/landmarks.csv + summary.json
        summary = json.loads((out / path.stem / "summary.json").read_text())
        assert summary["completed"] is True and summary["frames_read"] == 5 and summary["frames_with_face"] == 5
        assert summary["track_starts"][0] == [0, 0]
        assert len(read_landmarks_csv(out / path.stem / "landmarks.csv").frame) == 5
    assert manifest["frames_tracked"] == 15 and manifest["frames_per_s"] > 0
    # one model load per worker process, however many videos it ran
    loads = manifest["model_loads_per_worker"]
    assert loads and set(loads.values()) == {1}
    assert len({r["worker"] for r in manifest["succeeded"]}) <= 2

    rc = main(["track", str(videos), "--out", str(out), "--no-progress", "--ray"])
    assert rc == 1
    again = json.loads((out / "manifest.json").read_text())
    assert again["counts"] == {"tracked": 0, "skipped": 3, "failed": 1, "not_finished": 0}
    assert set(again["model_loads_per_worker"].values()) == {1}  # the same workers kept their tracker


def test_without_ray_the_command_says_how_to_install(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["track", str(tmp_path / "x.mp4"), "--out", str(tmp_path / "o"), "--ray"]) == 1
    assert "pip install 'facetrack[ray]'" in capsys.readouterr().err
