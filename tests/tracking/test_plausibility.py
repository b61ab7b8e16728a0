from __future__ import annotations

import numpy as np
import pytest

from facetrack.errors import ModelError
from facetrack.tracking import plausibility
from facetrack.tracking.plausibility import ShapeCheck, load_shape_check
from facetrack.train.shape_check import fit_shape_check


def _faces(rng: np.random.Generator, n: int = 300) -> np.ndarray:
    """Face-like shapes: the packaged mean face, deformed along two smooth modes, posed at random."""
    mean = load_shape_check().model.mean
    smile = np.zeros_like(mean)
    smile[48:68, 1] = -0.1 * np.abs(mean[48:68, 0])
    wide = np.zeros_like(mean)
    wide[:, 0] = 0.2 * mean[:, 0]
    shapes = []
    for _ in range(n):
        s = mean + rng.normal() * smile + rng.normal() * wide + rng.normal(0, 0.005, mean.shape)
        a = rng.uniform(-np.pi, np.pi)
        rot = rng.uniform(50, 150) * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        shapes.append(s @ rot.T + rng.uniform(0, 500, 2))
    return np.array(shapes)


def test_face_like_shapes_pass_and_broken_ones_fail(rng):
    check = fit_shape_check(_faces(rng))
    faces = _faces(np.random.default_rng(7), 40)
    assert check(list(faces)).all()
    scattered = faces + rng.normal(0, 15, faces.shape)  # ~15 % of a 100 px face
    mixed = faces.copy()
    mixed[:, 36:48] = faces[:, 36:48] + np.array([80.0, 0.0])  # the eyes on the next face
    assert not check(list(scattered)).any()
    assert not check(list(mixed)).any()
    assert not check([np.full((68, 2), 3.0), np.full((68, 2), np.nan)]).any()  # collapsed, missing
    assert check([np.zeros((5, 2))]).all()  # another scheme: no opinion


def test_packaged_check_loads_with_its_bounds(tmp_path, monkeypatch):
    check = load_shape_check()
    assert isinstance(check, ShapeCheck) and check.num_points == 68
    assert check.max_mahalanobis > 0 and check.max_residual > 0
    monkeypatch.setattr(plausibility, "DEFAULT_PATH", tmp_path / "absent.npz")
    assert load_shape_check() is None
    with pytest.raises(ModelError):
        load_shape_check(tmp_path / "absent.npz")
    check.model.meta.pop("max_residual")
    check.model.save(tmp_path / "unbounded.npz")
    with pytest.raises(ModelError, match="bounds"):
        load_shape_check(tmp_path / "unbounded.npz")


def test_distances_match_the_shape_models_projection(rng):
    check = load_shape_check()
    model = check.model
    shapes = list(_faces(rng, 20)) + [s + rng.normal(0, 8, s.shape) for s in _faces(rng, 5)]
    for shape in shapes:
        coefficients, _ = model.project(shape, iterations=3)  # the reference: ShapeModel's own projection
        fitted = model.reconstruct(coefficients)
        m = plausibility.similarity_fit(shape, fitted)
        residual = np.sqrt(np.mean(np.sum((shape @ m[:, :2].T + m[:, 2] - fitted) ** 2, axis=1)))
        mahalanobis = np.sqrt(np.sum(coefficients ** 2 / np.maximum(model.eigenvalues, 1e-12)))
        np.testing.assert_allclose(check.distances(shape), (mahalanobis, residual), rtol=1e-9)
