"""RLE: the RealNVP flow (invertible, exact log-det, a normalised density), the residual log-likelihood, the
sigma -> confidence mapping, shapes, training signal and the hub round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facetrack.errors import ModelError
from facetrack.models import build_model, load_model, save_model
from facetrack.models.rle import RLE, RealNVP, sigma_to_confidence

TINY_LITE = {"name": "lite", "channels": [8, 8, 16, 16], "blocks": [1, 1, 1], "expand": 2, "out_channels": 16}
TINY = {"num_points": 5, "input_size": 32, "sigma_hidden": 8, "flow_layers": 4, "flow_hidden": 16,
        "encoder": {"backbone": TINY_LITE, "ratio": 2.0, "head_channels": 16, "attn_dim": 8}}


def tiny(**overrides) -> RLE:
    torch.manual_seed(0)
    model = build_model("rle", **{**TINY, **overrides})
    assert isinstance(model, RLE)
    return model


def batch(model: RLE, points: np.ndarray, visible: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    encoded = [model.encode_targets(p, visible) for p in points]
    return {k: torch.stack([torch.from_numpy(e[k]) for e in encoded]) for k in encoded[0]}


# ---------------------------------------------------------------------------------------------- the flow

def test_realnvp_is_invertible():
    torch.manual_seed(0)
    flow = RealNVP(2, layers=6, hidden=16, init_scale=1.0).double()  # far from the identity
    x = torch.randn(50, 2, dtype=torch.float64) * 3
    z, _ = flow.inverse(x)
    assert not torch.allclose(z, x, atol=1e-2)
    assert torch.allclose(flow(z), x, atol=1e-10)
    assert torch.allclose(flow.inverse(flow(x))[0], x, atol=1e-10)


def test_realnvp_log_det_matches_autograd_jacobian():
    torch.manual_seed(1)
    flow = RealNVP(2, layers=4, hidden=16, init_scale=1.0).double()
    for point in torch.randn(5, 2, dtype=torch.float64):
        jac = torch.autograd.functional.jacobian(lambda p: flow.inverse(p[None])[0][0], point)
        _, log_det = flow.inverse(point[None])
        assert log_det.item() == pytest.approx(torch.linalg.slogdet(jac).logabsdet.item(), abs=1e-10)


def test_realnvp_density_integrates_to_one():
    torch.manual_seed(2)
    flow = RealNVP(2, layers=6, hidden=16, init_scale=0.5).double()
    step = 0.08
    axis = torch.arange(-10, 10, step, dtype=torch.float64) + step / 2
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = flow.log_prob(grid).exp()
    assert (density.sum() * step**2).item() == pytest.approx(1.0, abs=5e-3)


def test_realnvp_starts_as_the_standard_normal():
    flow = RealNVP(2)
    x = torch.randn(100, 2)
    reference = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2)).log_prob(x)
    assert torch.allclose(flow.log_prob(x), reference, atol=0.05)


def test_realnvp_rejects_one_dimension():
    with pytest.raises(ValueError, match="dim >= 2"):
        RealNVP(1)


# -------------------------------------------------------------------------------- the likelihood and loss

def test_residual_nll_is_laplace_times_gaussian_when_the_flow_is_the_identity():
    model = tiny()
    for p in model.flow.parameters():
        torch.nn.init.zeros_(p)  # s = t = 0: G is exactly N(0, I)
    mu = torch.tensor([[[10.0, 12.0], [5.0, 5.0]]])
    sigma = torch.tensor([[[2.0, 0.5], [1.0, 4.0]]])
    gt = torch.tensor([[[11.0, 11.0], [5.0, 9.0]]])
    nll = model.residual_nll({"coords": mu, "sigma": sigma}, gt, torch.ones(1, 2))
    u = (gt - mu) / sigma
    expected = (sigma.log() + u.abs() + math.log(2)).sum(-1) + 0.5 * u.pow(2).sum(-1) + math.log(2 * math.pi)
    assert torch.allclose(nll, expected, atol=1e-5)


def test_missing_points_give_a_finite_loss_and_no_gradient_through_them(rng):
    model = tiny()
    points = rng.uniform(4, 28, size=(2, 5, 2))
    points[0, 1] = np.nan
    targets = batch(model, points, np.array([True, True, False, True, True]))
    assert targets["weight"][0].tolist() == [1, 0, 0, 1, 1]
    outputs = model(torch.rand(2, 3, 32, 32))
    loss = model.loss(outputs, targets)
    assert torch.isfinite(loss)
    grad = torch.autograd.grad(loss, outputs["sigma"])[0]
    assert torch.all(grad[:, 2] == 0) and torch.all(grad[0, 1] == 0) and torch.any(grad[0, 0] != 0)


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread; more only fight over a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("heatmap_weight", [0.0, 1.0])
def test_overfits_a_tiny_batch(rng, heatmap_weight, one_thread):
    model = tiny(heatmap_weight=heatmap_weight)
    images = torch.rand(4, 3, 32, 32)
    targets = batch(model, rng.uniform(6, 26, size=(4, 5, 2)))
    assert ("hx" in targets) == (heatmap_weight > 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, errors = [], []
    for _ in range(60):
        outputs = model(images)
        loss = model.loss(outputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        errors.append((outputs["coords"] - targets["coords"]).abs().mean().item())
    assert losses[-1] < losses[0] - 10  # nats summed over 5 points
    assert errors[-1] < 0.5 * errors[0]
    # The calibration (starting at 1) moves towards the mean |u| of the training batches.
    u = model.normalised_residual(outputs, targets["coords"], targets["weight"]).abs().mean((0, 1))
    assert torch.all(u < 0.5) and torch.all((model.residual_scale < 0.9) & (model.residual_scale > u))


# ------------------------------------------------------------------------------------ sigma -> confidence

def test_sigma_to_confidence_is_the_laplace_mass_and_monotone():
    sigma = torch.logspace(-3, 3, 200, dtype=torch.float64)
    conf = sigma_to_confidence(sigma, 2.5)
    assert torch.all((conf >= 0) & (conf <= 1))
    assert torch.all(conf[1:] <= conf[:-1])  # decreasing in sigma,
    unsaturated = conf[:-1] < 1 - 1e-12
    assert unsaturated.sum() > 120 and torch.all(conf[1:][unsaturated] < conf[:-1][unsaturated])  # strictly
    laplace = torch.distributions.Laplace(torch.zeros(()), sigma)
    mass = laplace.cdf(torch.tensor(2.5, dtype=torch.float64)) - laplace.cdf(torch.tensor(-2.5, dtype=torch.float64))
    assert torch.allclose(conf, mass, atol=1e-9)
    assert sigma_to_confidence(torch.tensor([0.0]), 1.0).item() == 1.0  # no NaN at sigma = 0
    assert sigma_to_confidence(torch.tensor([1e9]), 1.0).item() == pytest.approx(1e-9)


def test_decode_confidence_is_the_product_of_the_axes_of_the_calibrated_scale():
    model = tiny()
    model.residual_scale.copy_(torch.tensor([0.5, 2.0]))
    sigma = torch.tensor([[[0.5, 1.0], [10.0, 0.5], [50.0, 50.0]]])
    coords, conf = model.decode({"coords": torch.zeros(1, 3, 2), "sigma": sigma})
    per_axis = sigma_to_confidence(sigma * torch.tensor([0.5, 2.0]), model.tau_pixels)
    assert model.tau_pixels == pytest.approx(0.02 * 32)
    assert torch.allclose(conf, per_axis[..., 0] * per_axis[..., 1])
    assert conf[0, 0] > conf[0, 1] > conf[0, 2]


# ----------------------------------------------------------------------------------- shapes, config, hub

def test_output_shapes_and_prediction_ranges():
    model = tiny()
    images = torch.rand(3, 3, 32, 32)
    out = model(images)
    assert out["hx"].shape == out["hy"].shape == (3, 5, 64)
    assert out["coords"].shape == out["sigma"].shape == (3, 5, 2)
    assert torch.all(out["sigma"] > 0) and torch.all(out["sigma"] <= 32 * (1 + 1e-4))
    assert torch.all((out["coords"] >= -0.5) & (out["coords"] <= 31.5))  # an expectation over the crop's bins
    coords, conf = model.predict(images)
    assert coords.shape == (3, 5, 2) and conf.shape == (3, 5) and torch.all((conf >= 0) & (conf <= 1))
    mu, sigma = model.predict_sigma(images)
    assert torch.equal(mu, coords) and sigma.shape == (3, 5, 2) and model.training


def test_bin_pixels_follow_the_codec_mapping():
    from facetrack.codecs.heatmap1d import bins_to_pixels

    model = tiny()
    expected = bins_to_pixels(torch.arange(model.length, dtype=torch.float32), model.codec.ratio)
    assert torch.allclose(model.bin_pixels, expected)


def test_config_rebuilds_the_same_architecture():
    model = tiny()
    again = build_model(model.arch, **model.config)
    assert again.config == model.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert model.config["encoder"]["loss"] == "kl" and "num_points" not in model.config["encoder"]


@pytest.mark.parametrize("overrides, message", [
    ({"encoder": {"loss": "l2"}}, "loss 'kl'"),
    ({"encoder": {"num_points": 3}}, "num_points"),
    ({"tau": 0.0}, "tau"),
    ({"heatmap_weight": -1.0}, "heatmap_weight"),
])
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(ModelError, match=message):
        build_model("rle", **{**TINY, **overrides})


def test_calibration_is_a_running_mean_of_the_residual_scale():
    model = tiny()
    mu = torch.zeros(1, 4, 2)
    outputs = {"coords": mu, "sigma": torch.full((1, 4, 2), 2.0)}
    gt = torch.tensor([[[1.0, 4.0], [3.0, 4.0], [100.0, 100.0], [1.0, 4.0]]])
    weight = torch.tensor([[1.0, 1.0, 0.0, 1.0]])  # the outlier is not a landmark with ground truth
    for _ in range(2000):
        model.update_calibration(model.normalised_residual(outputs, gt, weight), weight)
    assert torch.allclose(model.residual_scale, torch.tensor([5 / 6, 2.0]), atol=1e-4)
    before = model.residual_scale.clone()
    model.eval()
    model.loss({**outputs, "hx": torch.zeros(1, 4, 64), "hy": torch.zeros(1, 4, 64)},
               {"coords": gt, "weight": weight, "hx": torch.ones(1, 4, 64), "hy": torch.ones(1, 4, 64)})
    assert torch.equal(model.residual_scale, before)  # evaluation never moves it


def test_hub_round_trip(tmp_path):
    model = tiny()
    model(torch.rand(4, 3, 32, 32))  # BatchNorm statistics away from their defaults
    model.residual_scale.copy_(torch.tensor([0.3, 0.4]))  # the calibration is saved with the weights
    model.eval()
    save_model(model, tmp_path / "rle", {"crop": {"scale": 1.25}})
    loaded = load_model(tmp_path / "rle")
    assert isinstance(loaded, RLE) and loaded.config == model.config
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a, b = model(images), loaded(images)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(loaded.residual_scale, model.residual_scale)
    assert torch.equal(loaded.predict(images)[1], model.predict(images)[1])


def test_inference_copy_keeps_the_outputs():
    model = tiny()
    model(torch.rand(4, 3, 32, 32))
    model.eval()
    images = torch.rand(2, 3, 32, 32)
    fast = model.inference_copy()
    with torch.no_grad():
        a, b = model(images), fast(images)
    assert torch.allclose(a["coords"], b["coords"], atol=1e-4) and torch.allclose(a["sigma"], b["sigma"], rtol=1e-4)
