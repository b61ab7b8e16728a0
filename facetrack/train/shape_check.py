"""Fit the tracker's shape plausibility check (``facetrack.tracking.plausibility``) on training shapes only.

    python -m facetrack.train.shape_check --root ../shared/data/300w --out facetrack/weights/shape_check_ibug68.npz

The shape model is fitted on the training split of the shared 300-W crops (``shared300w --split train``: the held-out
photographs are never used). Its bounds are the ``quantile`` of the training shapes' own distances, widened by
``margin``: a face-like shape the model has not seen (a stronger expression, a profile) must pass, since a failed
check loses the track.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facetrack.data.shape_model import ShapeModel
from facetrack.tracking.plausibility import ShapeCheck


def fit_shape_check(shapes: np.ndarray, variance: float = 0.98, quantile: float = 0.999,
                    margins: tuple[float, float] = (1.5, 2.5)) -> ShapeCheck:
    """A ``ShapeCheck`` from (M, N, 2) training shapes; ``margins`` widen the (Mahalanobis, residual) quantiles.
    The residual's is the wider: it grows fastest with the landmark noise of a model's predictions (a predicted
    shape is noisier than an annotated one), while a lost model's shapes leave it by far (README, "Failure
    detection")."""
    model = ShapeModel.fit(shapes, variance=variance)
    probe = ShapeCheck(model, np.inf, np.inf)
    distances = np.array([probe.distances(s) for s in shapes])
    bounds = np.asarray(margins) * np.quantile(distances, quantile, axis=0)
    model.meta.update({"max_mahalanobis": float(bounds[0]), "max_residual": float(bounds[1]),
                       "variance": variance, "quantile": quantile, "margins": list(margins)})
    return ShapeCheck(model, float(bounds[0]), float(bounds[1]))


def main(argv: list[str] | None = None) -> int:
    from facetrack.evaluation import load_shared300w

    parser = argparse.ArgumentParser(prog="python -m facetrack.train.shape_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="the shared 300-W crops")
    parser.add_argument("--out", type=Path, required=True, help=".npz file to write")
    parser.add_argument("--margins", type=float, nargs=2, default=(1.5, 2.5), metavar=("MAHALANOBIS", "RESIDUAL"))
    args = parser.parse_args(argv)
    shapes = np.stack([s.landmarks for s in load_shared300w(args.root, "train")])
    check = fit_shape_check(shapes, margins=tuple(args.margins))
    check.model.meta.update({"data": "shared300w --split train (300-W training set crops; research use only)",
                             "command": f"python -m facetrack.train.shape_check --root {args.root} --out {args.out}"})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    check.model.save(args.out)
    print(json.dumps({k: v for k, v in check.model.meta.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
