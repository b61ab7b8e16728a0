from __future__ import annotations

import numpy as np
import torch

from facetrack.drawing import draw_landmarks
from facetrack.landmarker import Landmarker
from facetrack.models.registry import build_model
from facetrack.tracking.engine import LandmarkerEngine


def _fixed_output(model, crop_points: np.ndarray):
    """Make ``model.predict`` return the same crop-pixel points for every face."""
    pts = torch.as_tensor(crop_points, dtype=torch.float32)

    def predict(images):
        b = images.shape[0]
        return pts.expand(b, -1, -1).clone(), torch.ones(b, pts.shape[0])

    model.predict = predict


def test_predictions_map_back_to_original_pixels(tiny_aohr_config):
    model = build_model("aohr", **tiny_aohr_config)
    centre = (64 - 1) / 2
    _fixed_output(model, np.full((68, 2), centre))
    lm = Landmarker(model, crop_scale=1.25, refine=0)
    image = np.zeros((300, 400, 3), np.uint8)
    boxes = np.array([[100.0, 50.0, 180.0, 150.0], [10.0, 20.0, 40.0, 60.0]])
    points, conf = lm.predict_boxes(image, boxes)
    assert points.shape == (2, 68, 2) and conf.shape == (2, 68)
    for face, box in zip(points, boxes):
        expected = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
        np.testing.assert_allclose(face, np.broadcast_to(expected, (68, 2)), atol=1e-6)


def test_refine_recrops_around_the_landmark_extent(tiny_aohr_config):
    model = build_model("aohr", **tiny_aohr_config)
    rng = np.random.default_rng(0)
    crop_pts = rng.uniform(10, 54, (68, 2))
    _fixed_output(model, crop_pts)
    engine0 = LandmarkerEngine(Landmarker(model, crop_scale=1.25, refine=0))
    engine1 = LandmarkerEngine(Landmarker(model, crop_scale=1.25, refine=1))
    image = np.zeros((200, 200, 3), np.uint8)
    box = [np.array([50.0, 50.0, 150.0, 150.0])]
    a, b = engine0.start(image, box)[0].landmarks, engine1.start(image, box)[0].landmarks
    assert not np.allclose(a, b)  # the second pass used a different crop
    assert np.isfinite(b).all()


def test_crops_are_rgb_unit_range(tiny_aohr_config):
    model = build_model("aohr", **tiny_aohr_config)
    lm = Landmarker(model)
    image = np.zeros((100, 100, 3), np.uint8)
    image[..., 2] = 255  # pure red in BGR
    tensor, matrices = lm.crops(image, np.array([[10.0, 10.0, 90.0, 90.0]]))
    assert tensor.shape == (1, 3, 64, 64) and matrices.shape == (1, 2, 3)
    assert float(tensor[0, 0, 32, 32]) == 1.0 and float(tensor[0, 2, 32, 32]) == 0.0  # RGB order


def test_draw_landmarks_marks_the_points():
    image = np.zeros((50, 50, 3), np.uint8)
    out = draw_landmarks(image, np.array([[10.0, 10.0], [40.0, 30.0]]), edges=[(0, 1)])
    assert out[10, 10].any() and out[30, 40].any() and not image.any()


