"""Static int8 graphs (``facetrack quantize``, ``--runtime int8``): made from calibration crops (clips for a temporal
model's step), named and checked by the card, refused for other weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facetrack.errors import ModelError
from facetrack.landmarker import Landmarker
from facetrack.models import build_model, save_model
from facetrack.models.quantize import SUFFIX, quantize_predict, quantize_step, sha256

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "cache"))


def _quantised(tmp_path, tiny_aohr_config):
    torch.manual_seed(0)
    weights, card_path = save_model(build_model("aohr", **tiny_aohr_config), tmp_path / "tiny", {"name": "tiny"})
    float_landmarker = Landmarker(weights, runtime="onnx", calibrate=False)
    crops = [np.random.default_rng(k).random((1, 3, 64, 64), dtype=np.float32) for k in range(8)]
    graph = quantize_predict(float_landmarker, crops, card_path.with_name("tiny" + SUFFIX))
    card = json.loads(card_path.read_text())
    card["int8"] = {"graph": graph.name, "sha256": sha256(graph), "weights_sha256": card["sha256"]}
    card_path.write_text(json.dumps(card))
    return weights, card_path, float_landmarker, crops


def test_int8_graph_runs_from_the_card_close_to_the_float_graph(tmp_path, tiny_aohr_config):
    weights, _, float_landmarker, crops = _quantised(tmp_path, tiny_aohr_config)
    landmarker = Landmarker(weights, runtime="int8", calibrate=False)
    assert landmarker.runtime == "int8"
    images = torch.from_numpy(np.concatenate(crops))
    coords, conf = landmarker.predict_crops(images)
    reference, _ = float_landmarker.predict_crops(images)
    assert coords.shape == reference.shape and conf.shape == (8, landmarker.num_points)
    assert torch.isfinite(coords).all()
    # random weights give flat heatmaps, so a few argmaxes may move; most coordinates stay within a pixel
    assert float((coords - reference).abs().median()) < 1.0


def test_int8_is_refused_without_a_graph_for_these_weights(tmp_path, tiny_aohr_config):
    weights, card_path, _, _ = _quantised(tmp_path, tiny_aohr_config)
    card = json.loads(card_path.read_text())
    card["int8"]["weights_sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="other weights"):
        Landmarker(weights, runtime="int8")
    card.pop("int8")
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="facetrack quantize"):
        Landmarker(weights, runtime="int8")


@pytest.mark.shared_data
def test_quantize_command_writes_the_graph_and_the_card_section(tmp_path, tiny_aohr_config, shared_data):
    from facetrack.cli import main

    torch.manual_seed(0)
    weights, card_path = save_model(build_model("aohr", **tiny_aohr_config), tmp_path / "tiny", {"name": "tiny"})
    assert main(["quantize", str(weights), "--dataset", "shared300w", "--root", str(shared_data / "300w"),
                 "--faces", "4"]) == 0
    card = json.loads(card_path.read_text())
    assert card["int8"]["graph"] == "tiny" + SUFFIX and card["int8"]["calibration_faces"] == 4
    assert Landmarker(weights, runtime="int8").runtime == "int8"


def test_temporal_int8_step_follows_the_float_step_over_a_clip(tmp_path, tiny_aohr_config):
    from facetrack.models.temporal import TemporalState

    torch.manual_seed(0)
    model = build_model("1dformer", encoder={"arch": "aohr", "num_points": 68, **tiny_aohr_config}, window=3)
    weights, card_path = save_model(model, tmp_path / "tiny_t", {"name": "tiny_t"})
    float_landmarker = Landmarker(weights, runtime="onnx", calibrate=False)
    rng = np.random.default_rng(0)
    clips = [[rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(4)] for _ in range(3)]
    with pytest.raises(ModelError, match="temporal"):
        quantize_predict(float_landmarker, clips[0], tmp_path / "wrong.onnx")
    graph = quantize_step(float_landmarker, clips, card_path.with_name("tiny_t" + SUFFIX))
    card = json.loads(card_path.read_text())
    card["int8"] = {"graph": graph.name, "sha256": sha256(graph), "weights_sha256": card["sha256"]}
    card_path.write_text(json.dumps(card))
    landmarker = Landmarker(weights, runtime="int8", calibrate=False)
    assert landmarker.runtime == "int8"
    fast, slow = landmarker.predictor.step, float_landmarker.predictor.step
    state_a, state_b = landmarker.model.init_state(2), float_landmarker.model.init_state(2)
    for clip_frame in range(4):  # two faces at once, past the window
        images = torch.from_numpy(np.concatenate([clips[0][clip_frame], clips[1][clip_frame]]))
        out_a, state_a = fast(images, state_a)
        out_b, state_b = slow(images, state_b)
        assert isinstance(state_a, TemporalState) and state_a.batch == 2
        assert set(out_a) == set(out_b) and all(out_a[k].shape == out_b[k].shape for k in out_a)
    coords_a, _ = landmarker.model.decode(out_a)
    coords_b, _ = float_landmarker.model.decode(out_b)
    assert torch.isfinite(coords_a).all()
    assert float((coords_a - coords_b).abs().median()) < 1.0
