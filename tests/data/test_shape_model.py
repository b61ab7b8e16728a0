from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facetrack.data.shape_model import ShapeModel, procrustes_align, similarity_fit
from facetrack.errors import DataError


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _low_rank_shapes(rng: np.random.Generator, m: int = 400, n: int = 20, sds=(3.0, 1.0)):
    """Shapes = base + two orthogonal deformation fields with known spreads, each under a random similarity."""
    base = rng.uniform(-50, 50, (n, 2))
    fields = np.linalg.qr(rng.standard_normal((2 * n, len(sds))))[0].T  # orthonormal in R^{2n}
    coeffs = rng.standard_normal((m, len(sds))) * np.asarray(sds)
    local = base + (coeffs @ fields).reshape(m, n, 2)
    shapes = np.stack([_apply(s, _similarity(rng.uniform(0.5, 2), rng.uniform(-1, 1), *rng.uniform(-100, 100, 2)))
                       for s in local])
    return shapes, base


def test_similarity_fit_recovers_a_known_transform(rng: np.random.Generator) -> None:
    src = rng.uniform(0, 100, (30, 2))
    m = _similarity(1.7, 0.4, 12.0, -5.0)
    np.testing.assert_allclose(similarity_fit(src, _apply(src, m)), m, atol=1e-10)
    with pytest.raises(ValueError):
        similarity_fit(np.zeros((5, 2)), src[:5])


def test_procrustes_removes_similarity_exactly(rng: np.random.Generator) -> None:
    base = rng.uniform(-10, 10, (15, 2))
    shapes = np.stack([_apply(base, _similarity(rng.uniform(0.3, 3), rng.uniform(-3, 3), *rng.uniform(-50, 50, 2)))
                       for _ in range(6)])
    aligned, mean = procrustes_align(shapes)
    np.testing.assert_allclose(aligned, np.broadcast_to(mean, aligned.shape), atol=1e-8)
    np.testing.assert_allclose(mean.mean(axis=0), 0.0, atol=1e-12)
    assert np.sqrt(np.mean(np.sum(mean**2, axis=1))) == pytest.approx(1.0)


def test_fit_finds_the_generating_modes(rng: np.random.Generator) -> None:
    shapes, _ = _low_rank_shapes(rng)
    model = ShapeModel.fit(shapes, variance=0.999, meta={"source": "synthetic"})
    assert model.num_modes == 2 and model.num_points == 20
    np.testing.assert_allclose(model.modes @ model.modes.T, np.eye(2), atol=1e-10)
    assert model.eigenvalues[0] > model.eigenvalues[1] > 0
    # in the model frame the spreads keep the generating ratio 3:1 (up to sampling and scale normalisation)
    assert np.sqrt(model.eigenvalues[0] / model.eigenvalues[1]) == pytest.approx(3.0, rel=0.15)
    assert model.meta == {"num_training_shapes": 400, "source": "synthetic"}
    assert ShapeModel.fit(shapes, num_modes=1).num_modes == 1


def test_project_then_reconstruct_reproduces_a_shape_in_the_span(rng: np.random.Generator) -> None:
    shapes, _ = _low_rank_shapes(rng)
    model = ShapeModel.fit(shapes, num_modes=2)
    target = shapes[7]
    coeffs, transform = model.project(target)
    assert coeffs.shape == (2,)
    np.testing.assert_allclose(model.reconstruct(coeffs, transform), target, atol=1e-3)
    # a moved copy has the same shape coefficients
    moved = _apply(target, _similarity(0.8, 0.7, 30, 40))
    np.testing.assert_allclose(model.project(moved)[0], coeffs, atol=1e-6)


