"""``facetrack detect`` loses nothing to one bad input: undecodable and truncated images are skipped and listed
(exit 1 at the end), ``--out`` is checked before any work, PRED.json is written image by image, and every
``--boxes`` value is checked (finite, non-empty, inside the image, bounded in number) with an error naming the
file and the field."""
from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

import facetrack.api as api
from facetrack.cli import main
from facetrack.io.results import ImagePrediction, PredictionWriter, read_predictions
from facetrack.models.hub import save_model
from facetrack.models.registry import build_model


@pytest.fixture
def model_path(tmp_path, tiny_aohr_config):
    path = tmp_path / "tiny"
    save_model(build_model("aohr", **tiny_aohr_config), path, {"name": "tiny-test"})
    return path.with_suffix(".safetensors")


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"img{i}.jpg"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return folder


def _boxes(tmp_path, folder, value):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({str(p): value for p in sorted(folder.iterdir())}))
    return path


def test_one_undecodable_and_one_truncated_image_do_not_lose_the_batch(tmp_path, folder, model_path, capsys):
    (folder / "img1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = (folder / "img2.jpg").read_bytes()
    (folder / "img2.jpg").write_bytes(data[: len(data) // 2])  # decodes half grey without complaint
    boxes = _boxes(tmp_path, folder, [[20, 20, 100, 100]])
    out = tmp_path / "pred.json"
    rc = main(["detect", str(folder), "--boxes", str(boxes), "--model", str(model_path), "--out", str(out)])
    assert rc == 1  # was: no output at all (undecodable) / "0 faces" and no warning (truncated)
    pred = read_predictions(out)
    assert [img.path for img in pred.images] == [str(folder / "img0.jpg")] and len(pred.images[0].faces) == 1
    failed = {f["path"]: f["reason"] for f in json.loads(out.read_text())["failed"]}
    assert set(failed) == {str(folder / "img1.jpg"), str(folder / "img2.jpg")}
    assert "truncated JPEG" in failed[str(folder / "img2.jpg")]
    assert not (tmp_path / "pred.json.partial.jsonl").exists()
    assert "img2.jpg" in capsys.readouterr().err


def test_unwritable_out_fails_before_any_work(tmp_path, folder, monkeypatch, capsys):
    monkeypatch.setattr(api, "resolve_engine", lambda *a, **k: pytest.fail("worked before checking --out"))
    (tmp_path / "file").write_text("x")
    assert main(["detect", str(folder), "--out", str(tmp_path / "file" / "pred.json")]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert main(["detect", str(folder), "--out", str(tmp_path)]) == 1  # a folder


@pytest.mark.parametrize("text, field", [
    ('[[NaN, 0, 10, 10]]', "[0][0]"), ('[[0, 0, Infinity, 10]]', "[0][2]"), ('[[50, 0, 10, 10]]', "inverted"),
    ('[[10, 10, 10, 30]]', "empty"), ('[[0, 0, 1e300, 10]]', "[0][2]"), ('[[0, 0, 1e999, 10]]', "[0][2]"),
    ('[[true, 0, 10, 10]]', "[0][0]"), ('[[0, 0, "9", 10]]', "[0][2]"), ('[[0, 0, 10]]', "[0]"),
    ('{"a": 1}', "list"), ('[' * 5000 + ']' * 5000, "nested"),
])
def test_bad_boxes_are_named_errors_not_tracebacks(tmp_path, folder, model_path, capsys, text, field):
    path = tmp_path / "boxes.json"
    path.write_text('{"%s": %s}' % (folder / "img0.jpg", text))
    assert main(["detect", str(folder / "img0.jpg"), "--boxes", str(path), "--model", str(model_path),
                 "--out", str(tmp_path / "p.json")]) == 1
    err = capsys.readouterr().err
    assert "boxes.json" in err and field in err and "Traceback" not in err


def test_boxes_outside_the_image_fail_that_image(tmp_path, folder, model_path):
    boxes = _boxes(tmp_path, folder, [[500, 500, 600, 600]])
    out = tmp_path / "p.json"
    assert main(["detect", str(folder / "img0.jpg"), "--boxes", str(boxes), "--model", str(model_path),
                 "--out", str(out)]) == 1
    assert "outside" in json.loads(out.read_text())["failed"][0]["reason"]


def test_thousands_of_boxes_are_refused_at_once(tmp_path, folder, model_path, capsys):
    boxes = _boxes(tmp_path, folder, [[10, 10, 50, 50]] * 5000)
    started = time.perf_counter()
    assert main(["detect", str(folder), "--boxes", str(boxes), "--model", str(model_path),
                 "--out", str(tmp_path / "p.json")]) == 1
    assert time.perf_counter() - started < 20 and "limit" in capsys.readouterr().err


def test_prediction_writer_keeps_finished_images_until_close(tmp_path):
    out = tmp_path / "p.json"
    writer = PredictionWriter(out, "m", "ibug68")
    writer.add(ImagePrediction("a.png", 10, 10, []))
    partial = tmp_path / "p.json.partial.jsonl"
    assert json.loads(partial.read_text().splitlines()[0])["path"] == "a.png" and not out.exists()
    writer.fail("b.png", "cannot decode")
    writer.close()
    doc = json.loads(out.read_text())
    assert [i["path"] for i in doc["images"]] == ["a.png"] and doc["failed"][0]["path"] == "b.png"
    assert not partial.exists()
