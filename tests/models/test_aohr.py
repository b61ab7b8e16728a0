"""AOHR detector: shapes, co-attention (Eq. 9-10), loss (Eq. 11), training signal, prediction, fast blocks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from facetrack.errors import ModelError
from facetrack.models import build_model
from facetrack.models.aohr import AOHR, CoAttention
from facetrack.models.blocks import DepthwiseFilter1d, PatchDeconv1d, fold_batchnorm
from facetrack.models.registry import resolve

TINY_HG = {"name": "hourglass", "stacks": 2, "depth": 2, "width": 16}
TINY_LITE = {"name": "lite", "channels": [8, 8, 16, 16], "blocks": [1, 1, 1], "expand": 2, "out_channels": 16}
TINY_PLAIN = {"name": "plain", "channels": [8, 8, 16, 16], "blocks": [1, 1, 1], "out_channels": 16}


def tiny(**overrides) -> AOHR:
    config = {"num_points": 5, "input_size": 32, "ratio": 2.0, "backbone": TINY_HG, "head_channels": 16,
              "attn_dim": 4, "head_layers": 1}
    config.update(overrides)
    model = build_model("aohr", **config)
    assert isinstance(model, AOHR)
    return model


@pytest.mark.parametrize(
    "overrides, length",
    [
        ({}, 64),
        ({"ratio": 3.0}, 96),
        ({"ratio": 0.25}, 8),  # L = F/4 = feature width: M = 1
        ({"ratio": 0.3}, 10),  # L not a multiple of the feature width: resampled to L
        ({"backbone": TINY_LITE, "input_size": 64, "ratio": 3.0, "head_separable": True}, 192),
        ({"backbone": {**TINY_LITE, "stride": 4}, "input_size": 64, "ratio": 1.0}, 64),
        ({"gamma": 0.0}, 64),
        ({"head_compress": "full"}, 64),
        ({"backbone": TINY_LITE, "input_size": 64, "head_compress": "full", "head_separable": True}, 128),
        ({"backbone": TINY_PLAIN, "input_size": 64, "head_compress": "flatten", "gamma": 0.0}, 128),
        ({"backbone": TINY_PLAIN, "input_size": 64, "head_compress": "flatten", "gamma": 0.0, "point_channels": 2}, 128),
    ],
)
def test_output_shapes(overrides, length):
    model = tiny(**overrides)
    images = torch.rand(3, 3, model.input_size, model.input_size)
    out = model(images)
    assert set(out) == {"hx", "hy"}
    assert out["hx"].shape == out["hy"].shape == (3, 5, length)
    assert model.length == model.codec.length == length
    sx, sy = model.encode_1d(images)
    assert sx.shape == sy.shape == (3, 5, length)


def test_decoders_start_as_identity_and_forward_composes():
    model = tiny().eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        sx, sy = model.encode_1d(images)
        out = model(images)
        assert torch.equal(out["hx"], model.decode_1d(sx, sy)["hx"])
        torch.testing.assert_close(out["hx"], sx)
        torch.testing.assert_close(out["hy"], sy)


def test_deconvolution_factor_follows_the_paper():
    model = build_model("aohr", num_points=3, input_size=256, ratio=3.0, head_channels=16, attn_dim=8,
                        backbone={"name": "hourglass", "stacks": 1, "depth": 1, "width": 8})
    assert model.feature_size == 64 and model.length == 768 and model.upsample == 12  # M = L / (F/4)
    assert model.deconv_x.weight.shape == (16, 3, 12)


def reference_coattention(dx, dy, P, Q, gamma):
    """Eq. 9-10 written channel by channel with explicit matrices."""
    d = P.shape[0]
    out_x, out_y = torch.empty_like(dx), torch.empty_like(dy)
    for b in range(dx.shape[0]):
        for k in range(dx.shape[1]):
            Dx = dx[b, k].T  # (W, d)
            Dy = dy[b, k]  # (d, H)
            w_xy = torch.softmax(Dy.T @ P @ Dx.T / math.sqrt(d), dim=1)  # (H, W)
            w_yx = torch.softmax(Dx @ Q @ Dy / math.sqrt(d), dim=1)  # (W, H)
            out_x[b, k] = (Dx + gamma * w_yx @ Dy.T).T
            out_y[b, k] = Dy + gamma * (w_xy @ Dx).T
    return out_x, out_y


def test_coattention_matches_equations_9_and_10():
    torch.manual_seed(0)
    attn = CoAttention(dim=4, gamma=0.4)
    with torch.no_grad():
        attn.P.copy_(torch.randn(4, 4))
        attn.Q.copy_(torch.randn(4, 4))
    dx, dy = torch.randn(2, 3, 4, 7), torch.randn(2, 3, 4, 7)
    got_x, got_y = attn(dx, dy)
    want_x, want_y = reference_coattention(dx, dy, attn.P.detach(), attn.Q.detach(), 0.4)
    torch.testing.assert_close(got_x, want_x)
    torch.testing.assert_close(got_y, want_y)


def test_gamma_zero_removes_the_coattention():
    with_attn, without = tiny(gamma=0.4), tiny(gamma=0.0)
    assert without.coattention is None
    assert not any("coattention" in key for key in without.state_dict())
    missing = without.load_state_dict(with_attn.state_dict(), strict=False)
    assert missing.missing_keys == [] and set(missing.unexpected_keys) == {"coattention.P", "coattention.Q"}
    with_attn.eval(), without.eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(with_attn(images)["hx"], without(images)["hx"])
        with_attn.coattention.gamma = 0.0  # gamma = 0 in Eq. 10 is exactly the model without attention
        torch.testing.assert_close(with_attn(images)["hx"], without(images)["hx"])


def test_loss_is_equation_11_with_weights():
    model = tiny()
    torch.manual_seed(1)
    outputs = {"hx": torch.randn(2, 5, 64), "hy": torch.randn(2, 5, 64)}
    targets = {"hx": torch.randn(2, 5, 64), "hy": torch.randn(2, 5, 64), "weight": torch.ones(2, 5)}
    targets["weight"][1, 3] = 0.0
    per_point = ((outputs["hx"] - targets["hx"]) ** 2).sum(-1) + ((outputs["hy"] - targets["hy"]) ** 2).sum(-1)
    expected = (per_point[0].sum() + per_point[1].sum() - per_point[1, 3]) / 2
    torch.testing.assert_close(model.loss(outputs, targets), expected)


def batch_targets(model, points):
    encoded = [model.encode_targets(p) for p in points]
    return {key: torch.from_numpy(np.stack([e[key] for e in encoded])) for key in encoded[0]}


def test_loss_decreases_when_overfitting_two_images(rng, overfit_losses):
    torch.manual_seed(0)
    model = tiny(ratio=1.0)
    images = torch.rand(2, 3, 32, 32)
    points = rng.uniform(4, 28, size=(2, 5, 2))
    targets = batch_targets(model, points)
    losses = overfit_losses(model, images, targets)
    assert losses[-1] < 0.5 * losses[0]


def test_predict_returns_crop_coordinates(rng, monkeypatch):
    model = tiny(ratio=3.0)
    model.train()
    points = rng.uniform(2, 30, size=(2, 5, 2))
    targets = batch_targets(model, points)
    # A network that outputs exactly the targets must be decoded back to the crop-pixel landmarks.
    monkeypatch.setattr(model, "forward", lambda images: {"hx": targets["hx"], "hy": targets["hy"]})
    coords, conf = model.predict(torch.rand(2, 3, 32, 32))
    assert coords.shape == (2, 5, 2) and conf.shape == (2, 5)
    np.testing.assert_allclose(coords.numpy(), points, atol=0.02)
    assert model.training  # predict restores the mode it found


def test_predict_on_real_network_is_in_eval_mode_without_grad():
    model = tiny()
    coords, conf = model.predict(torch.rand(1, 3, 32, 32))
    assert not coords.requires_grad and coords.shape == (1, 5, 2)
    assert torch.isfinite(coords).all() and ((conf >= 0) & (conf <= 1)).all()
    assert (coords >= -0.5).all() and (coords <= 31.5).all()


def test_bad_inputs_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match="32x32"):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ModelError, match="head_compress"):
        tiny(head_compress="pool")
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        model.encode_targets(np.zeros((6, 2)))


def test_patch_deconv_and_depthwise_filter_equal_the_generic_ops():
    torch.manual_seed(0)
    deconv = PatchDeconv1d(8, 5, 3)
    x = torch.randn(2, 8, 7)
    torch.testing.assert_close(deconv(x), nn.functional.conv_transpose1d(x, deconv.weight, deconv.bias, stride=3))
    filt = DepthwiseFilter1d(5, 5)
    y = torch.randn(2, 5, 30)
    torch.testing.assert_close(filt(y), nn.functional.conv1d(y, filt.weight, filt.bias, padding=2, groups=5))


def test_folding_batchnorm_keeps_outputs():
    model = tiny(backbone=TINY_LITE, input_size=64, head_separable=True)
    for module in model.modules():  # non-trivial statistics, so a wrong fold would show
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    model.eval()
    fast = model.inference_copy()
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in fast.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(images)["hx"], model(images)["hx"], atol=1e-5, rtol=1e-4)
    assert fold_batchnorm(nn.Sequential(nn.ReLU())) is not None


def test_presets_have_the_documented_sizes():
    model = build_model("aohr-lite-128")
    assert model.input_size == 128 and model.length == 384 and model.config["backbone"]["name"] == "lite"
    assert sum(p.numel() for p in model.parameters()) < 1_500_000
    hg_config = resolve("aohr-hg2-256")[1]
    assert hg_config["backbone"] == {"name": "hourglass", "stacks": 2, "depth": 4, "width": 256}
    assert hg_config["input_size"] == 256 and hg_config["ratio"] == 3.0


def test_flatten_head_is_a_shared_linear_map_of_each_landmarks_maps():
    model = tiny(backbone=TINY_PLAIN, input_size=64, head_compress="flatten", gamma=0.0, point_channels=2).eval()
    images = torch.rand(2, 3, 64, 64)
    features = model.backbone(model.normalize(images))
    maps = model.point_maps(features)  # (B, N * c, S, S), landmark k owns channels [k c, (k + 1) c)
    k, c = 3, 2
    own = maps[:, k * c:(k + 1) * c].flatten(1)
    sx, sy = model.encode_1d(images)
    assert torch.allclose(sx[:, k], own @ model.fc_x.weight.T + model.fc_x.bias, atol=1e-5)
    assert torch.allclose(sy[:, k], own @ model.fc_y.weight.T + model.fc_y.bias, atol=1e-5)
    with pytest.raises(ModelError, match="gamma = 0"):
        tiny(backbone=TINY_PLAIN, input_size=64, head_compress="flatten", gamma=0.4)


def test_plain_backbone_options_and_refusals():
    model = tiny(backbone=TINY_PLAIN, input_size=64)
    assert model.config["backbone"] == {"name": "plain", **{k: v for k, v in TINY_PLAIN.items() if k != "name"}}
    assert model.feature_size == 8  # output stride 8
    with pytest.raises(ModelError, match="plain backbone"):
        tiny(backbone={**TINY_PLAIN, "blocks": [1, 1]}, input_size=64)
    with pytest.raises(ModelError, match="no option"):
        tiny(backbone={**TINY_PLAIN, "stride": 4}, input_size=64)
