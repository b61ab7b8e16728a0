"""Confidence pseudo-labels from RLE: shapes, agreement with sigma, sequences, resizing, the report that checks
a label set, and the RLE recipe trained end to end by ``facetrack train``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from facetrack.models import build_model, load_model
from facetrack.models.rle import RLE, sigma_to_confidence
from facetrack.train.confidence_labels import (
    confidence_labels, confidence_report, evaluate_confidence, sequence_confidence_labels,
)

REPO = Path(__file__).resolve().parents[2]
TINY_LITE = {"name": "lite", "channels": [8, 8, 16, 16], "blocks": [1, 1, 1], "expand": 2, "out_channels": 16}
TINY_RLE = {"input_size": 32, "sigma_hidden": 8, "flow_layers": 2, "flow_hidden": 8,
            "encoder": {"backbone": TINY_LITE, "ratio": 2.0, "head_channels": 16, "attn_dim": 8}}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(num_points: int = 5) -> RLE:
    torch.manual_seed(0)
    model = build_model("rle", num_points=num_points, **TINY_RLE)
    model(torch.rand(4, 3, 32, 32))  # BatchNorm statistics away from the defaults
    # Make sigma depend on the image, so the labels differ between frames.
    with torch.no_grad():
        for head in (model.sigma_x, model.sigma_y):
            head[-1].weight.normal_(0, 1.0)
    return model.eval()


def test_labels_are_the_per_axis_laplace_mass_of_sigma():
    model = tiny()
    crops = torch.rand(6, 3, 32, 32)
    cx, cy = confidence_labels(model, crops)
    assert cx.shape == cy.shape == (6, 5)
    assert torch.all((cx >= 0) & (cx <= 1)) and torch.all((cy >= 0) & (cy <= 1))
    _, sigma = model.predict_sigma(crops)
    assert torch.allclose(cx, sigma_to_confidence(sigma[..., 0], model.tau_pixels))
    assert torch.allclose(cy, sigma_to_confidence(sigma[..., 1], model.tau_pixels))
    assert cx.std() > 0  # the labels follow the image, not a constant
    wide_x, _ = confidence_labels(model, crops, tau=4 * model.tau_pixels)
    assert torch.all(wide_x >= cx)  # a larger radius can only hold more probability


def test_chunking_and_resizing_do_not_change_the_labels():
    model = tiny()
    crops = torch.rand(5, 3, 32, 32)
    whole = confidence_labels(model, crops)
    chunked = confidence_labels(model, crops, batch_size=2)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, chunked))
    # A 64 px crop of the same geometry is resampled to the model's 32 px.
    big = crops.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    resized = confidence_labels(model, big)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(whole, resized))


def test_sequence_labels_are_frame_by_frame():
    model = tiny()
    clips = torch.rand(2, 3, 3, 32, 32)
    cx, cy = sequence_confidence_labels(model, clips)
    assert cx.shape == cy.shape == (2, 3, 5)
    for b in range(2):
        fx, fy = confidence_labels(model, clips[b])
        assert torch.allclose(cx[b], fx, atol=1e-6) and torch.allclose(cy[b], fy, atol=1e-6)
    with pytest.raises(ValueError, match="clips"):
        sequence_confidence_labels(model, clips[0])


def test_bad_inputs_are_refused():
    model = tiny()
    with pytest.raises(TypeError, match="RLE"):
        confidence_labels(build_model("aohr", num_points=5, input_size=32, backbone=TINY_LITE, ratio=2.0,
                                      head_channels=16, attn_dim=8), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, F, F\)"):
        confidence_labels(model, torch.rand(1, 1, 32, 32))
    empty_x, empty_y = confidence_labels(model, torch.rand(0, 3, 32, 32))
    assert empty_x.shape == empty_y.shape == (0, 5)


def test_report_on_known_uncertainty(rng):
    # Errors drawn from the Laplace each sigma describes; occluded points have 4x the sigma.
    m, n = 200, 10
    occluded = rng.random((m, n)) < 0.2
    sigma = rng.uniform(0.5, 2.0, size=(m, n, 2)) * np.where(occluded, 4.0, 1.0)[..., None]
    errors = np.abs(rng.laplace(0.0, sigma))
    conf = sigma_to_confidence(torch.from_numpy(sigma), 2.0).numpy()
    valid = np.ones((m, n), bool)
    valid[0] = False
    report = confidence_report(errors, sigma, conf, occluded, valid)
    assert report["points"] == (m - 1) * n and report["occluded_points"] == int(occluded[1:].sum())
    assert report["spearman_axis"] > 0.3 and report["spearman_point"] > 0.4
    assert report["mean_conf_occluded"] < report["mean_conf_visible"] - 0.3
    assert report["mean_error_occluded"] > 2 * report["mean_error_visible"]
    shuffled = confidence_report(errors, rng.permutation(sigma.reshape(-1, 2)).reshape(sigma.shape), conf,
                                 occluded, valid)
    assert abs(shuffled["spearman_axis"]) < 0.1  # unrelated sigmas do not correlate
    with pytest.raises(ValueError, match="occluded"):
        confidence_report(errors, sigma, conf, occluded[:, :3])


def test_evaluate_confidence_on_annotated_faces(w300_root):
    from facetrack.data.w300 import load_300w

    samples = load_300w(w300_root, "train")[:6]
    model = tiny(num_points=68)
    report = evaluate_confidence(model, samples, seed=0, occlusion_prob=1.0)
    assert report["faces"] == 6 and report["points"] == 6 * 68
    assert 0 < report["occluded_points"] < report["points"]
    assert report["tau_pixels"] == pytest.approx(0.64)
    for key in ("spearman_axis", "spearman_point", "mean_conf_visible", "mean_conf_occluded", "median_sigma"):
        assert np.isfinite(report[key]), key
    assert 0 <= report["paired_drop_fraction"] <= 1 and 0 <= report["paired_conf_clean"] <= 1
    assert report == evaluate_confidence(model, samples, seed=0, occlusion_prob=1.0)  # deterministic
    clean = evaluate_confidence(model, samples, seed=0, occlusion_prob=0.0)
    assert clean["occluded_points"] == 0 and np.isnan(clean["mean_conf_occluded"])
    assert "paired_conf_clean" not in clean
    # The paired reference is the same crop without the occluder: the unoccluded points score as on it.
    assert clean["mean_conf_visible"] == pytest.approx(
        (report["mean_conf_visible"] * (report["points"] - report["occluded_points"])
         + report["paired_conf_clean"] * report["occluded_points"]) / report["points"], rel=0.05)


def test_shipped_recipe_builds_the_rle_model():
    from facetrack.train.config import load_config

    config = load_config(REPO / "configs" / "rle_lite_shared300w_128.yaml")
    model = build_model(config.model.arch, **config.model.config)
    assert isinstance(model, RLE) and model.input_size == 128 and model.length == 384
    assert model.config["encoder"]["backbone"]["name"] == "lite" and model.tau_pixels == pytest.approx(2.56)


def test_facetrack_train_runs_an_rle_recipe(tmp_path, w300_root, one_thread):
    from facetrack.cli import main

    recipe = {
        "model": {"arch": "rle", "config": {**TINY_RLE, "input_size": 64}},
        "data": {"dataset": "300w", "root": str(w300_root), "split": "train", "val_fraction": 0.25,
                 "augment": {"occlusion_prob": 0.5}},
        "optim": {"lr": 1e-3, "batch_size": 4},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "out": str(tmp_path / "run"), "threads": 1,
                    "limit_train_batches": 2, "progress_bar": False},
    }
    path = tmp_path / "rle.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert main(["train", str(path)]) == 0
    model = load_model(tmp_path / "run" / "last")
    assert isinstance(model, RLE)
    cx, cy = confidence_labels(model, torch.rand(2, 3, 64, 64))
    assert cx.shape == (2, 68) and torch.all(torch.isfinite(cy))
