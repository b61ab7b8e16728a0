"""The onnxruntime encoder gives PyTorch's outputs, caches its graph by weights, and falls back cleanly."""
from __future__ import annotations

import pytest
import torch

from facetrack.models import build_model
from facetrack.models.onnx_runtime import cache_dir, predictor_for

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_PLAIN = {"name": "plain", "channels": [8, 8, 16, 16], "blocks": [1, 1, 1], "out_channels": 16}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("head", [{"head_compress": "full", "head_channels": 16, "attn_dim": 8},
                                  {"head_compress": "flatten", "gamma": 0.0}])
def test_onnx_predict_matches_torch_at_any_batch(head):
    torch.manual_seed(0)
    reference = build_model("aohr", num_points=5, input_size=64, ratio=2.0, backbone=TINY_PLAIN, loss="kl", **head)
    reference = reference.eval().inference_copy()
    fast = predictor_for(reference, "onnx")
    assert fast.runtime == "onnx" and predictor_for(reference, "auto").runtime == "onnx"
    assert "predict" not in vars(reference)  # the model itself is untouched
    for batch in (1, 3):
        images = torch.rand(batch, 3, 64, 64)
        with torch.no_grad():
            expected, got = reference.predict(images), fast.predict(images)
        for a, b in zip(expected, got):  # coordinates (B, N, 2) in crop pixels, confidences (B, N)
            assert a.shape == b.shape
            assert float((a - b).abs().median()) < 1e-3


def test_graph_is_cached_by_weights_and_reused():
    model = build_model("aohr", num_points=5, input_size=64, backbone=TINY_PLAIN, head_channels=16, attn_dim=8)
    model = model.eval().inference_copy()
    predictor_for(model.inference_copy(), "onnx")
    files = sorted(cache_dir().glob("*.onnx"))
    assert len(files) == 1
    predictor_for(model.inference_copy(), "onnx")
    assert sorted(cache_dir().glob("*.onnx")) == files  # same weights, same graph
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    predictor_for(model.inference_copy(), "onnx")
    assert len(list(cache_dir().glob("*.onnx"))) == 2  # changed weights never reuse a stale graph


@pytest.mark.parametrize("arch, options", [("1dformer", {"window": 3}), ("aohr-tracker", {"decay": 0.3})])
def test_temporal_steps_match_torch_for_faces_of_different_ages(arch, options):
    from facetrack.models.temporal import TemporalState

    torch.manual_seed(0)
    encoder = {"arch": "aohr", "num_points": 68, "input_size": 64, "ratio": 1.0, "backbone": TINY_PLAIN,
               "head_channels": 16, "attn_dim": 8}
    reference = build_model(arch, encoder=encoder, **options).eval()
    with torch.no_grad():  # a fresh head is the identity: random weights make every branch count
        for p in reference.head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference = reference.inference_copy()
    fast = predictor_for(reference.inference_copy())
    assert fast.runtime == "onnx"
    state_a, state_b = reference.init_state(1), reference.init_state(1)
    for frame in range(5):  # past the window; from frame 2 a second, younger face joins the batch
        if frame == 2:
            state_a = TemporalState.cat([state_a, reference.init_state(1)])
            state_b = TemporalState.cat([state_b, reference.init_state(1)])
        images = torch.rand(state_a.batch, 3, 64, 64)
        with torch.no_grad():
            out_a, state_a = reference.step(images, state_a)
            out_b, state_b = fast.step(images, state_b)
        assert sorted(out_b) == sorted([*out_a, "decoded_coords", "decoded_conf"])  # the graph decodes, too
        for key in out_a:
            assert torch.allclose(out_a[key], out_b[key], atol=1e-4), (frame, key)
        coords, conf = reference.decode(out_a)
        assert torch.allclose(coords, out_b["decoded_coords"], atol=1e-3)
        assert torch.allclose(conf, out_b["decoded_conf"], atol=1e-4)
        for key in state_a.tensors:
            assert torch.allclose(state_a.tensors[key].float(), state_b.tensors[key].float(), atol=1e-4)
    with pytest.raises(ValueError, match="faces"):
        fast.step(torch.rand(1, 3, 64, 64), state_b)
    # the per-frame predict (track starts, detect) is the step graph from an empty history, as the model's forward is
    assert fast.predict is not reference.predict
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        coords, conf = reference.predict(images)
    got_coords, got_conf = fast.predict(images)
    assert torch.allclose(coords, got_coords, atol=1e-3) and torch.allclose(conf, got_conf, atol=1e-4)


def test_torch_runtime_and_bad_names():
    model = build_model("aohr", num_points=5, input_size=64, backbone=TINY_PLAIN, head_channels=16, attn_dim=8)
    model = model.eval().inference_copy()
    assert predictor_for(model, "torch").runtime == "torch"
    assert predictor_for(model, "torch").predict == model.predict  # the model's own method
    with pytest.raises(ValueError, match="runtime"):
        predictor_for(model, "tensorrt")
    with pytest.raises(ValueError, match="CPU"):
        predictor_for(model, "onnx", device="cuda")


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
    assert predictor_for(model, "auto").runtime == "torch"
    with pytest.raises(ImportError):
        predictor_for(model, "onnx")


def test_cli_offers_the_same_runtimes():
    from facetrack.commands import RUNTIMES as CLI_RUNTIMES
    from facetrack.models.onnx_runtime import RUNTIMES

    assert CLI_RUNTIMES == RUNTIMES


class PythonCounter(torch.nn.Module):
    """A temporal model whose output depends on a Python-side counter, which no traced graph can follow."""

    input_size = 8

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def init_state(self, batch: int = 1):
        from facetrack.models.temporal import TemporalState

        return TemporalState({"seen": torch.zeros(batch, 1)})

    def step(self, images, state):
        from facetrack.models.temporal import TemporalState

        self.calls += 1
        return {"hx": images.mean((1, 2)) * self.calls}, TemporalState({"seen": state.tensors["seen"] + 1})

    def decode(self, outputs):
        return outputs["hx"].unsqueeze(-1).repeat(1, 1, 2), outputs["hx"]


def test_a_graph_that_does_not_reproduce_torch_is_refused():
    assert predictor_for(PythonCounter(), "auto").runtime == "torch"
    with pytest.raises(RuntimeError, match="reproduce"):
        predictor_for(PythonCounter(), "onnx")


class NumpyDecoder(torch.nn.Module):
    """A per-frame model whose decoding runs in NumPy: a trace would freeze the probe's answer as a constant."""

    input_size = 8

    def forward(self, images):
        return {"images": images}

    def decode(self, outputs):
        mean = outputs["images"].numpy().mean(axis=(1, 2, 3))
        return torch.tensor(mean)[:, None, None].expand(-1, 2, 2), torch.ones(len(mean), 2)


def test_numpy_code_is_never_frozen_into_a_graph():
    assert predictor_for(NumpyDecoder(), "auto").runtime == "torch"
    with pytest.raises(RuntimeError, match="NumPy"):
        predictor_for(NumpyDecoder(), "onnx")
