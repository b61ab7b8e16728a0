"""The command line behaves like its peers: python -m facetrack, --max-faces 0 = all, --out - streams JSON,
plain-text help naming the defaults, each error once, outputs 0644, only landmark models as --model,
detect --render, EXIF orientation in PRED.json, facetrack models (facetrack/cli.py, facetrack/commands/)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest

import facetrack.api as api
from facetrack.cli import COMMANDS, build_parser, main
from facetrack.io.video import write_video
from facetrack.packaged import WEIGHTS_DIR

SIZE = (320, 200)
HAS_WEIGHTS = (WEIGHTS_DIR / "aohr-68.json").is_file()


@pytest.fixture
def doubles(fakes, monkeypatch):
    """Model and detector names resolve to the test doubles (fast, and what is tested is the CLI)."""
    monkeypatch.setattr(api, "resolve_engine", lambda *args, **kwargs: fakes.blob_engine())
    monkeypatch.setattr(api, "resolve_detector", lambda name=None: fakes.BlobDetector())
    return fakes


def still(fakes, folder, name="two.png", blobs=((70, 60, 25), (230, 120, 40))):
    folder.mkdir(exist_ok=True)
    path = folder / name
    assert cv2.imwrite(str(path), fakes.draw_frame(SIZE, list(blobs)))
    return path


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "facetrack", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("facetrack ")


def test_help_is_plain_text_and_names_the_defaults(capsys):
    parser = build_parser()
    texts = {}
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        texts[name] = capsys.readouterr().out
    for name, text in texts.items():
        assert "``" not in text and "DESIGN.md" not in text and "packaged default" not in text, name
    assert "default: aohr-68" in texts["detect"] and "default: 1dformer-68" in texts["track"]
    assert "default: 1dformer-68" in texts["demo"] and "retinaface" in texts["track"]
    assert "default 0: every face" in texts["track"] and "0 = all" in texts["detect"]


def test_defaults_named_in_help_are_the_real_ones():
    import facetrack.models as models
    from facetrack.packaged import DEFAULT_DETECTORS, DEFAULT_MODEL, DEFAULT_TRACKER, describe
    from facetrack.tracking.detectors import PREFERENCE

    assert (DEFAULT_MODEL, DEFAULT_TRACKER) == (models.DEFAULT_MODEL, models.DEFAULT_TRACKER)
    if HAS_WEIGHTS:
        assert tuple(describe(WEIGHTS_DIR / f"{d}.json").option for d in DEFAULT_DETECTORS) == PREFERENCE


def test_max_faces_defaults_to_all_in_both_commands(doubles, tmp_path, capsys):
    parser = build_parser()
    assert parser.parse_args(["detect", "x.jpg", "--out", "p.json"]).max_faces == 0
    assert parser.parse_args(["track", "x.mp4"]).max_faces == 0
    video = tmp_path / "three.avi"
    write_video(video, doubles.moving_video(6, SIZE, [lambda t: (60, 60), lambda t: (160, 100), lambda t: (260, 140)],
                                            radius=25), fps=30, fourcc="MJPG")
    assert main(["track", str(video), "--out", str(tmp_path / "out"), "--no-progress", "--validator", "none"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["tracks"] == 3
    assert main(["track", str(video), "--out", str(tmp_path / "one"), "--no-progress", "--validator", "none",
                 "--max-faces", "1"]) == 0
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["tracks"] == 1
    image = still(doubles, tmp_path / "imgs")
    assert main(["detect", str(image), "--out", str(tmp_path / "p.json")]) == 0
    assert len(json.loads((tmp_path / "p.json").read_text())["images"][0]["faces"]) == 2
    assert main(["track", str(video), "--max-faces", "-1"]) == 1
    assert main(["detect", str(image), "--out", str(tmp_path / "q.json"), "--max-faces", "-1"]) == 1


def test_out_dash_streams_json_to_stdout(doubles, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = still(doubles, tmp_path / "imgs")
    capsys.readouterr()
    assert main(["detect", str(image), "--out", "-"]) == 0
    out = capsys.readouterr()
    pred = json.loads(out.out)
    assert pred["images"][0]["path"] == str(image) and len(pred["images"][0]["faces"]) == 2
    assert "wrote" in out.err and not (tmp_path / "-").exists()
    video = tmp_path / "clip.avi"
    write_video(video, doubles.moving_video(5, SIZE, [lambda t: (80 + 4 * t, 100)]), fps=30, fourcc="MJPG")
    assert main(["track", str(video), "--out", "-", "--validator", "none"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["frame"] for line in lines] == list(range(5))
    assert all(len(line["faces"]) == 1 and len(line["faces"][0]["landmarks"]) == 68 for line in lines)
    assert not (tmp_path / "-").exists()


def test_each_error_is_printed_once(doubles, tmp_path, capsys):
    assert main(["track", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("missing.mp4: video file not found") == 1
    assert err.count("missing.mp4") == 1  # not "FAILED x.mp4: x.mp4: ..."
    assert main(["detect", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "p.json")]) == 1
    assert capsys.readouterr().err.count("missing.jpg") == 1


def test_every_output_is_readable_by_all(doubles, tmp_path):
    old = os.umask(0o022)
    try:
        image = still(doubles, tmp_path / "imgs")
        assert main(["detect", str(image), "--out", str(tmp_path / "pred.json"), "--render", str(tmp_path / "drawn")]) == 0
        video = tmp_path / "clip.avi"
        write_video(video, doubles.moving_video(4, SIZE, [lambda t: (80, 100)]), fps=30, fourcc="MJPG")
        assert main(["track", str(video), "--out", str(tmp_path / "out"), "--no-progress", "--validator", "none",
                     "--format", "csv,jsonl,npz,pts", "--render"]) == 0
    finally:
        os.umask(old)
    from facetrack.io.video import h264_available

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["overlay_codec"] == ("h264" if h264_available() else "mp4v")
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != "imgs" and p.suffix != ".avi"]
    assert {p.name for p in files} >= {"pred.json", "two.jpg", "summary.json", "landmarks.csv", "overlay.mp4"}
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


def test_detect_render_draws_each_image(doubles, tmp_path):
    a = still(doubles, tmp_path / "a")
    b = still(doubles, tmp_path / "b", blobs=((100, 100, 30),))
    assert main(["detect", str(a), str(b.parent), "--out", str(tmp_path / "p.json"), "--render", str(tmp_path / "r")]) == 0
    drawn = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert drawn == ["two.jpg", "two_2.jpg"]  # same names from two folders stay apart
    image = cv2.imread(str(tmp_path / "r" / "two.jpg"))
    assert image.shape == (200, 320, 3) and not np.array_equal(image, cv2.imread(str(a)))


def test_detect_reports_the_exif_orientation(doubles, tmp_path):
    from PIL import Image

    upright = doubles.draw_frame(SIZE, [(70, 60, 25)])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees anticlockwise: a portrait phone photo
    Image.fromarray(np.rot90(upright[:, :, ::-1]).copy()).save(tmp_path / "phone.jpg", quality=98, exif=exif.tobytes())
    assert main(["detect", str(tmp_path / "phone.jpg"), "--out", str(tmp_path / "p.json")]) == 0
    entry = json.loads((tmp_path / "p.json").read_text())["images"][0]
    assert entry["exif_orientation"] == 6 and (entry["width"], entry["height"]) == SIZE
    box = entry["faces"][0]["bbox"]
    assert abs((box[0] + box[2]) / 2 - 70) < 2 and abs((box[1] + box[3]) / 2 - 60) < 2


@pytest.mark.skipif(not HAS_WEIGHTS, reason="packaged weights absent")
def test_only_landmark_models_are_landmark_models(tmp_path, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    landmarks, detectors = out.split("Face detectors")
    assert "aohr-68" in landmarks and "mtcnn" not in landmarks and "face_validator" not in landmarks
    assert "mtcnn" in detectors and "research use only" in landmarks and "MIT" in detectors
    assert main(["models", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["name"]: r["kind"] for r in rows}["mtcnn"] == "face detector"
    assert cv2.imwrite(str(tmp_path / "x.png"), np.zeros((20, 20, 3), np.uint8))
    assert main(["detect", str(tmp_path / "x.png"), "--model", "mtcnn", "--out", str(tmp_path / "p.json")]) == 1
    err = capsys.readouterr().err
    assert "'mtcnn' is a face detector, not a landmark model" in err and "--detector mtcnn" in err
    from facetrack.errors import ModelError
    from facetrack.models.hub import locate_card

    with pytest.raises(ModelError) as info:
        locate_card("no-such-model")
    assert "aohr-68" in str(info.value) and "mtcnn" not in str(info.value)
