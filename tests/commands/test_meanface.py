"""TUFA's points from the command line: ``facetrack meanface`` draws where zero-shot points go, ``facetrack detect
--points`` asks for another trained scheme or for positions placed on that picture."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from facetrack.cli import main
from facetrack.io.results import read_predictions
from facetrack.models.hub import save_model
from facetrack.models.registry import build_model

TINY = {"input_size": 32, "patch": 8, "dim": 16, "heads": 2, "depth": 1, "decoder_layers": 1, "mlp_ratio": 1.0}


@pytest.fixture
def tufa_path(tmp_path):
    torch.manual_seed(0)
    model = build_model("tufa", **TINY, datasets=[["shared300w", 68], ["mtfl5", 5]])
    mean = np.random.default_rng(0).uniform(-0.8, 0.8, (68, 2))
    model.set_mean_shape("shared300w", mean)
    model.set_mean_shape("mtfl5", mean[[36, 45, 30, 48, 54]])
    save_model(model, tmp_path / "tufa", {"name": "tufa-test"})
    return tmp_path / "tufa.safetensors"


@pytest.fixture
def image_and_boxes(tmp_path):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({str(path): [[20, 15, 90, 85]]}))
    return path, boxes


def test_meanface_draws_every_scheme_and_writes_their_positions(tmp_path, tufa_path, capsys):
    out = tmp_path / "mean.png"
    assert main(["meanface", "--model", str(tufa_path), "--out", str(out)]) == 0
    picture = cv2.imread(str(out))
    table = json.loads(out.with_suffix(".json").read_text())
    assert picture.shape == (256, 256, 3) and picture.any()
    assert set(table["schemes"]) == {"shared300w", "mtfl5"} and len(table["schemes"]["mtfl5"]) == 5
    assert table["size"] == 256
    assert main(["meanface", "--model", str(tufa_path), "--out", str(out), "--scheme", "wflw"]) == 1
    assert "knows" in capsys.readouterr().err


def test_meanface_refuses_a_model_without_a_plane(tmp_path, tiny_aohr_config, capsys):
    save_model(build_model("aohr", **tiny_aohr_config), tmp_path / "a", {"name": "a"})
    assert main(["meanface", "--model", str(tmp_path / "a.safetensors"), "--out", str(tmp_path / "m.png")]) == 1
    assert "not a TUFA" in capsys.readouterr().err


def test_detect_points_scheme_and_zero_shot_positions(tmp_path, tufa_path, image_and_boxes):
    image, boxes = image_and_boxes
    base = ["detect", str(image), "--boxes", str(boxes), "--model", str(tufa_path), "--runtime", "torch"]
    assert main([*base, "--points", "mtfl5", "--out", str(tmp_path / "five.json")]) == 0
    five = read_predictions(tmp_path / "five.json")
    assert five.scheme == "mtfl5" and np.asarray(five.images[0].faces[0].landmarks).shape == (5, 2)
    # positions from the meanface table (two mtfl5 anchors, on a 512 px picture) come back as two points
    main(["meanface", "--model", str(tufa_path), "--out", str(tmp_path / "m.png"), "--size", "512"])
    table = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "mine.json").write_text(json.dumps({"size": 512, "points": table["schemes"]["mtfl5"][:2]}))
    assert main([*base, "--points", str(tmp_path / "mine.json"), "--out", str(tmp_path / "two.json")]) == 0
    two = read_predictions(tmp_path / "two.json")
    assert two.scheme == "points:2:mine.json"
    # the same plane points as the scheme's first two anchors: the same answers
    assert np.allclose(np.asarray(two.images[0].faces[0].landmarks), np.asarray(five.images[0].faces[0].landmarks)[:2],
                       atol=0.05)


def test_detect_points_errors_name_the_problem(tmp_path, tufa_path, image_and_boxes, tiny_aohr_config, capsys):
    image, boxes = image_and_boxes
    base = ["detect", str(image), "--boxes", str(boxes), "--out", str(tmp_path / "p.json"), "--runtime", "torch"]
    (tmp_path / "bad.json").write_text("{not json")
    assert main([*base, "--model", str(tufa_path), "--points", str(tmp_path / "bad.json")]) == 1
    assert "bad.json" in capsys.readouterr().err
    (tmp_path / "flat.json").write_text(json.dumps([1, 2, 3]))
    assert main([*base, "--model", str(tufa_path), "--points", str(tmp_path / "flat.json")]) == 1
    assert "positions" in capsys.readouterr().err
    assert main([*base, "--model", str(tufa_path), "--points", str(tmp_path / "missing.json")]) == 1
    assert "not found" in capsys.readouterr().err
    save_model(build_model("aohr", **tiny_aohr_config), tmp_path / "a", {"name": "a"})
    assert main([*base, "--model", str(tmp_path / "a.safetensors"), "--points", "mtfl5"]) == 1
    assert "TUFA" in capsys.readouterr().err
