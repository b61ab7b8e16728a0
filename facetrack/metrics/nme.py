"""Normalised mean error (NME): per-image error of predicted landmarks, divided by a face-size normaliser.

The field uses several normalisers (EVALUATION.md section 1) and results are only comparable when the same
one is used, so the normaliser is always a named ``kind`` and callers record it with every result.
Errors here are fractions; reports multiply by 100.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from facetrack.schemes import Scheme

log = logging.getLogger(__name__)

NORMALISERS = ("ocular", "pupil", "bbox", "diagonal", "max_side", "height")
BOX_KINDS = ("bbox", "diagonal", "max_side", "height")

def _resolve_scheme(scheme: Scheme | str) -> Any:
    if isinstance(scheme, str):
        from facetrack.schemes import get_scheme

        return get_scheme(scheme)
    return scheme


def _as_batch(points: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) or (M, N, 2), got {arr.shape}")
    return arr


def _extent_boxes(gt: np.ndarray) -> np.ndarray:
    """Tight [x0, y0, x1, y1] of each face's landmarks (SPIGA's ``lnd_bbox``), NaN points ignored."""
    from facetrack.geometry import box_or_nan

    return np.stack([box_or_nan(g) for g in gt]).reshape(-1, 4)


def normaliser(
    gt: np.ndarray,
    scheme: Scheme | str,
    kind: str = "ocular",
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Per-face normalising distance ``(M,)`` from ground truth ``(M, N, 2)`` (or ``(N, 2)``).

    Box kinds use the annotated ``boxes`` ``(M, 4)`` ``[x0, y0, x1, y1]`` when given, else the landmark
    extent; :func:`normaliser_label` says which, for the result file.
    """
    g = _as_batch(gt, "gt")
    if kind == "ocular":
        sch = _resolve_scheme(scheme)
        if sch.ocular is None:
            raise ValueError(f"scheme {sch.name} has no outer eye corners; use another normaliser")
        a, b = sch.ocular
        d = np.linalg.norm(g[:, a] - g[:, b], axis=-1)
    elif kind == "pupil":
        sch = _resolve_scheme(scheme)
        if sch.pupils is None:
            raise ValueError(f"scheme {sch.name} has no pupil definition; use another normaliser")
        right, left = sch.pupils
        d = np.linalg.norm(g[:, list(right)].mean(axis=1) - g[:, list(left)].mean(axis=1), axis=-1)
    elif kind in BOX_KINDS:
        if boxes is None:
            box = _extent_boxes(g)
        else:
            box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            if len(box) != len(g):
                raise ValueError(f"got {len(box)} boxes for {len(g)} faces")
        w = box[:, 2] - box[:, 0]
        h = box[:, 3] - box[:, 1]
        if kind == "bbox":
            d = np.sqrt(np.clip(w, 0, None) * np.clip(h, 0, None))
        elif kind == "diagonal":
            d = np.hypot(w, h)
        elif kind == "max_side":
            d = np.maximum(w, h)
        else:
            d = h
    else:
        raise ValueError(f"unknown normaliser {kind!r}; known: {', '.join(NORMALISERS)}")
    return d


def normaliser_label(kind: str, boxes_given: bool) -> str:
    """A precise name of the normaliser actually used, for result files (box kinds differ by box source)."""
    if kind in BOX_KINDS:
        return f"{kind}:{'annotated_box' if boxes_given else 'landmark_extent'}"
    return kind


