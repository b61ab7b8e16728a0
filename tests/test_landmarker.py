from __future__ import annotations

import numpy as np
import torch

from facetrack.landmarker import Landmarker, draw_landmarks
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
