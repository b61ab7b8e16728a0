from __future__ import annotations

import numpy as np
import pytest

from facetrack.peers.mapping import PointMap, fit_point_map, neighbours, normalise, select_point_map


def _synthetic(rng: np.random.Generator, faces: int = 60, s: int = 40, p: int = 6, k: int = 4):
    """Random source shapes (a template moved by similarities, plus per-face deformation) and a known sparse
    affine-combination map onto P targets, each from its K nearest template vertices."""
    template = rng.normal(size=(s, 2))
    anchors = rng.normal(size=(p, 2))
    idx = np.sort(np.argsort(np.linalg.norm(anchors[:, None] - template[None], axis=-1), axis=1)[:, :k], axis=1)
    w = rng.uniform(0.1, 1.0, size=(p, k))
    w[:, 0] -= 0.3  # some negative weights too
    w /= w.sum(axis=1, keepdims=True)
    truth = PointMap(idx, w, s)
    source = []
    for _ in range(faces):
        angle, scale = rng.uniform(-0.5, 0.5), rng.uniform(50, 200)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shape = template + 0.15 * rng.normal(size=template.shape)
        source.append(scale * shape @ rot.T + rng.uniform(0, 400, size=2))
    source = np.asarray(source)
    return source, truth.apply(source), truth


def test_fit_recovers_a_known_sparse_map(rng):
    source, target, truth = _synthetic(rng)
    fitted = fit_point_map(source, target, k=12, ridge=0.0)
    # the neighbourhood found on the mean shapes holds the true support, and the other weights come out 0
    assert all(set(t) <= set(f) for t, f in zip(truth.indices, fitted.indices))
    np.testing.assert_allclose(fitted.dense(), truth.dense(), atol=1e-8)


def test_fit_on_all_vertices_recovers_the_map_with_a_tiny_ridge(rng):
    source, target, truth = _synthetic(rng, faces=80)
    for k in (16, None):
        fitted = fit_point_map(source, target, k=k, ridge=1e-9)
        np.testing.assert_allclose(fitted.dense(), truth.dense(), atol=1e-4)
        np.testing.assert_allclose(fitted.apply(source), target, atol=1e-3)


def test_weights_sum_to_one_so_the_map_commutes_with_similarities(rng):
    source, target, _ = _synthetic(rng)
    noisy = target + rng.normal(scale=2.0, size=target.shape)
    fitted = fit_point_map(source, noisy, k=6, ridge=1e-2)
    np.testing.assert_allclose(fitted.weights.sum(axis=1), 1.0, atol=1e-9)
    moved = 3.0 * source[:5] @ np.array([[0.0, -1.0], [1.0, 0.0]]).T + 17.0
    expected = 3.0 * fitted.apply(source[:5]) @ np.array([[0.0, -1.0], [1.0, 0.0]]).T + 17.0
    np.testing.assert_allclose(fitted.apply(moved), expected, atol=1e-8)


def test_ridge_pulls_weights_towards_the_plain_average(rng):
    source, target, _ = _synthetic(rng, faces=3)
    fitted = fit_point_map(source, target, k=4, ridge=1e6)
    np.testing.assert_allclose(fitted.weights, 0.25, atol=1e-4)


def test_cross_validation_picks_the_true_support_and_records_the_table(rng):
    source, target, truth = _synthetic(rng, faces=60)
    noisy = target + rng.normal(scale=0.05, size=target.shape)
    groups = [f"photo{i // 2}" for i in range(len(source))]
    fitted, table = select_point_map(source, noisy, groups, ks=(1, 12, None), ridges=(1e-6, 1.0), folds=3,
                                     ocular=(0, 1))
    assert len(table) == 6 and fitted.meta["k"] in (12, None) and fitted.meta["ridge"] == 1e-6
    assert fitted.meta["cv_nme"] == min(row["cv_nme"] for row in table)
    np.testing.assert_allclose(fitted.dense(), truth.dense(), atol=0.05)


def test_save_and_load_round_trip(tmp_path, rng):
    source, target, _ = _synthetic(rng)
    fitted = fit_point_map(source, target, k=12, ridge=0.0, meta={"data": "synthetic"})
    path = fitted.save(tmp_path / "map")
    loaded = PointMap.load(path)
    assert loaded.meta["data"] == "synthetic" and loaded.num_source == fitted.num_source
    np.testing.assert_allclose(loaded.apply(source), fitted.apply(source), atol=1e-3)


def test_load_refuses_weights_that_do_not_sum_to_one(tmp_path):
    np.savez(tmp_path / "bad.npz", indices=np.array([[0, 1]]), weights=np.array([[0.5, 0.6]]), num_source=2)
    from facetrack.errors import DataError

    with pytest.raises(DataError, match="sum to 1"):
        PointMap.load(tmp_path / "bad.npz")


def test_apply_checks_the_number_of_source_points(rng):
    fitted = PointMap(np.array([[0, 1]]), np.array([[0.5, 0.5]]), 3)
    with pytest.raises(ValueError, match="3 source points"):
        fitted.apply(np.zeros((4, 2)))


def test_normalise_and_neighbours():
    src = np.array([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]])
    ns, nt = normalise(src, np.array([[[1.0, 1.0]]]))
    np.testing.assert_allclose(nt, 0.0)
    np.testing.assert_allclose(np.sqrt((ns**2).sum(-1).mean()), 1.0)
    idx = neighbours(src[0], np.array([[1.9, 0.1]]), 2)
    np.testing.assert_array_equal(idx, [[1, 3]] if np.linalg.norm([0.1, 1.9]) < 1.9 else [[0, 1]])
