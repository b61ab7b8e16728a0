from __future__ import annotations

import numpy as np
import pytest

from facetrack.tracking.smoothing import OneEuroFilter


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
