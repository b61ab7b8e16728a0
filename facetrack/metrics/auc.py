"""Cumulative error distribution (CED), area under it (AUC@alpha) and failure rate (FR@alpha).

Codebases integrate the CED differently (grid, integrator, ``<`` vs ``<=``; EVALUATION.md section 2) and
the differences move the third digit of published AUCs. Every setting is therefore a parameter, the
conventions of STAR, SBR and SPIGA are presets, and :func:`auc_fr` returns the settings with the numbers so
result files record them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

INTEGRATORS = ("trapz", "simpson")

# Named conventions. ``num`` (a linspace of that many points) replaces ``step`` when set. scipy's
# ``simpson`` (scipy >= 1.11) treats an even number of samples differently from the ``simps`` these
# codebases ran with, which moves AUCs in the 4th-5th digit on grids with an even point count.
PRESETS: dict[str, dict[str, Any]] = {
    # ZhenglinZhou/STAR lib/metric/fr_and_auc.py: arange(0, a + 1e-4, 1e-4), count(nme <= x), simps;
    # threshold 0.05 for 300W, 0.1 otherwise (also LDEQ's compute_fr_and_auc with 0.1).
    "star": {"step": 1e-4, "num": None, "integrator": "simpson", "inclusive": True, "grid": "arange"},
    # D-X-Y/landmark-detection SBR/lib/xvision/common_eval.py: linspace(0, a, 2000), count(nme < x),
    # sklearn.metrics.auc (trapezoid); "acc@a" = fraction < a, so FR = fraction >= a.
    "sbr": {"step": None, "num": 2000, "integrator": "trapz", "inclusive": False},
}


def _clean(errors: Any) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64).ravel()
    if e.size == 0:
        raise ValueError("no errors to summarise")
    return np.where(np.isnan(e), np.inf, e)  # a NaN error is a face that could not be scored: a failure


def ced(errors: Any, thresholds: Any, inclusive: bool = True) -> np.ndarray:
    """Fraction of faces with error ``<= t`` (``< t`` when not inclusive) for each threshold ``t``."""
    e = np.sort(_clean(errors))
    t = np.asarray(thresholds, dtype=np.float64)
    side = "right" if inclusive else "left"
    return np.searchsorted(e, t, side=side) / e.size


def _integrate(ys: np.ndarray, xs: np.ndarray, integrator: str) -> float:
    if integrator == "trapz":
        trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
        return float(trapezoid(ys, xs))
    if integrator == "simpson":
        from scipy.integrate import simpson

        return float(simpson(ys, x=xs))
    raise ValueError(f"unknown integrator {integrator!r}; known: {', '.join(INTEGRATORS)}")


def auc_fr(
    errors: Any,
    threshold: float,
    step: float | None = 1e-4,
    integrator: str = "trapz",
    inclusive: bool = True,
    num: int | None = None,
    grid: str = "exact",
) -> dict[str, Any]:
    """AUC@threshold (CED integrated on ``[0, threshold]`` / threshold) and FR@threshold.

    ``grid="exact"``: ``round(threshold / step) + 1`` evenly spaced points ending exactly at the threshold
    (or ``num`` points when given); FR is the fraction with error ``> threshold`` (``>=`` when not
    inclusive). ``grid="arange"`` reproduces STAR's ``np.arange(0, threshold + step, step)``, whose float
    rounding can add a point past the threshold (0.0501 for 0.05): the integral then runs to that point
    (an all-correct set scores 1.002) and FR is measured there. NaN or inf errors (missed faces) fail.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    e = _clean(errors)
    if grid == "arange":
        if num is not None or step is None or not step > 0:
            raise ValueError("grid='arange' needs a positive step and no num")
        xs = np.arange(0.0, threshold + step, step)
    elif grid == "exact":
        if num is None:
            if step is None or not step > 0:
                raise ValueError("give a positive step or a number of grid points")
            num = int(round(threshold / step)) + 1
        if num < 2:
            raise ValueError("the CED grid needs at least 2 points")
        xs = np.linspace(0.0, threshold, num)
    else:
        raise ValueError(f"unknown grid {grid!r}; known: exact, arange")
    ys = ced(e, xs, inclusive)
    auc = _integrate(ys, xs, integrator) / threshold
    if grid == "arange":
        fr = float(1.0 - ys[-1])
    else:
        fr = float(np.mean(e > threshold) if inclusive else np.mean(e >= threshold))
    return {
        "auc": auc,
        "fr": fr,
        "threshold": float(threshold),
        "step": float(xs[1] - xs[0]),
        "num_points": int(len(xs)),
        "grid_end": float(xs[-1]),
        "grid": grid,
        "integrator": integrator,
        "inclusive": bool(inclusive),
        "rule": "success if error <= x" if inclusive else "success if error < x",
        "count": int(e.size),
    }


def auc_fr_preset(errors: Any, threshold: float, preset: str) -> dict[str, Any]:
    """:func:`auc_fr` (or :func:`auc_fr_spiga`) with a named codebase's convention; records the preset."""
    preset = preset.lower()
    if preset == "spiga":
        return auc_fr_spiga(errors, threshold)
    if preset not in PRESETS:
        raise ValueError(f"unknown AUC preset {preset!r}; known: {', '.join([*PRESETS, 'spiga'])}")
    result = auc_fr(errors, threshold, **PRESETS[preset])
    result["preset"] = preset
    return result


def auc_fr_spiga(errors: Any, threshold: float, bins: int = 10000) -> dict[str, Any]:
    """SPIGA's AUC/FR (spiga/eval/benchmark/metrics/landmarks.py), reproduced for comparison.

    SPIGA builds the CED from a ``bins``-bin histogram spanning [min error, max error], keeps the bins
    whose left edge is below the threshold, integrates with Simpson from the smallest error (not from 0),
    and adds the missing tail ``(a - last edge) / a`` when every face has converged. FR = 1 - CED at the
    last kept edge. Missed faces (inf) are failures but stay out of the histogram range.
    """
    from scipy.integrate import simpson

    e = _clean(errors)
    finite = e[np.isfinite(e)]
    n = e.size
    settings = {
        "threshold": float(threshold),
        "bins": int(bins),
        "grid": "histogram",
        "integrator": "simpson",
        "inclusive": True,
        "rule": "SPIGA histogram CED from the smallest error, tail added when converged",
        "count": int(n),
        "preset": "spiga",
    }
    if finite.size == 0:
        return {"auc": 0.0, "fr": 1.0, **settings}
    counts, edges = np.histogram(finite, bins=bins)
    cumulative = np.cumsum(counts) / n
    base = edges[:bins]
    keep = base < threshold
    base, cumulative = base[keep], cumulative[keep]
    if base.size == 0:
        return {"auc": 0.0, "fr": 1.0, **settings}
    auc = float(simpson(cumulative, x=base)) / threshold if base.size > 1 else 0.0
    if base[-1] < threshold and math.isclose(cumulative[-1], 1.0):
        auc += (threshold - base[-1]) / threshold
    return {"auc": auc, "fr": float(1.0 - cumulative[-1]), **settings}


def plot_ced(curves: dict[str, Any], path: str | Path, threshold: float, title: str | None = None) -> Path:
    """Draw CED curves to a PNG (see :mod:`facetrack.metrics.plots`; matplotlib loads only here)."""
    from facetrack.metrics.plots import plot_ced as _plot_ced

    return _plot_ced(curves, path, threshold, title)
