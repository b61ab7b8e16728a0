"""The onnxruntime encoder gives PyTorch's outputs, caches its graph by weights, and falls back cleanly."""
from __future__ import annotations

import pytest
import torch

from facetrack.models import build_model
from facetrack.models.onnx_runtime import accelerate, cache_dir

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_PLAIN = {"name": "plain", "channels": [8, 8, 16, 16], "blocks": [1, 1, 1], "out_channels": 16}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("head", [{"head_compress": "full", "head_channels": 16, "attn_dim": 8},
                                  {"head_compress": "flatten", "gamma": 0.0}])
def test_onnx_encoder_matches_torch_at_any_batch(head):
    torch.manual_seed(0)
    reference = build_model("aohr", num_points=5, input_size=64, ratio=2.0, backbone=TINY_PLAIN, **head)
    reference = reference.eval().inference_copy()
    fast = reference.inference_copy()
    assert accelerate(fast, "onnx") == "onnx"
    for batch in (1, 3):
        images = torch.rand(batch, 3, 64, 64)
        with torch.no_grad():
            expected, got = reference(images), fast(images)
        for key in ("hx", "hy"):
            assert got[key].shape == expected[key].shape
            assert torch.allclose(got[key], expected[key], atol=1e-4)


def test_graph_is_cached_by_weights_and_reused():
    model = build_model("aohr", num_points=5, input_size=64, backbone=TINY_PLAIN, head_channels=16, attn_dim=8)
    model = model.eval().inference_copy()
    accelerate(model.inference_copy(), "onnx")
    files = sorted(cache_dir().glob("*.onnx"))
    assert len(files) == 1
    accelerate(model.inference_copy(), "onnx")
    assert sorted(cache_dir().glob("*.onnx")) == files  # same weights, same graph
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    accelerate(model.inference_copy(), "onnx")
    assert len(list(cache_dir().glob("*.onnx"))) == 2  # changed weights never reuse a stale graph


def test_temporal_models_move_only_their_encoder():
    torch.manual_seed(0)
    encoder = {"arch": "aohr", "num_points": 68, "input_size": 64, "ratio": 1.0, "backbone": TINY_PLAIN,
               "head_channels": 16, "attn_dim": 8}
    reference = build_model("1dformer", encoder=encoder, window=3).eval().inference_copy()
    fast = reference.inference_copy()
    assert accelerate(fast) == "onnx"
    state_a, state_b = reference.init_state(1), fast.init_state(1)
    for _ in range(3):
        images = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            out_a, state_a = reference.step(images, state_a)
            out_b, state_b = fast.step(images, state_b)
        assert torch.allclose(out_a["hx"], out_b["hx"], atol=1e-4)


def test_torch_runtime_and_bad_names():
    model = build_model("aohr", num_points=5, input_size=64, backbone=TINY_PLAIN, head_channels=16, attn_dim=8)
    model = model.eval().inference_copy()
    assert accelerate(model, "torch") == "torch"
    assert "encode_1d" not in vars(model)  # untouched: the class method
    with pytest.raises(ValueError, match="runtime"):
        accelerate(model, "tensorrt")
    with pytest.raises(ValueError, match="CPU"):
        accelerate(model, "onnx", device="cuda")


def test_auto_falls_back_to_torch_when_onnxruntime_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    model = build_model("aohr", num_points=5, input_size=64, backbone=TINY_PLAIN, head_channels=16, attn_dim=8)
    model = model.eval().inference_copy()
    assert accelerate(model, "auto") == "torch"
    with pytest.raises(ImportError):
        accelerate(model, "onnx")


def test_cli_offers_the_same_runtimes():
    from facetrack.commands import RUNTIMES as CLI_RUNTIMES
    from facetrack.models.onnx_runtime import RUNTIMES

    assert CLI_RUNTIMES == RUNTIMES
