from __future__ import annotations

import numpy as np
import pytest

from facetrack.metrics.stability import fhr_stability, frame_nme, nmj, video_nrmse


def face(t_len: int = 20, velocity=(2.0, 1.0), rng=None) -> np.ndarray:
    """A 5-point face 100 px wide and 80 px tall moving linearly (or with noise when rng is given)."""
    base = np.array([[0.0, 0.0], [100.0, 0.0], [50.0, 40.0], [20.0, 80.0], [80.0, 80.0]])
    t = np.arange(t_len, dtype=float)[:, None, None]
    track = base[None] + t * np.asarray(velocity)[None, None]
    if rng is not None:
        track = track + rng.normal(0, 1.5, track.shape)
    return track


def test_alternating_offset_gives_known_jitter():
    gt = face()
    d = 0.5
    sign = np.where(np.arange(len(gt)) % 2 == 0, 1.0, -1.0)[:, None, None]
    pred = gt + sign * np.array([d, 0.0])
    res = fhr_stability(pred, gt)
    w = 100.0 / 100  # max(range_x, range_y) / 100
    assert res["e3_jitter"] == pytest.approx(2 * d / w)
    assert res["e2_accuracy"] == pytest.approx(d / w)
    assert fhr_stability(gt, gt)["e3_jitter"] == pytest.approx(0.0, abs=1e-12)  # linear GT has no jitter


def test_constant_offset_keeps_ground_truth_jitter(rng):
    gt = face(rng=rng)
    pred = gt + np.array([3.0, -2.0])
    res, floor = fhr_stability(pred, gt), fhr_stability(gt, gt)
    assert res["e3_jitter"] == pytest.approx(floor["e3_jitter"])
    assert res["e4_jitter_velocity_invariant"] == pytest.approx(floor["e4_jitter_velocity_invariant"])
    assert floor["e3_jitter"] > 0
    assert nmj(pred, gt) == pytest.approx(0.0, abs=1e-9)


def test_one_frame_lag_gives_delay_one():
    gt = face(velocity=(3.0, -1.0))
    pred = gt.copy()
    pred[1:] = gt[:-1]
    assert fhr_stability(pred, gt)["e1_delay"] == pytest.approx(1.0)
    assert fhr_stability(gt, gt)["e1_delay"] == pytest.approx(0.0)


def test_velocity_invariant_jitter_ignores_uneven_speed():
    gt = face(velocity=(2.0, 0.0))
    pred = gt.copy()
    t = np.arange(len(gt), dtype=float)
    pred[:, :, 0] += (t**2 * 0.3)[:, None]  # accelerating along a straight line
    res = fhr_stability(pred, gt)
    assert res["e3_jitter"] > 0.1
    assert res["e4_jitter_velocity_invariant"] == pytest.approx(0.0, abs=1e-9)


def test_invalid_frames_are_skipped():
    gt = face(t_len=6)
    gt[3] = gt[3, :1]  # a collapsed frame (zero extent) is invalid
    pred = gt + np.array([1.0, 0.0])
    res = fhr_stability(pred, gt)
    assert res["e2_accuracy"] == pytest.approx(1.0)  # the collapsed frame would give inf
    assert np.isnan(fhr_stability(pred[:2], gt[:2])["e3_jitter"])  # no valid triple


def test_nmj_of_alternating_residual():
    gt = face(t_len=10, velocity=(0.0, 0.0))
    sign = np.where(np.arange(10) % 2 == 0, 1.0, -1.0)[:, None, None]
    pred = gt + sign * np.array([0.0, 1.0])
    s = np.sqrt(100 * 80 / 256**2)
    assert nmj(pred, gt) == pytest.approx(100 * 2.0 / s)


def test_frame_nme_and_both_video_averages():
    gt = face(t_len=4)
    pred = gt + np.array([0.0, 5.0])
    assert frame_nme(pred, gt, (0, 1)) == pytest.approx(np.full(4, 0.05))
    summary = video_nrmse({"a": [0.1, 0.1, 0.1], "b": [0.4]})
    assert summary["per_video_mean"] == pytest.approx(0.25)
    assert summary["frame_pooled_mean"] == pytest.approx(0.175)
    assert summary["videos"] == 2 and summary["frames"] == 4
    with pytest.raises(ValueError):
        fhr_stability(pred[:, :3], gt)
