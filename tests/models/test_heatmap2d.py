"""2D-heatmap baseline: heatmap resolutions of AOHR Table 1, MSE loss, training signal, prediction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrack.models import build_model
from facetrack.models.heatmap2d import Heatmap2D

TINY_HG = {"name": "hourglass", "stacks": 1, "depth": 2, "width": 16}


def tiny(**overrides) -> Heatmap2D:
    config = {"num_points": 4, "input_size": 32, "backbone": TINY_HG, "head_channels": 8}
    config.update(overrides)
    model = build_model("heatmap2d", **config)
    assert isinstance(model, Heatmap2D)
    return model


@pytest.mark.parametrize("heatmap_size, deconvs", [(None, 0), (8, 0), (4, 0), (16, 1), (32, 2), (24, 1)])
def test_heatmap_resolutions(heatmap_size, deconvs):
    model = tiny(heatmap_size=heatmap_size)
    size = heatmap_size or 8  # native resolution is F/4
    out = model(torch.rand(2, 3, 32, 32))
    assert set(out) == {"heatmap"} and out["heatmap"].shape == (2, 4, size, size)
    assert model.config["heatmap_size"] == size == model.codec.heatmap_size
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules()) == deconvs


def test_lite_backbone_native_resolution():
    model = tiny(input_size=64, backbone={"name": "lite", "channels": [8, 8, 16, 16], "blocks": [1, 1, 1],
                                          "out_channels": 16})
    assert model(torch.rand(1, 3, 64, 64))["heatmap"].shape == (1, 4, 8, 8)


def test_loss_is_weighted_mean_squared_error():
    model = tiny()
    torch.manual_seed(0)
    outputs = {"heatmap": torch.randn(2, 4, 8, 8)}
    targets = {"heatmap": torch.randn(2, 4, 8, 8), "weight": torch.tensor([[1.0, 1, 1, 1], [1, 0, 1, 1]])}
    per_point = ((outputs["heatmap"] - targets["heatmap"]) ** 2).mean(dim=(-2, -1))
    expected = (per_point * targets["weight"]).sum() / 8
    torch.testing.assert_close(model.loss(outputs, targets), expected)


def batch_targets(model, points):
    encoded = [model.encode_targets(p) for p in points]
    return {key: torch.from_numpy(np.stack([e[key] for e in encoded])) for key in encoded[0]}


def test_loss_decreases_when_overfitting_two_images(rng, overfit_losses):
    torch.manual_seed(0)
    model = tiny(heatmap_size=16)
    images = torch.rand(2, 3, 32, 32)
    targets = batch_targets(model, rng.uniform(4, 28, size=(2, 4, 2)))
    losses = overfit_losses(model, images, targets)
    assert losses[-1] < 0.5 * losses[0]


def test_predict_returns_crop_coordinates(rng, monkeypatch):
    model = tiny(heatmap_size=16)
    points = rng.uniform(3, 29, size=(2, 4, 2))
    targets = batch_targets(model, points)
    monkeypatch.setattr(model, "forward", lambda images: {"heatmap": targets["heatmap"]})
    coords, conf = model.predict(torch.rand(2, 3, 32, 32))
    assert coords.shape == (2, 4, 2) and conf.shape == (2, 4)
    np.testing.assert_allclose(coords.numpy(), points, atol=0.1)


def test_preset_is_fan_sized():
    from facetrack.models.registry import resolve

    arch, config = resolve("hm2d-hg2-256")
    assert arch == "heatmap2d" and config["heatmap_size"] == 64 and config["backbone"]["width"] == 256
