"""Output filters for landmark trajectories: the shape-aligned temporal average and the one-euro filter.

Both act on what a track reports, never on the crops the tracker cuts next, so they add no feedback. The
aligned average (``AlignedShapeFilter``) is the one to use on video: it averages the last few shapes after
mapping each onto the current one by a similarity transform, so the face's rigid motion (the bulk of it on
video) costs no lag and only the non-rigid, frame-to-frame noise is averaged. On held-out pseudo-videos it
halves the jitter of every model at no cost in error, where the one-euro filter (Casiez et al., CHI 2012),
which smooths each coordinate alone, buys its smoothness with lag (benchmarks/README.md, "Output filters").
"""
from __future__ import annotations

import math
from typing import Any, Callable

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


class AlignedShapeFilter:
    """Causal average of the last ``window`` shapes of one face, each first mapped onto the newest shape by
    the similarity that best aligns it (least squares over the points both have), with weight ``decay ** age``.

    Why aligned: between two frames a face mostly moves rigidly, and averaging raw coordinates would drag
    the output behind that motion; after alignment only what changed in the shape itself is averaged: the
    frame-to-frame noise of the model, and real expression changes, which lag a little (``decay`` sets how
    much). Missing (non-finite) points of a past shape are left out of that point's average.
    """

    def __init__(self, window: int = 5, decay: float = 0.7) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.window = int(window)
        self.decay = float(decay)
        self.reset()

    def reset(self) -> None:
        """Forget the past (a track re-initialised on a new detection starts afresh)."""
        self._history: list[np.ndarray] = []

    def __call__(self, value: np.ndarray, time_s: float = 0.0) -> np.ndarray:
        """The filtered shape (N, 2) for the newest raw shape ``value``; ``time_s`` is unused (frame-based)."""
        current = np.asarray(value, dtype=np.float64)
        if self._history and self._history[0].shape != current.shape:
            self.reset()
        total = np.where(np.isfinite(current), current, 0.0)
        weight = np.isfinite(current).all(axis=1, keepdims=True).astype(np.float64)
        if self._history:  # every past shape in one batched similarity fit (a loop of fits cost 5x as much)
            aligned = _aligned(np.stack(self._history), current)
            known = np.isfinite(aligned).all(axis=2, keepdims=True)
            w = (self.decay ** np.arange(1, len(aligned) + 1))[:, None, None] * known
            total += (w * np.where(known, aligned, 0.0)).sum(axis=0)
            weight += w.sum(axis=0)
        self._history = [current.copy(), *self._history][: self.window - 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / weight
        return np.where(weight > 0, out, current)


def _aligned(past: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Each of the (A, N, 2) shapes ``past`` mapped onto ``current`` (N, 2) by the least-squares similarity over the
    points both have (``similarity_fits``); a shape is left as it is when fewer than two points are shared or they
    do not spread."""
    from facetrack.data.shape_model import apply_similarities, similarity_fits

    known = np.isfinite(past).all(axis=2) & np.isfinite(current).all(axis=1)[None]
    fits = similarity_fits(past, current, known)
    ok = np.isfinite(fits).all(axis=(1, 2))
    return np.where(ok[:, None, None], apply_similarities(np.nan_to_num(fits), past), past)


# What ``--smooth`` / ``smoothing=True`` give; the parameters of ``AlignedShapeFilter`` were chosen on held-out
# pseudo-videos (benchmarks/README.md, "Output filters").
SMOOTHING_DEFAULTS: dict[str, dict[str, float]] = {
    "aligned": {"window": 5, "decay": 0.7},
    "one-euro": {"min_cutoff": 1.0, "beta": 0.05, "d_cutoff": 1.0},
}


def smoothing_params(smoothing: bool | str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A full filter spec ``{"method": ..., **parameters}`` from True (the aligned filter), a method name, or a
    partial spec (``method`` defaults to "aligned"); None/False: no filter."""
    if smoothing is None or smoothing is False:
        return None
    spec: dict[str, Any] = {"method": "aligned"} if smoothing is True else \
        {"method": smoothing} if isinstance(smoothing, str) else dict(smoothing)
    method = str(spec.pop("method", "aligned"))
    if method not in SMOOTHING_DEFAULTS:
        raise ValueError(f"unknown smoothing method {method!r}; known: {', '.join(SMOOTHING_DEFAULTS)}")
    unknown = set(spec) - set(SMOOTHING_DEFAULTS[method])
    if unknown:
        raise ValueError(f"smoothing {method!r} takes {', '.join(SMOOTHING_DEFAULTS[method])}, not {sorted(unknown)}")
    return {"method": method, **SMOOTHING_DEFAULTS[method], **spec}


def make_filter(spec: dict[str, Any]) -> Callable[[np.ndarray, float], np.ndarray]:
    """A fresh filter (one per track) for a spec of ``smoothing_params``."""
    params = {k: v for k, v in spec.items() if k != "method"}
    if spec["method"] == "aligned":
        return AlignedShapeFilter(int(params["window"]), float(params["decay"]))
    return OneEuroFilter(**params)
