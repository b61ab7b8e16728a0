from __future__ import annotations

import numpy as np
import pytest

from facetrack.metrics.auc import auc_fr, auc_fr_preset, auc_fr_spiga, ced, plot_ced


def uniform(a: float, n: int = 20001) -> np.ndarray:
    return np.linspace(0.0, a, n)


@pytest.mark.parametrize("integrator", ["trapz", "simpson"])
def test_all_zero_errors_give_auc_1_and_fr_0(integrator):
    res = auc_fr(np.zeros(50), 0.08, integrator=integrator)
    assert res["auc"] == pytest.approx(1.0)
    assert res["fr"] == 0.0


def test_all_errors_above_threshold_give_auc_0_and_fr_1():
    for preset in ("star", "sbr", "spiga"):
        res = auc_fr_preset(np.full(30, 0.2), 0.1, preset)
        assert res["auc"] == pytest.approx(0.0), preset
        assert res["fr"] == pytest.approx(1.0), preset


@pytest.mark.parametrize("a,alpha", [(0.04, 0.08), (0.08, 0.08), (0.02, 0.1)])
@pytest.mark.parametrize("integrator", ["trapz", "simpson"])
def test_uniform_errors_match_the_analytic_auc(a, alpha, integrator):
    res = auc_fr(uniform(a), alpha, integrator=integrator)
    assert res["auc"] == pytest.approx(1 - a / (2 * alpha), abs=1e-3)
    assert res["fr"] == 0.0


def test_uniform_errors_beyond_threshold():
    a, alpha = 0.2, 0.08  # CED(e) = e / a on [0, alpha]: AUC = alpha / (2a), FR = 1 - alpha / a
    res = auc_fr(uniform(a), alpha)
    assert res["auc"] == pytest.approx(alpha / (2 * a), abs=1e-3)
    assert res["fr"] == pytest.approx(1 - alpha / a, abs=1e-3)


def test_inclusive_and_strict_rules_differ_at_the_threshold():
    errors = np.full(10, 0.08)
    assert auc_fr(errors, 0.08, inclusive=True)["fr"] == 0.0
    assert auc_fr(errors, 0.08, inclusive=False)["fr"] == 1.0
    assert auc_fr_preset(errors, 0.08, "sbr")["fr"] == 1.0  # SBR: success only if error < alpha


def test_sbr_preset_misses_the_first_grid_interval_for_perfect_predictions():
    res = auc_fr_preset(np.zeros(10), 0.08, "sbr")
    # count(0 < 0) = 0 at x = 0, then 1: trapezoid on 2000 points loses half an interval
    assert res["auc"] == pytest.approx(1 - 0.5 / 1999)
    assert res["num_points"] == 2000 and res["integrator"] == "trapz" and res["inclusive"] is False


def test_star_preset_reproduces_its_arange_grid():
    rng = np.random.default_rng(3)
    errors = rng.gamma(4.0, 0.01, size=500)
    from scipy.integrate import simpson

    for thr in (0.05, 0.08, 0.1):
        xs = np.arange(0, thr + 1e-4, 1e-4)
        ys = np.array([np.count_nonzero(errors <= x) for x in xs]) / len(errors)
        res = auc_fr_preset(errors, thr, "star")
        assert res["auc"] == pytest.approx(simpson(ys, x=xs) / thr, rel=1e-12)
        assert res["fr"] == pytest.approx(1 - ys[-1])
        assert res["preset"] == "star" and res["integrator"] == "simpson"
    # the float overshoot of arange at 0.05 (grid ends at 0.0501) is reproduced, and recorded
    zero = auc_fr_preset(np.zeros(5), 0.05, "star")
    assert zero["auc"] == pytest.approx(1.002)
    assert zero["grid_end"] == pytest.approx(0.0501)
    assert auc_fr_preset(np.zeros(5), 0.08, "star")["auc"] == pytest.approx(1.0)


def test_spiga_histogram_auc():
    res = auc_fr_spiga(uniform(0.04), 0.08)
    assert res["auc"] == pytest.approx(1 - 0.04 / 0.16, abs=1e-3)
    assert res["fr"] == pytest.approx(0.0, abs=1e-9)
    errors = np.concatenate([uniform(0.04, 901), np.full(100, 0.5)])  # 10% far failures
    res = auc_fr_spiga(errors, 0.08)
    assert res["fr"] == pytest.approx(0.0999, abs=2e-3)
    assert res["auc"] == pytest.approx(0.9 * (1 - 0.04 / 0.16), abs=5e-3)  # no tail added: not converged


def test_missing_faces_count_as_failures_and_settings_are_recorded():
    res = auc_fr([0.0, np.inf, np.nan, 0.0], 0.1, step=1e-3)
    assert res["fr"] == 0.5
    assert res["auc"] == pytest.approx(0.5)
    for key in ("threshold", "step", "integrator", "inclusive", "count", "rule", "grid"):
        assert key in res
    assert res["count"] == 4


def test_ced_and_bad_arguments():
    assert ced([0.01, 0.02, 0.03], [0.0, 0.02, 0.05]).tolist() == pytest.approx([0.0, 2 / 3, 1.0])
    assert ced([0.01, 0.02, 0.03], [0.02], inclusive=False).tolist() == pytest.approx([1 / 3])
    with pytest.raises(ValueError):
        auc_fr([], 0.1)
    with pytest.raises(ValueError):
        auc_fr([0.1], 0.0)
    with pytest.raises(ValueError, match="integrator"):
        auc_fr([0.1], 0.1, integrator="romberg")
    with pytest.raises(ValueError, match="preset"):
        auc_fr_preset([0.1], 0.1, "hrnet")


def test_plot_ced_writes_png(tmp_path):
    out = plot_ced({"a": uniform(0.03, 200), "b": uniform(0.06, 200)}, tmp_path / "sub" / "ced.png", 0.08, "t")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [p for p in out.parent.iterdir() if p.name != "ced.png"]  # no temp file left