def nme(
    pred: np.ndarray,
    gt: np.ndarray,
    norm: np.ndarray | float,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """Per-face NME ``(M,)``: mean point-to-point distance over (visible) points divided by ``norm``.

    A face whose prediction has any non-finite coordinate gets ``inf`` so that failure rates count it.
    """
    p = _as_batch(pred, "pred")
    g = _as_batch(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    d = np.broadcast_to(np.asarray(norm, dtype=np.float64), (len(g),))
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise ValueError("normaliser must be finite and positive for every face (degenerate ground truth?)")
    with np.errstate(invalid="ignore"):
        dist = np.linalg.norm(p - g, axis=-1)  # (M, N)
    if visible is None:
        mask = np.ones(dist.shape, dtype=bool)
    else:
        mask = np.broadcast_to(np.asarray(visible, dtype=bool).reshape(-1, g.shape[1]), dist.shape)
    counts = mask.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError("a face has no visible landmark to score")
    bad = ~np.all(np.isfinite(p), axis=(1, 2))
    dist = np.where(mask, np.nan_to_num(dist, nan=0.0, posinf=0.0), 0.0)
    err = dist.sum(axis=1) / counts / d
    err[bad] = np.inf
    return err


def component_nme(
    pred: np.ndarray,
    gt: np.ndarray,
    norm: np.ndarray | float,
    scheme: Scheme | str,
    visible: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """NME per facial component (the scheme's ordered groups), e.g. to see whether the contour dominates."""
    sch = _resolve_scheme(scheme)
    p = _as_batch(pred, "pred")
    g = _as_batch(gt, "gt")
    vis = None if visible is None else np.asarray(visible, dtype=bool).reshape(len(g), -1)
    out: dict[str, np.ndarray] = {}
    for name, idx in sch.groups.items():
        idx = list(idx)
        v = None if vis is None else vis[:, idx]
        if v is not None and not np.all(v.any(axis=1)):
            # faces with the whole component hidden do not contribute to that component
            keep = v.any(axis=1)
            errs = np.full(len(g), np.nan)
            if keep.any():
                n = norm if np.ndim(norm) == 0 else np.asarray(norm)[keep]
                errs[keep] = nme(p[keep][:, idx], g[keep][:, idx], n, v[keep])
            out[name] = errs
        else:
            out[name] = nme(p[:, idx], g[:, idx], norm, v)
    return out


class NMEMetric:
    """Accumulates per-face errors over a dataset and reports NME for each normaliser.

    Like mmpose's NME metric it knows dataset defaults (the catalogue's ``normalisers``, ``facetrack.data.catalog``) so a
    caller only names the dataset; ``norms`` overrides them. Missing predictions (``pred=None``) score ``inf``.
    """

    def __init__(
        self,
        scheme: Scheme | str,
        dataset: str | None = None,
        norms: Sequence[str] | str | None = None,
        use_visible: bool = False,
    ) -> None:
        self.scheme = _resolve_scheme(scheme)
        if norms is None:
            if dataset is None:
                norms = ("ocular",)
            else:
                from facetrack.data.catalog import get_dataset

                try:
                    norms = get_dataset(dataset).normalisers
                except KeyError:
                    raise ValueError(f"no default normaliser for dataset {dataset!r}; pass norms=") from None
        elif isinstance(norms, str):
            norms = (norms,)
        for kind in norms:
            if kind not in NORMALISERS:
                raise ValueError(f"unknown normaliser {kind!r}; known: {', '.join(NORMALISERS)}")
        self.norms: tuple[str, ...] = tuple(norms)
        self.dataset = dataset
        self.use_visible = use_visible
        self.reset()

    def reset(self) -> None:
        self._errors: dict[str, list[float]] = {k: [] for k in self.norms}
        self._components: dict[str, dict[str, list[float]]] = {k: {} for k in self.norms}
        self._box_sources: set[bool] = set()
        self.ids: list[Any] = []

    def update(
        self,
        pred: np.ndarray | None,
        gt: np.ndarray,
        box: np.ndarray | None = None,
        visible: np.ndarray | None = None,
        face_id: Any = None,
    ) -> dict[str, float]:
        """Score one face (``(N, 2)`` arrays); returns its error per normaliser."""
        g = _as_batch(gt, "gt")
        p = np.full_like(g, np.nan) if pred is None else _as_batch(pred, "pred")
        vis = visible if self.use_visible else None
        boxes = None if box is None else np.asarray(box, dtype=np.float64).reshape(1, 4)
        result: dict[str, float] = {}
        for kind in self.norms:
            d = normaliser(g, self.scheme, kind, boxes)
            e = float(nme(p, g, d, vis)[0])
            self._errors[kind].append(e)
            result[kind] = e
            if self.scheme.groups:
                comp = component_nme(p, g, d, self.scheme, vis)
                for name, val in comp.items():
                    self._components[kind].setdefault(name, []).append(float(val[0]))
            if kind in BOX_KINDS:
                self._box_sources.add(box is not None)
        self.ids.append(face_id)
        return result

    def errors(self, kind: str | None = None) -> np.ndarray:
        """Per-face errors (fractions) in update order."""
        return np.asarray(self._errors[kind or self.norms[0]], dtype=np.float64)

    def component_errors(self, kind: str | None = None) -> dict[str, np.ndarray]:
        """Per-face errors of each facial component (NaN where a component was fully hidden)."""
        comps = self._components[kind or self.norms[0]]
        return {name: np.asarray(v, dtype=np.float64) for name, v in comps.items()}

    def compute(self) -> dict[str, dict[str, Any]]:
        """Per normaliser: mean NME over scored faces (misses excluded from the mean, counted apart)."""
        out: dict[str, dict[str, Any]] = {}
        for kind in self.norms:
            errs = self.errors(kind)
            finite = np.isfinite(errs)
            label = normaliser_label(kind, boxes_given=self._box_sources == {True})
            if kind in BOX_KINDS and len(self._box_sources) > 1:
                label = f"{kind}:mixed"
                log.warning("normaliser %s used annotated boxes for some faces and landmark extent for others", kind)
            comps = {
                name: float(np.nanmean(np.asarray(v)[finite])) if finite.any() else float("nan")
                for name, v in self._components[kind].items()
            }
            out[kind] = {
                "normaliser": label,
                "nme": float(errs[finite].mean()) if finite.any() else float("nan"),
                "count": int(len(errs)),
                "scored": int(finite.sum()),
                "missing": int((~finite).sum()),
                "components": comps,
            }
        return out
