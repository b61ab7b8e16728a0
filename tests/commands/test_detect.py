from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facetrack.cli import main
from facetrack.io.results import read_predictions
from facetrack.models.hub import save_model
from facetrack.models.registry import build_model


@pytest.fixture
def model_path(tmp_path, tiny_aohr_config):
    path = tmp_path / "tiny"
    save_model(build_model("aohr", **tiny_aohr_config), path, {"name": "tiny-test"})
    return path.with_suffix(".safetensors")


def _images(folder, n=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
        paths.append(p)
    return paths


def test_detect_with_boxes_writes_the_prediction_contract(tmp_path, model_path):
    paths = _images(tmp_path / "imgs")
    boxes = {str(paths[0]): [[20, 20, 80, 90]], str(paths[1]): [[10, 10, 60, 60], [70, 20, 150, 110]]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "pred.json"
    rc = main(["detect", str(tmp_path / "imgs"), "--boxes", str(tmp_path / "boxes.json"),
               "--model", str(model_path), "--out", str(out)])
    assert rc == 0
    raw = json.loads(out.read_text())
    assert set(raw) == {"model", "scheme", "images"} and raw["scheme"] == "ibug68" and raw["model"] == "tiny-test"
    pred = read_predictions(out, num_points=68)
    assert [len(i.faces) for i in pred.images] == [1, 2]
    face = raw["images"][1]["faces"][1]
    assert set(face) == {"bbox", "score", "landmarks", "landmark_scores", "pose"}
    assert face["bbox"] == [70, 20, 150, 110] and face["score"] is None
    assert len(face["landmarks"]) == 68 and len(face["landmark_scores"]) == 68
    assert raw["images"][0]["width"] == 160 and raw["images"][0]["height"] == 120


def test_detect_matches_box_keys_however_the_path_is_spelled(tmp_path, model_path, monkeypatch):
    paths = _images(tmp_path / "imgs", n=1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boxes.json").write_text(json.dumps({"./imgs/img0.png": [[20, 20, 80, 90]]}))
    rc = main(["detect", str(paths[0]), "--boxes", "boxes.json", "--model", str(model_path), "--out", "p.json"])
    assert rc == 0
    assert len(read_predictions(tmp_path / "p.json").images[0].faces) == 1


def test_detect_names_a_missing_input(tmp_path, model_path, capsys):
    rc = main(["detect", str(tmp_path / "nope.jpg"), "--boxes", str(tmp_path / "b.json"),
               "--model", str(model_path), "--out", str(tmp_path / "p.json")])
    assert rc == 1
    assert "nope.jpg" in capsys.readouterr().err


def test_detect_rejects_a_malformed_boxes_file(tmp_path, model_path, capsys):
    paths = _images(tmp_path / "imgs", n=1)
    (tmp_path / "boxes.json").write_text(json.dumps({str(paths[0]): [[1, 2, 3]]}))
    rc = main(["detect", str(paths[0]), "--boxes", str(tmp_path / "boxes.json"),
               "--model", str(model_path), "--out", str(tmp_path / "p.json")])
    assert rc == 1
    assert "boxes.json" in capsys.readouterr().err


def test_detect_flip_and_calibrate_round_trip(tmp_path, model_path):
    """--flip changes the prediction; ``facetrack calibrate`` writes offsets into the card, which detect applies."""
    from facetrack.io.pts import write_pts

    paths = _images(tmp_path / "imgs")
    rng = np.random.default_rng(3)
    for p in paths:
        write_pts(p.with_suffix(".pts"), rng.uniform(30, 100, (68, 2)))
    root = tmp_path / "300W"  # the 300-W training folders, one face in each
    for i, folder in enumerate(("afw", "helen/trainset", "lfpw/trainset")):
        (root / folder).mkdir(parents=True)
        cv2.imwrite(str(root / folder / f"f{i}.png"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
        write_pts(root / folder / f"f{i}.pts", rng.uniform(30, 100, (68, 2)))
    boxes = {str(p): [[20, 20, 100, 100]] for p in paths}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    args = ["detect", str(tmp_path / "imgs"), "--boxes", str(tmp_path / "boxes.json"), "--model", str(model_path)]
    assert main([*args, "--out", str(tmp_path / "plain.json")]) == 0
    assert main([*args, "--out", str(tmp_path / "flip.json"), "--flip"]) == 0
    plain = np.array(json.loads((tmp_path / "plain.json").read_text())["images"][0]["faces"][0]["landmarks"])
    flip = np.array(json.loads((tmp_path / "flip.json").read_text())["images"][0]["faces"][0]["landmarks"])
    assert plain.shape == flip.shape == (68, 2) and not np.allclose(plain, flip)

    assert main(["calibrate", str(model_path), "--dataset", "300w", "--root", str(root), "--split", "train"]) == 0
    card = json.loads(model_path.with_suffix(".json").read_text())
    assert card["calibration"]["faces"] == 3 and set(card["calibration"]["offsets_px"]) == {"plain", "flip"}
    assert main([*args, "--out", str(tmp_path / "calibrated.json")]) == 0
    calibrated = np.array(json.loads((tmp_path / "calibrated.json").read_text())["images"][0]["faces"][0]["landmarks"])
    assert not np.allclose(calibrated, plain)
    assert main([*args, "--out", str(tmp_path / "raw.json"), "--no-calibration"]) == 0
    raw = np.array(json.loads((tmp_path / "raw.json").read_text())["images"][0]["faces"][0]["landmarks"])
    np.testing.assert_allclose(raw, plain, atol=1e-4)
