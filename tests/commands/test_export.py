from __future__ import annotations

import json

from facetrack.cli import main
from facetrack.models.hub import load_model, save_model
from facetrack.models.registry import build_model


def test_export_packages_weights_with_training_card_and_measurements(tmp_path, tiny_aohr_config):
    run = tmp_path / "run"
    training = {"epoch": 3, "data": {"terms": "300-W: research use only"}}
    calibration = {"offsets_px": {"plain": [[0.1, -0.2]] * 68}, "faces": 5}
    save_model(build_model("aohr", **tiny_aohr_config), run / "best",
               {"training": training, "crop": {"scale": 1.3}, "calibration": calibration})
    (tmp_path / "result.json").write_text(json.dumps({"nme": 0.05}))
    (tmp_path / "speed.json").write_text(json.dumps({"ms_per_face": 3.0}))
    rc = main(["export", str(run / "best.safetensors"), "--name", "tiny-68", "--out", str(tmp_path / "pkg"),
               "--eval", str(tmp_path / "result.json"), "--speed", str(tmp_path / "speed.json")])
    assert rc == 0
    card = json.loads((tmp_path / "pkg" / "tiny-68.json").read_text())
    assert card["name"] == "tiny-68" and card["terms"] == "300-W: research use only"
    assert card["crop"] == {"scale": 1.3} and card["training"]["epoch"] == 3
    assert card["evaluation"] == [{"nme": 0.05}] and card["speed"] == {"ms_per_face": 3.0}
    assert card["calibration"] == calibration  # the offsets travel with the weights
    model = load_model(tmp_path / "pkg" / "tiny-68.safetensors")
    assert model.card["name"] == "tiny-68"


def test_export_names_a_missing_result_file(tmp_path, capsys, tiny_aohr_config):
    save_model(build_model("aohr", **tiny_aohr_config), tmp_path / "best")
    rc = main(["export", str(tmp_path / "best.safetensors"), "--name", "x", "--out", str(tmp_path / "pkg"),
               "--eval", str(tmp_path / "nope.json")])
    assert rc == 1 and "nope.json" in capsys.readouterr().err