def _bright_spot_model(model, offsets: np.ndarray, bias_x: float = 0.0):
    """``predict``: the brightest crop pixel plus a per-point offset (and an optional x bias): a predictor that
    follows the face when mirrored exactly when ``offsets`` mirror under the scheme's flip permutation."""
    d = torch.as_tensor(offsets, dtype=torch.float32)

    def predict(images):
        gray = images.sum(1)
        flat = gray.flatten(1).argmax(1)
        spot = torch.stack([flat % gray.shape[-1], flat // gray.shape[-1]], -1).float()
        coords = spot[:, None, :] + d[None]
        coords[..., 0] += bias_x
        return coords, torch.ones(images.shape[0], d.shape[0])

    model.predict = predict


def _mirror_symmetric_offsets(rng: np.random.Generator) -> np.ndarray:
    from facetrack.schemes import get_scheme

    perm = np.asarray(get_scheme("ibug68").flip_perm)
    d = rng.uniform(-8, 8, (68, 2))
    for i, j in enumerate(perm):
        if j == i:
            d[i, 0] = 0.0
        elif j > i:
            d[j] = (-d[i, 0], d[i, 1])
    return d


def _spot_image() -> np.ndarray:
    image = np.zeros((200, 200, 3), np.uint8)
    image[83, 71] = 255
    return image


def test_flip_averaging_keeps_a_mirror_consistent_prediction(tiny_aohr_config):
    model = build_model("aohr", **tiny_aohr_config)
    _bright_spot_model(model, _mirror_symmetric_offsets(np.random.default_rng(0)))
    box = np.array([[40.0, 40.0, 120.0, 120.0]])
    plain = Landmarker(model, refine=0).predict_boxes(_spot_image(), box)[0]
    flipped = Landmarker(model, refine=0, flip=True).predict_boxes(_spot_image(), box)[0]
    np.testing.assert_allclose(flipped, plain, atol=1e-4)


def test_flip_averaging_cancels_an_x_bias(tiny_aohr_config):
    model = build_model("aohr", **tiny_aohr_config)
    offsets = _mirror_symmetric_offsets(np.random.default_rng(1))
    box = np.array([[40.0, 40.0, 120.0, 120.0]])
    _bright_spot_model(model, offsets)
    unbiased = Landmarker(model, refine=0).predict_boxes(_spot_image(), box)[0]
    _bright_spot_model(model, offsets, bias_x=1.5)
    biased = Landmarker(model, refine=0).predict_boxes(_spot_image(), box)[0]
    flipped = Landmarker(model, refine=0, flip=True).predict_boxes(_spot_image(), box)[0]
    assert np.abs(biased - unbiased)[..., 0].min() > 1.0
    np.testing.assert_allclose(flipped, unbiased, atol=1e-4)


def test_card_calibration_is_subtracted_in_crop_pixels(tiny_aohr_config):
    model = build_model("aohr", **tiny_aohr_config)
    _fixed_output(model, np.full((68, 2), 31.5))
    offsets = np.zeros((68, 2))
    offsets[:, 0] = 2.0  # crop pixels
    model.card = {"calibration": {"offsets_px": {"plain": offsets.tolist()}}}
    box = np.array([[100.0, 100.0, 164.0, 164.0]])  # crop side 80 px of the image for 64 crop px
    image = np.zeros((300, 300, 3), np.uint8)
    raw = Landmarker(model, refine=0, calibrate=False).predict_boxes(image, box)[0]
    calibrated = Landmarker(model, refine=0).predict_boxes(image, box)[0]
    np.testing.assert_allclose(raw - calibrated, np.broadcast_to([2.0 * 80 / 64, 0.0], (1, 68, 2)), atol=1e-5)
    # no offsets for flip mode in the card: flip inference runs uncalibrated
    assert Landmarker(model, refine=0, flip=True).offsets is None


def test_malformed_calibration_is_refused(tiny_aohr_config):
    import pytest

    from facetrack.errors import DataError

    model = build_model("aohr", **tiny_aohr_config)
    model.card = {"name": "broken", "calibration": {"offsets_px": {"plain": [[0.0, 0.0]]}}}
    with pytest.raises(DataError, match="calibration 'plain'"):
        Landmarker(model)


def test_estimated_offsets_remove_the_mean_residual(tiny_aohr_config, tmp_path):
    import cv2

    from facetrack.calibration import calibration_card, card_offsets, estimate_offsets
    from facetrack.data.sample import FaceSample
    from facetrack.data.transforms import apply_affine, box_from_landmarks

    model = build_model("aohr", **tiny_aohr_config)
    rng = np.random.default_rng(2)
    _fixed_output(model, rng.uniform(15, 50, (68, 2)))
    samples = []
    for k in range(3):
        path = tmp_path / f"face{k}.png"
        cv2.imwrite(str(path), np.zeros((160, 160, 3), np.uint8))
        samples.append(FaceSample(path, rng.uniform(30, 130, (68, 2)), "ibug68"))
    offsets = estimate_offsets(Landmarker(model, refine=0), samples, progress=False)
    assert set(offsets) == {"plain", "flip"}
    model.card = {"calibration": calibration_card(offsets, len(samples), "test", "")}
    for mode, flip in (("plain", False), ("flip", True)):
        calibrated = Landmarker(model, refine=0, flip=flip)
        np.testing.assert_allclose(card_offsets(model.card, 68)[mode], offsets[mode], atol=1e-4)  # rounded
        residuals = []
        for s in samples:
            tensor, matrices = calibrated.crops(cv2.imread(str(s.image_path)), [box_from_landmarks(s.landmarks)])
            coords, _ = calibrated.predict_crops(tensor)
            residuals.append(coords[0].numpy() - apply_affine(s.landmarks, matrices[0]))
        np.testing.assert_allclose(np.mean(residuals, axis=0), 0.0, atol=1e-3)
