from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrack.errors import ModelError
from facetrack.tracking import validator as fv
from facetrack.train import validator as fv_training


def _face(rng):
    image = (rng.random((200, 200, 3)) * 255).astype(np.uint8)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([100 + 40 * np.cos(t), 100 + 50 * np.sin(t)], axis=1)
    return image, points


def test_crop_has_image_and_landmark_channels(rng):
    image, points = _face(rng)
    crop = fv.validator_crop(image, points)
    assert crop.shape == (64, 64, 4) and crop.dtype == np.uint8
    mask = crop[..., 3]
    ys, xs = np.nonzero(mask > 128)
    # landmark extent fills 1/1.25 of the crop, centred
    assert 4 < xs.min() < 12 and 52 < xs.max() < 60 and 4 < ys.min() < 12 and 52 < ys.max() < 60
    x = fv.to_tensor(crop[None])
    assert x.shape == (1, 4, 64, 64) and float(x.max()) <= 1.0
    # degenerate and off-frame landmark sets still give an input (the tracker scores them, it does not crash)
    assert fv.validator_crop(image, np.full((68, 2), 5.0)).shape == (64, 64, 4)
    assert fv.validator_crop(image, points + 5000).shape == (64, 64, 4)


def test_training_samples_have_both_labels(rng):
    image, points = _face(rng)
    samples = fv_training.face_samples(image, points, rng)
    labels = [y for _, y, _ in samples]
    kinds = [k for _, _, k in samples]
    assert labels.count(1) == 2 and labels.count(0) >= 2
    assert set(kinds) >= {0, 2, 3}


def test_save_load_roundtrip_and_errors(tmp_path):
    torch.manual_seed(0)
    net = fv.FaceValidatorNet()
    fv.save_validator(net, tmp_path / "v", {"name": "test"})
    assert (tmp_path / "v.safetensors").stat().st_size < 1_000_000
    loaded = fv.load_validator(tmp_path / "v")
    x = torch.rand(2, 4, 64, 64)
    net.eval()
    torch.testing.assert_close(loaded.net(x), net(x))
    with pytest.raises(ModelError):
        fv.load_validator(tmp_path / "missing")
    (tmp_path / "v.json").write_text('{"arch": "other", "input_size": 64}')
    with pytest.raises(ModelError):
        fv.load_validator(tmp_path / "v")


def test_missing_packaged_weights_mean_none(monkeypatch, tmp_path):
    monkeypatch.setattr(fv, "DEFAULT_PATH", tmp_path / "absent")
    assert fv.load_validator() is None


@pytest.mark.shared_data
def test_packaged_validator_separates_held_out_faces(shared_data):
    from facetrack.data.splits import split_by_subject
    from facetrack.data.w300 import load_300w

    validator = fv.load_validator()
    if validator is None:
        pytest.skip("packaged face validator weights are absent")
    assert validator.card["metrics"]["held_out"]["accuracy"] > 0.9
    _, val = split_by_subject(load_300w(shared_data / "300w", "train"), 0.1, seed=0)
    rng = np.random.default_rng(5)
    pos, neg = [], []
    for sample in val[:25]:
        image = sample.load_image()
        pts = np.asarray(sample.landmarks, float)
        pos.append(validator.score(image, [pts])[0])
        centre = pts.mean(axis=0)
        rotated = (pts - centre) @ np.array([[-1.0, 0], [0, -1]]) + centre  # upside-down on the face
        corner = (pts - pts.min(0)) * 0.3 + rng.uniform(0, 20, 2)  # a small face shape in the background
        neg += list(validator.score(image, [rotated, corner]))
    assert np.mean(np.array(pos) > 0.5) > 0.85
    assert np.mean(np.array(neg) < 0.5) > 0.85


def test_upright_crop_judges_a_turned_face_like_an_upright_one(rng):
    import cv2

    from facetrack.data.transforms import apply_affine

    image = np.zeros((300, 300, 3), np.uint8)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([150 + 40 * np.cos(t), 150 + 50 * np.sin(t)], axis=1)
    points[36:42], points[42:48] = [130, 130], [170, 130]  # eyes above the mouth corners: an upright face
    points[30], points[48], points[54] = [150, 150], [135, 175], [165, 175]
    cv2.circle(image, (130, 130), 6, (255, 255, 255), -1)
    turn = cv2.getRotationMatrix2D((150.0, 150.0), 90.0, 1.0)
    turned, turned_points = cv2.warpAffine(image, turn, (300, 300)), apply_affine(points, turn)
    a = fv.validator_crop(image, points, upright=True).astype(int)
    b = fv.validator_crop(turned, turned_points, upright=True).astype(int)
    assert np.abs(a - b).mean() < 3  # the same crop, up to resampling
    assert np.abs(fv.validator_crop(turned, turned_points).astype(int) - a).mean() > 3  # unturned: differs


def test_validator_runs_through_onnxruntime_with_the_nets_scores(rng, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    validator = fv.FaceValidator(fv.FaceValidatorNet())
    image, points = _face(rng)
    scores = validator.score(image, [points, points + 7.0])
    assert validator._forward is not validator.net  # the onnxruntime session, not the PyTorch net
    with torch.no_grad():
        crops = np.stack([fv.validator_crop(image, p) for p in (points, points + 7.0)])
        expected = torch.sigmoid(validator.net(fv.to_tensor(crops))).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5)
