"""ATPN (thesis ch. 3): shapes, the mean-shape start, Eq. 3.1's heatmap, loss/decode consistency, its extra
outputs through the Landmarker (PyTorch and onnxruntime alike), the hub round trip, and the stage-2/3 helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrack.models import build_model, load_model, save_model
from facetrack.models.atpn import heatmap


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("atpn-68").eval()


def test_outputs_size_and_mean_shape_start(model):
    out = model(torch.rand(2, 3, 112, 112))
    assert out["shape"].shape == (2, 68, 2) and out["pose"].shape == (2, 3) and out["face_logits"].shape == (2, 2)
    assert out["pose"].abs().max() <= np.pi
    assert torch.allclose(out["shape"], model.s0.expand(2, -1, -1), atol=0.05)  # S1 = S0 + a small dS at init
    heads = sum(p.numel() for p in [*model.pose_branch.parameters(), *model.track_branch.parameters()])
    assert 4e5 < sum(p.numel() for p in model.parameters()) - heads < 1.5e6  # the thesis: 1.1 M


def test_heatmap_is_one_on_a_landmark_and_floored_far_away():
    shape = torch.tensor([[[0.5 / 28, 0.5 / 28]]])  # the centre of cell (0, 0)
    h = heatmap(shape, 28)[0, 0]
    assert h[0, 0] == pytest.approx(1.0)
    assert h[0, 1] == pytest.approx(1 / np.sqrt(2.0))
    assert h[27, 27] == pytest.approx(0.5) and h.min() >= 0.5


def test_loss_is_zero_at_the_target_and_decode_inverts_encode(model):
    points = np.random.default_rng(0).uniform(10, 100, (68, 2))
    encoded = model.encode_targets(points)
    targets = {k: torch.from_numpy(np.asarray(v, dtype=np.float32))[None] for k, v in encoded.items()}
    outputs = {"shape": targets["shape"].clone(), "pose": torch.zeros(1, 3), "face_logits": torch.zeros(1, 2)}
    assert float(model.loss(outputs, targets)) < 1e-4
    coords, conf = model.decode(outputs)
    assert np.allclose(coords[0].numpy(), points, atol=1e-3) and torch.allclose(conf, torch.full((1, 68), 0.5))
    outputs["shape"] = outputs["shape"] + 2.0 / 112  # 2 px in x and y
    iod = np.linalg.norm(points[36] - points[45])
    assert float(model.loss(outputs, targets)) == pytest.approx(2 * np.sqrt(2) / iod, rel=1e-3)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_landmarker_gives_pose_and_face_probability(model, runtime, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime") if runtime == "onnx" else None
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path))
    from facetrack.landmarker import Landmarker

    marker = Landmarker(model, runtime=runtime)
    crops = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    coords, conf = marker.predict_crops(crops)
    with torch.no_grad():
        ref = model.inference_copy()(crops)
    assert set(marker.aux) == {"pose", "face"} and marker.aux["pose"].shape == (3, 3)
    assert np.allclose(marker.aux["pose"], np.degrees(ref["pose"].numpy()), atol=1e-2)
    assert np.allclose(conf.numpy(), marker.aux["face"][:, None], atol=1e-5)


def test_hub_round_trip(model, tmp_path):
    save_model(model, tmp_path / "atpn", {"name": "atpn-test"})
    again = load_model(tmp_path / "atpn")
    x = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(again(x)["shape"], model(x)["shape"], atol=1e-6)


def test_stage_helpers(tmp_path):
    from facetrack.errors import DataError
    from facetrack.geometry import box_iou
    from facetrack.train.atpn import average_precision, crop_square, negative_crops, read_recipe

    bad = tmp_path / "r.yaml"
    bad.write_text("stage: tracking\nnegativs: 3\n")
    with pytest.raises(DataError, match="negativs"):
        read_recipe(bad)
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    points = np.random.default_rng(0).uniform(100, 160, (68, 2))
    image = np.zeros((400, 400, 3), np.uint8)
    rng = np.random.default_rng(0)
    crops = negative_crops(image, [points], 10, 112, 0.3, rng)
    assert len(crops) == 10 and crops[0].shape == (112, 112, 3)
    square = crop_square(points)
    assert box_iou(square[None], square[None])[0, 0] == pytest.approx(1.0)


def test_shipped_stage_recipes_load_and_chain():
    from pathlib import Path

    from facetrack.train.atpn import read_recipe

    configs = Path(__file__).resolve().parents[2] / "configs"
    tracking, pose = read_recipe(configs / "atpn68_tracking.yaml"), read_recipe(configs / "atpn68_pose.yaml")
    assert (tracking.stage, pose.stage) == ("tracking", "pose") and tracking.negatives == 10 and tracking.max_iou == 0.3
    assert tracking.init_weights == "runs/atpn68_landmarks/best.safetensors"  # stage 1's output
    assert pose.init_weights == f"{tracking.out}/best.safetensors"  # so the result holds all three branches