def test_sample_spread_is_in_units_of_sqrt_eigenvalue(rng: np.random.Generator) -> None:
    shapes, _ = _low_rank_shapes(rng)
    model = ShapeModel.fit(shapes, num_modes=2)
    b = model.sample_coefficients(np.random.default_rng(1), 4000, scale_sd=0.5)
    np.testing.assert_allclose(b.std(axis=0), 0.5 * np.sqrt(model.eigenvalues), rtol=0.08)
    assert np.all(np.abs(b) <= 3.0 * 0.5 * np.sqrt(model.eigenvalues) + 1e-12)
    only_first = model.sample_coefficients(np.random.default_rng(1), 10, num_modes=1)
    assert np.all(only_first[:, 1] == 0) and np.any(only_first[:, 0] != 0)
    samples = model.sample(np.random.default_rng(2), 5)
    assert samples.shape == (5, 20, 2)
    np.testing.assert_allclose(samples, model.reconstruct(model.sample_coefficients(np.random.default_rng(2), 5)))


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_round_trip(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    shapes, _ = _low_rank_shapes(rng, m=50)
    model = ShapeModel.fit(shapes, num_modes=2, meta={"trained_on": "synthetic train split"})
    path = tmp_path / f"pdm{suffix}"
    model.save(path)
    loaded = ShapeModel.load(path)
    np.testing.assert_allclose(loaded.mean, model.mean)
    np.testing.assert_allclose(loaded.modes, model.modes)
    np.testing.assert_allclose(loaded.eigenvalues, model.eigenvalues)
    assert loaded.meta == model.meta


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        ShapeModel.load(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="garbage.npz"):
        ShapeModel.load(garbage)
    other = tmp_path / "other.npz"
    np.savez(other, mean=np.zeros((3, 2)))
    with pytest.raises(DataError, match="other.npz"):
        ShapeModel.load(other)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something/else", "mean": [], "modes": [], "eigenvalues": [], "meta": {}}))
    with pytest.raises(DataError, match="unknown shape model format"):
        ShapeModel.load(wrong)
    with pytest.raises(ValueError, match=".npz or .json"):
        ShapeModel(np.zeros((3, 2)), np.zeros((1, 6)), np.ones(1)).save(tmp_path / "model.pkl")


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        ShapeModel.fit(np.zeros((1, 68, 2)))
    with pytest.raises(ValueError):
        ShapeModel.fit(np.full((3, 68, 2), np.nan))
    with pytest.raises(ValueError):
        ShapeModel.fit(np.zeros((3, 68)))


def test_300w_model_generalises_to_held_out_faces(shared_data: Path) -> None:
    from facetrack.io.pts import read_pts

    files = sorted((shared_data / "300w" / "lfpw").rglob("*.pts"))[:400]
    if len(files) < 100:
        pytest.skip("too few 300W faces")
    shapes = np.stack([read_pts(f) for f in files])
    model = ShapeModel.fit(shapes[:300], variance=0.98)
    assert 5 <= model.num_modes <= 60
    errors = []
    for shape in shapes[300:]:
        b, t = model.project(shape)
        size = float(np.max(shape.max(0) - shape.min(0)))
        errors.append(np.mean(np.linalg.norm(model.reconstruct(b, t) - shape, axis=1)) / size)
    assert np.median(errors) < 0.02  # held-out faces are reconstructed to ~1% of the face size


def test_batched_similarity_fits_match_one_fit_each(rng: np.random.Generator) -> None:
    from facetrack.data.shape_model import similarity_fits

    shapes = rng.normal(0, 10, (4, 12, 2))
    target = rng.normal(0, 10, (12, 2))
    known = rng.random((4, 12)) > 0.3
    known[2] = False
    known[2, :1] = True          # one known point: no fit
    shapes[3] = shapes[3, 0]     # collapsed: no fit
    fits = similarity_fits(shapes, target, known)
    for k in (0, 1):
        np.testing.assert_allclose(fits[k], similarity_fit(shapes[k][known[k]], target[known[k]]), atol=1e-12)
    assert np.isnan(fits[2]).all() and np.isnan(fits[3]).all()


def test_coefficients_follow_the_asm_iteration(rng: np.random.Generator) -> None:
    """``ShapeModel.coefficients`` against the plain iteration (pose fit, inverse by matrix, projection)."""
    from facetrack.geometry import apply_affine, invert_affine

    shapes, _ = _low_rank_shapes(rng)
    model = ShapeModel.fit(shapes, num_modes=2)
    shape = _apply(shapes[3] + rng.normal(0, 0.5, shapes[3].shape), _similarity(1.3, 0.4, 5, -8))
    b = np.zeros(2)
    for _ in range(3):
        transform = similarity_fit(model.reconstruct(b), shape)
        b = model.modes @ (apply_affine(shape, invert_affine(transform)) - model.mean).reshape(-1)
    np.testing.assert_allclose(model.coefficients(shape, iterations=3), b, atol=1e-9)
