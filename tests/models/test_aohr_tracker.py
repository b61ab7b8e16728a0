"""AOHR tracker (section 4.2): Eq. 13's recursion equals the explicit sum, lambda = 0 is per-frame, streaming
equals the clip forward, causality, identity at init, hub round trip and a tiny overfit (Eq. 14)."""
from __future__ import annotations

import math

import pytest
import torch

from facetrack.errors import ModelError
from facetrack.models import build_model, load_model, save_model
from facetrack.models.temporal import AOHRTracker, exponential_fusion

ENCODER = {"arch": "aohr", "num_points": 5, "input_size": 32, "ratio": 0.75,
           "backbone": {"name": "hourglass", "stacks": 1, "depth": 2, "width": 8}, "head_channels": 8,
           "attn_dim": 4, "head_layers": 1}
N, L = 5, 24


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(decay: float = 0.3, seed: int = 0, randomize: bool = True, **options) -> AOHRTracker:
    torch.manual_seed(seed)
    model = build_model("aohr-tracker", encoder=ENCODER, decay=decay, channels=6, kernel=3, **options)
    assert isinstance(model, AOHRTracker)
    model = model.double().eval()
    if randomize:  # CNN4 starts at zero (identity tracker): give it weights so the refinement acts
        with torch.no_grad():
            for p in model.head.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
    return model


def features(b: int = 2, t: int = 25, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, t, N, L, generator=g, dtype=torch.float64),
            torch.randn(b, t, N, L, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("decay", [0.0, 0.3, 1.0])
def test_recursion_equals_eq13_explicit_sum(decay):
    u = torch.randn(2, 9, 3, 4, dtype=torch.float64)
    v = exponential_fusion(u, decay)
    for t in range(9):
        explicit = u[:, t] + sum(decay ** (t - tau) * u[:, tau] for tau in range(t))
        torch.testing.assert_close(v[:, t], explicit)


@pytest.mark.parametrize("decay", [0.0, 0.3, 0.9])
def test_streaming_equals_clip_forward(decay):
    model = make(decay)
    sx, sy = features()
    with torch.no_grad():
        clip = model.forward_features(sx, sy)
        state = model.init_state(2)
        frames = []
        for i in range(sx.shape[1]):
            out, state = model.step_features(sx[:, i], sy[:, i], state)
            frames.append(out)
    assert set(clip) == {"hx", "hy"} and clip["hx"].shape == (2, 25, N, L)
    for key in clip:
        torch.testing.assert_close(torch.stack([f[key] for f in frames], 1), clip[key], atol=1e-5, rtol=0)
    assert set(state.tensors) == {"vx", "vy"} and state.tensors["vx"].shape == (2, 6, L)  # V_(t-1) only


def test_head_matches_written_out_eq13_and_refinement():
    model = make(0.3)
    head = model.head
    sx, sy = features(b=1, t=6)
    with torch.no_grad():
        ex, _ = model._decode_1d(sx, sy)  # E_t: the detector's heatmaps
        out = model.forward_features(sx, sy)
        u = torch.stack([head.cnn3["x"](ex[:, t]) for t in range(6)], 1)
        for t in range(6):
            v = u[:, t] + sum(0.3 ** (t - tau) * u[:, tau] for tau in range(t))
            torch.testing.assert_close(out["hx"][:, t], ex[:, t] + head.cnn4["x"](v))


def test_zero_decay_is_per_frame_and_positive_decay_is_not():
    sx, sy = features(t=8)
    sx2 = sx.clone()
    sx2[:, 2] += torch.randn(N, L, dtype=torch.float64)
    for decay in (0.0, 0.3):
        model = make(decay)
        with torch.no_grad():
            a, b = model.forward_features(sx, sy), model.forward_features(sx2, sy)
        later = (a["hx"][:, 3:] - b["hx"][:, 3:]).abs().max()
        assert (later == 0) if decay == 0.0 else (later > 1e-4)
        torch.testing.assert_close(a["hx"][:, :2], b["hx"][:, :2], atol=0, rtol=0)  # causal


def test_fresh_tracker_outputs_the_detector_heatmaps():
    torch.manual_seed(0)
    encoder = build_model("aohr", **{k: v for k, v in ENCODER.items() if k != "arch"})
    encoder(torch.rand(4, 3, 32, 32))
    encoder.eval()
    model = AOHRTracker.from_encoder(encoder, decay=0.3).eval()
    images = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        out = model.forward_sequence(images)
        ref = encoder(images[0])
    torch.testing.assert_close(out["hx"][0], ref["hx"], atol=1e-5, rtol=0)
    coords, conf = model.decode(out)
    assert coords.shape == (1, 4, N, 2) and conf.shape == (1, 4, N)


def test_hub_round_trip(tmp_path):
    model = make(seed=2).float()
    save_model(model, tmp_path / "tracker")
    loaded = load_model(tmp_path / "tracker")
    assert isinstance(loaded, AOHRTracker) and loaded.config == model.config and loaded.config["decay"] == 0.3
    images = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.forward_sequence(images)["hy"], loaded.forward_sequence(images)["hy"])


def test_invalid_options():
    with pytest.raises(ModelError, match="decay"):
        build_model("aohr-tracker", encoder=ENCODER, decay=1.5)
    with pytest.raises(ModelError, match="AOHR"):
        build_model("aohr-tracker", encoder={"arch": "heatmap2d", "num_points": 5, "input_size": 32,
                                             "backbone": {"name": "hourglass", "stacks": 1, "depth": 2, "width": 8}})


def test_tiny_clip_overfits_with_eq14():
    torch.manual_seed(0)
    model = build_model("aohr-tracker", encoder=ENCODER, channels=6, kernel=3)
    images = torch.rand(1, 4, 3, 32, 32)
    points = torch.rand(4, N, 2).numpy() * 20 + 6
    encoded = [model.encode_targets(p) for p in points]
    targets = {k: torch.stack([torch.from_numpy(e[k]) for e in encoded])[None] for k in ("hx", "hy", "weight")}
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(40):
        loss = model.loss(model.forward_sequence(images), targets)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert math.isfinite(losses[-1]) and losses[-1] < 0.5 * losses[0]


def test_lite_preset():
    model = build_model("aohr-tracker-lite-128")
    assert model.config["encoder"]["backbone"]["name"] == "lite" and model.config["decay"] == 0.3
