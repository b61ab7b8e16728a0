"""One-euro filter (Casiez et al., CHI 2012) for landmark trajectories in live use.

Off by default: benchmarks and evaluation must see the raw model. The filter adapts its cut-off to the speed,
so a still face stops jittering while a moving one lags little.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: float | np.ndarray, dt: float) -> float | np.ndarray:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Element-wise one-euro filter over arrays of a fixed shape (e.g. (N, 2) landmarks).

    ``min_cutoff`` (Hz) sets the smoothing of a still signal, ``beta`` how fast the cut-off rises with speed
    (in signal units per second), ``d_cutoff`` the smoothing of the speed estimate itself.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0; got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the past (a track re-initialised on a new detection must not be pulled to its old place)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, value: np.ndarray, time_s: float) -> np.ndarray:
        """The filtered value at ``time_s`` (seconds, increasing)."""
        x = np.asarray(value, dtype=np.float64)
        if self._x is None or self._t is None or self._x.shape != x.shape or time_s <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(time_s)
            return x.copy()
        dt = float(time_s) - self._t
        dx = (x - self._x) / dt
        dx = np.where(np.isfinite(dx), dx, 0.0)
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt)
        # Non-finite inputs (missing points) pass through without poisoning the state.
        filtered = np.where(np.isfinite(x), a * x + (1 - a) * self._x, x)
        self._x = np.where(np.isfinite(filtered), filtered, self._x)
        self._t = float(time_s)
        return filtered
