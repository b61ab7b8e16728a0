"""Weights on disk: safetensors + model card round trip, and refusal of anything that does not match."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from facetrack.errors import ModelError
from facetrack.models import build_model, hub, load_model, save_model

CONFIG = {"num_points": 5, "input_size": 32, "ratio": 2.0, "head_channels": 16, "attn_dim": 4, "head_layers": 1,
          "backbone": {"name": "hourglass", "stacks": 1, "depth": 2, "width": 16}}
CARD = {"crop": {"scale": 1.3}, "training_data": "synthetic", "licence": "research only",
        "metrics": {"300w_full_nme": 0.05}, "recipe": "configs/tiny.yaml"}


def trained_model():
    torch.manual_seed(0)
    model = build_model("aohr", **CONFIG)
    model(torch.rand(4, 3, 32, 32))  # one train-mode pass so BatchNorm statistics are not the defaults
    return model.eval()


def test_round_trip_is_exact(tmp_path):
    model = trained_model()
    weights, card_path = save_model(model, tmp_path / "tiny", CARD)
    assert weights == tmp_path / "tiny.safetensors" and card_path == tmp_path / "tiny.json"
    card = json.loads(card_path.read_text())
    assert card["arch"] == "aohr" and card["config"] == model.config and card["scheme"] == "ibug68"
    assert card["input_size"] == 32 and card["crop"] == {"scale": 1.3} and card["licence"] == "research only"
    for given in (tmp_path / "tiny", tmp_path / "tiny.safetensors", str(tmp_path / "tiny.json")):
        loaded = load_model(given)
        assert not loaded.training and loaded.card["metrics"] == CARD["metrics"]
        state, original = loaded.state_dict(), model.state_dict()
        assert state.keys() == original.keys()
        assert all(torch.equal(state[k], original[k]) for k in state)
        images = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(loaded(images)["hx"], model(images)["hx"])


def test_weights_are_safetensors_with_metadata(tmp_path):
    save_model(trained_model(), tmp_path / "m.safetensors", {})
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"arch": "aohr", "format": "facetrack"}
    assert not (tmp_path / "m.safetensors.json").exists() and (tmp_path / "m.json").exists()


def test_mismatched_card_is_refused_naming_the_file(tmp_path):
    save_model(trained_model(), tmp_path / "m", CARD)
    card_path = tmp_path / "m.json"
    card = json.loads(card_path.read_text())
    card["config"]["backbone"]["width"] = 32
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"m\.safetensors.*shape differs"):
        load_model(card_path)
    card["config"]["backbone"]["width"] = 16
    card["config"]["gamma"] = 0.0  # no co-attention: the file has two tensors too many
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="unexpected: coattention"):
        load_model(card_path)


def test_card_that_does_not_build_is_refused(tmp_path):
    save_model(trained_model(), tmp_path / "m", CARD)
    card_path = tmp_path / "m.json"
    card = json.loads(card_path.read_text())
    card["config"]["no_such_option"] = 1
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"m\.json"):
        load_model(card_path)
    card_path.write_text("{not json")
    with pytest.raises(ModelError, match=r"m\.json: cannot read"):
        load_model(card_path)


def test_replaced_or_foreign_weights_are_refused(tmp_path):
    save_model(trained_model(), tmp_path / "m", CARD)
    tensors = load_file(str(tmp_path / "m.safetensors"))
    tensors["deconv_x.bias"] = tensors["deconv_x.bias"] + 1
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata={"arch": "aohr", "format": "facetrack"})
    with pytest.raises(ModelError, match="sha256"):
        load_model(tmp_path / "m")
    card = json.loads((tmp_path / "m.json").read_text())
    del card["sha256"]
    (tmp_path / "m.json").write_text(json.dumps(card))
    assert torch.equal(load_model(tmp_path / "m").state_dict()["deconv_x.bias"], tensors["deconv_x.bias"])
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata={"arch": "heatmap2d"})
    with pytest.raises(ModelError, match="holds arch 'heatmap2d'"):
        load_model(tmp_path / "m")


def test_missing_files(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="model card not found"):
        load_model(tmp_path / "absent.safetensors")
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(ModelError, match="no packaged weights are installed"):
        load_model("aohr-lite-128")
    save_model(trained_model(), tmp_path / "weights" / "tiny-face", CARD)
    loaded = load_model("tiny-face")
    assert {key: loaded.config[key] for key in CONFIG} == CONFIG
    with pytest.raises(ModelError, match="available: tiny-face"):
        load_model("other-face")


def test_card_must_be_json(tmp_path):
    with pytest.raises(ModelError, match="JSON"):
        save_model(trained_model(), tmp_path / "m", {"recipe": object()})
    assert not (tmp_path / "m.safetensors").exists()
