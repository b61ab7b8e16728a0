from __future__ import annotations

import numpy as np
import pytest

from facetrack.tracking.smoothing import AlignedShapeFilter, OneEuroFilter, make_filter, smoothing_params


def test_still_signal_is_smoothed_and_first_value_passes():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    noisy = 10 + rng.normal(0, 1, (300, 3, 2))
    out = np.stack([f(x, t / 30) for t, x in enumerate(noisy)])
    np.testing.assert_array_equal(out[0], noisy[0])
    assert out[50:].std() < 0.5 * noisy[50:].std()
    assert abs(out[50:].mean() - 10) < 0.3


def test_beta_reduces_lag_on_fast_motion():
    ramp = [np.array([100.0 * t / 30]) for t in range(60)]
    lag = {}
    for beta in (0.0, 1.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = [f(x, t / 30) for t, x in enumerate(ramp)]
        lag[beta] = float(ramp[-1][0] - out[-1][0])
    assert 0 <= lag[1.0] < 0.3 * lag[0.0]


def test_reset_and_missing_points():
    f = OneEuroFilter()
    f(np.array([0.0, 0.0]), 0.0)
    out = f(np.array([np.nan, 10.0]), 1 / 30)
    assert np.isnan(out[0]) and 0 < out[1] < 10
    later = f(np.array([1.0, 10.0]), 2 / 30)
    assert np.isfinite(later).all()
    f.reset()
    np.testing.assert_array_equal(f(np.array([50.0, 50.0]), 3 / 30), [50.0, 50.0])
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0)


def _face(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-40, 40, (20, 2))


def _similarity(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return scale * points @ np.array([[c, -s], [s, c]]).T + np.asarray(shift)


def test_aligned_filter_follows_rigid_motion_without_lag():
    rng = np.random.default_rng(2)
    face = _face(rng)
    f = AlignedShapeFilter(window=6, decay=0.9)
    for t in range(30):  # fast rotation, zoom and translation of a rigid shape
        moved = _similarity(face, 0.05 * t, 1.0 + 0.02 * t, (3.0 * t, -2.0 * t))
        np.testing.assert_allclose(f(moved), moved, atol=1e-9)


def test_aligned_filter_averages_shape_noise_and_tolerates_missing_points():
    rng = np.random.default_rng(3)
    face = _face(rng)
    f = AlignedShapeFilter(window=5, decay=1.0)
    noisy, out = [], []
    for t in range(200):
        x = _similarity(face, 0.02 * t, 1.0, (t, 0.0))
        x = x + rng.normal(0, 1.0, x.shape)
        if t == 100:
            x[0] = np.nan
        noisy.append(x)
        out.append(f(x))
    truth = [_similarity(face, 0.02 * t, 1.0, (t, 0.0)) for t in range(200)]
    err = lambda seq: np.nanmean([np.abs(a - b).mean() for a, b in zip(seq[10:], truth[10:])])  # noqa: E731
    assert err(out) < 0.6 * err(noisy)
    assert np.isfinite(out[100]).all()  # the missing point is filled from the aligned past
    assert np.isfinite(out[101]).all()
    f.reset()
    np.testing.assert_array_equal(f(noisy[0]), noisy[0])


def test_window_one_is_the_identity_and_bad_parameters_fail():
    x = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(AlignedShapeFilter(window=1)(x), x)
    with pytest.raises(ValueError):
        AlignedShapeFilter(window=0)
    with pytest.raises(ValueError):
        AlignedShapeFilter(decay=1.5)


def test_smoothing_specs_and_filters():
    assert smoothing_params(None) is None and smoothing_params(False) is None
    assert smoothing_params(True) == {"method": "aligned", "window": 5, "decay": 0.7}
    assert smoothing_params("one-euro")["method"] == "one-euro"
    assert smoothing_params({"window": 3}) == {"method": "aligned", "window": 3, "decay": 0.7}
    assert isinstance(make_filter(smoothing_params(True)), AlignedShapeFilter)
    assert isinstance(make_filter(smoothing_params("one-euro")), OneEuroFilter)
    with pytest.raises(ValueError, match="unknown smoothing method"):
        smoothing_params("kalman")
    with pytest.raises(ValueError, match="takes"):
        smoothing_params({"method": "aligned", "beta": 1.0})


def _reference_filter(shapes, window, decay):
    """The aligned filter as first written: one similarity fit per past shape, in a loop."""
    from facetrack.data.shape_model import similarity_fit

    history, out = [], []
    for value in shapes:
        current = np.asarray(value, dtype=np.float64)
        total = np.where(np.isfinite(current), current, 0.0)
        weight = np.isfinite(current).all(axis=1, keepdims=True).astype(np.float64)
        for age, past in enumerate(history, start=1):
            ok = np.isfinite(past).all(axis=1) & np.isfinite(current).all(axis=1)
            aligned = past
            if ok.sum() >= 2 and np.ptp(past[ok], axis=0).max() > 0:
                m = similarity_fit(past[ok], current[ok])
                aligned = past @ m[:, :2].T + m[:, 2]
            known = np.isfinite(aligned).all(axis=1, keepdims=True)
            w = (decay ** age) * known
            total += w * np.where(known, aligned, 0.0)
            weight += w
        history = [current.copy(), *history][: window - 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(weight > 0, total / weight, current))
    return out


def test_aligned_filter_batched_fit_matches_one_fit_per_past_shape():
    rng = np.random.default_rng(3)
    base = rng.normal(0, 30, (68, 2)) + 200
    shapes = []
    for t in range(30):
        angle, scale = 0.05 * t, 1 + 0.01 * t
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shape = base @ rot.T + [3 * t, -2 * t] + rng.normal(0, 1.5, base.shape)
        if t % 7 == 3:
            shape[rng.choice(68, 10, replace=False)] = np.nan  # missing points
        if t == 12:
            shape[1:] = np.nan  # one point left: nothing to fit
        if t == 20:
            shape[:] = shape[0]  # collapsed to one point: no spread
        shapes.append(shape)
    for window, decay in ((5, 0.7), (8, 1.0)):
        f = AlignedShapeFilter(window, decay)
        got = [f(s) for s in shapes]
        for g, want in zip(got, _reference_filter(shapes, window, decay)):
            np.testing.assert_allclose(g, want, rtol=0, atol=1e-9, equal_nan=True)
