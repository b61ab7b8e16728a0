"""SLPT / DSLPT: patch resampling, Eq. 4.7 coordinates, the coarse-to-fine patch rules, the losses (Eqs. 4.8,
5.8-5.10), uncertainty as confidence, early exit, the backbone start from aohr-68, hub round trip and the Landmarker."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facetrack.models.hub import load_model, save_model
from facetrack.models.registry import build_model
from facetrack.models.slpt import DSLPT, SLPT, mean_shape_in_crop, sample_patches

TINY = {"input_size": 64, "backbone": {"name": "plain", "channels": [8, 8, 16, 16], "blocks": [0, 1, 0],
                                       "out_channels": 16},
        "levels": [4, 8], "level_channels": 4, "patch_size": 3, "dim": 16, "heads": 2, "layers": 2, "mlp_ratio": 1.0}


def tiny(arch: str = "dslpt", **extra) -> SLPT:
    torch.manual_seed(0)
    return build_model(arch, **{**TINY, **extra})


def test_patches_sample_the_feature_map_where_asked():
    # a map whose value is the crop-pixel x (channel 0) and y (channel 1) of each cell centre (stride 4, F = 32)
    size, stride = 32, 4
    centres = (torch.arange(size // stride, dtype=torch.float32) + 0.5) * stride - 0.5
    fmap = torch.stack([centres.expand(8, 8), centres[:, None].expand(8, 8)])[None]
    patches = sample_patches(fmap, torch.tensor([[[13.5, 17.5]]]), torch.tensor([[6.0]]), 3, size)
    grid = patches.reshape(2, 3, 3)
    assert torch.allclose(grid[0, 1], torch.tensor([11.5, 13.5, 15.5]), atol=1e-4)  # x across a row
    assert torch.allclose(grid[1, :, 0], torch.tensor([15.5, 17.5, 19.5]), atol=1e-4)  # y down a column
    outside = sample_patches(fmap, torch.tensor([[[-50.0, -50.0]]]), torch.tensor([[4.0]]), 3, size)
    assert outside.abs().max() == 0  # zeros outside the crop


def test_coarse_to_fine_patches_and_global_coordinates():
    slpt = tiny("slpt")
    slpt.train()
    out = slpt(torch.rand(2, 3, 64, 64))
    assert out["coords"].shape == (3, 2, 2, 68, 2) and "sigma" not in out
    sides = out["side"][:, 0, 0]
    assert torch.allclose(sides, torch.tensor([16.0, 8.0, 4.0]))  # W/4 of the crop, then halved (Algorithm 1)
    # Eq. 4.7: x = x_lt + w t
    assert torch.allclose(out["coords"], out["corner"][:, None] + out["side"][:, None, ..., None] * out["t"])
    # stage 1 starts from the mean shape: its patches are centred there
    start = torch.tensor(mean_shape_in_crop("ibug68", 64, 1.25), dtype=torch.float32)
    assert torch.allclose(out["corner"][0, 0] + 8.0, start, atol=1e-5)

    dslpt = tiny()
    dslpt.train()
    out = dslpt(torch.rand(2, 3, 64, 64))
    ratio = out["side"][1:] / out["side"][:-1]
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 0.7 + 1e-6  # clipped to [L_down, L_up] (section 5.2.2)
    sigma = out["sigma"][0, -1].detach()
    wanted = (6 * 2.0 * out["side"][0] * sigma.amax(-1)).clamp(0.5 * 16, 0.7 * 16)
    assert torch.allclose(out["side"][1], wanted)


def test_losses_follow_the_equations():
    slpt = tiny("slpt")
    slpt.train()
    out = slpt(torch.rand(2, 3, 64, 64))
    gt = out["coords"][-1, -1].detach() + torch.randn(2, 68, 2)
    weight = torch.ones(2, 68)
    weight[1, 3] = 0
    d = (gt[:, 36] - gt[:, 45]).norm(dim=-1)
    expected = ((out["coords"] - gt).norm(dim=-1) / d[:, None] * weight).sum() / (weight.sum() * 3 * 2)
    assert slpt.loss(out, {"points": gt, "weight": weight}).item() == pytest.approx(expected.item(), rel=1e-5)

    # NLL in patch coordinates (Eq. 5.10): the Gaussian NLL at fixed error is smallest where sigma = |error|
    dslpt = tiny()
    dslpt.train()
    out = dslpt(torch.rand(1, 3, 64, 64))
    error = 0.1
    gt = out["corner"][-1] + out["side"][-1][..., None] * (out["t"][-1, -1].detach() + error)
    losses = []
    for s in (0.05, 0.1, 0.2):
        fixed = {**out, "sigma": torch.full_like(out["sigma"], s),
                 "t": out["t"][-1, -1].detach().expand_as(out["t"]), "corner": out["corner"][-1].expand_as(
                     out["corner"]), "side": out["side"][-1].expand_as(out["side"])}
        losses.append(dslpt.loss(fixed, {"points": gt}).item())
    assert losses[1] < losses[0] and losses[1] < losses[2]
    assert losses[1] == pytest.approx(math.log(0.1) + 0.5, abs=1e-4)
    laplace = tiny(distribution="laplace")
    laplace.train()
    assert math.isfinite(laplace.loss(laplace(torch.rand(1, 3, 64, 64)), {"points": gt}).item())


def test_training_reduces_the_loss():
    model = tiny()
    model.train()
    images = torch.rand(4, 3, 64, 64)
    gt = model.initial_shape.expand(4, -1, -1) + torch.randn(4, 68, 2)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for _ in range(30):
        loss = model.loss(model(images), {"points": gt})
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 0.5


def test_confidence_falls_with_uncertainty_and_early_exit():
    model = tiny().eval()
    out = {"coords": torch.zeros(1, 3, 2), "side": torch.full((1, 3), 10.0),
           "sigma": torch.tensor([[[0.01, 0.01], [0.1, 0.1], [1.0, 1.0]]])}
    conf = model.confidence(out)
    assert conf[0, 0] > conf[0, 1] > conf[0, 2] and 0 < conf.min() and conf.max() <= 1
    images = torch.rand(2, 3, 64, 64)
    full, _ = model.predict(images)
    model.exit_stage = 1
    first, _ = model.predict(images)
    model.train()
    model.encoder.eval()  # BatchNorm with its running statistics, as in predict
    staged = model(images)["coords"]
    assert torch.allclose(first, staged[0, -1], atol=1e-5) and torch.allclose(full, staged[-1, -1], atol=1e-5)
    assert torch.equal(tiny("slpt").eval().predict(images)[1], torch.ones(2, 68))


def test_options_are_checked():
    with pytest.raises(Exception, match="dynamic patch rule needs"):
        tiny("slpt", patch_rule="dynamic")
    with pytest.raises(Exception, match="distribution"):
        tiny(distribution="cauchy")
    with pytest.raises(Exception, match="no map at stride"):
        tiny(levels=[16])


def test_backbone_starts_from_aohr68_and_hub_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    model = build_model("dslpt-68")
    assert isinstance(model, DSLPT) and model.input_size == 160
    aohr = load_model("aohr-68")
    for key, value in aohr.backbone.state_dict().items():
        assert torch.equal(model.encoder.net.state_dict()[key], value)
    with torch.no_grad():
        model.structure.add_(1.0)
    save_model(model, tmp_path / "d")
    back = load_model(tmp_path / "d.safetensors")
    images = torch.rand(1, 3, 160, 160)
    a, ca = model.predict(images)
    b, cb = back.predict(images)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ca, cb, atol=1e-5)
    fast = model.inference_copy()
    c, _ = fast.predict(images)
    assert torch.allclose(a, c, atol=1e-3)


def test_landmarker_runs_the_model():
    from facetrack.landmarker import Landmarker

    model = tiny().eval()
    image = np.random.default_rng(0).integers(0, 255, (120, 100, 3), dtype=np.uint8)
    points, conf = Landmarker(model).predict_boxes(image, np.array([[20.0, 30.0, 80.0, 100.0]]))
    assert points.shape == (1, 68, 2) and conf.shape == (1, 68) and np.isfinite(points).all()


@pytest.mark.parametrize("recipe", ["slpt68_cpu", "dslpt68_cpu", "slpt68_gpu", "dslpt68_gpu"])
def test_recipes_name_registered_models(recipe):
    from pathlib import Path

    from facetrack.models.registry import resolve
    from facetrack.train.config import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / f"{recipe}.yaml"
    config = load_config(path)
    arch, full = resolve(config.model.arch, **config.model.config)
    assert arch == ("dslpt" if recipe.startswith("d") else "slpt") and config.trainer.resume == "auto"
    assert full["stages"] == 3 and full["patch_size"] == 7
