"""TUFA's inference modes measured on held-out faces: a scheme's landmarks, zero-shot plane points, other schemes.

    python benchmarks/tufa.py --model runs/tufa_cpu_mixed/best.safetensors --zero-shot
    python benchmarks/tufa.py --model runs/tufa_fewshot_mtfl5_20/best.safetensors --dataset mtfl5 --scheme mtfl5
    python benchmarks/tufa.py --model aohr-68 --dataset mtfl5      # a 68-point model mapped to the scheme

Faces: the held-out ``val`` split of a catalogue dataset (``shared300w``: the held-out 300-W crops). Crops: each
face's ground-truth box, cut as in training (for schemes without a full face outline: the extent of the model's
68-point mean shape similarity-fitted to the face's labelled points; ``facetrack.train.multi.to_ibug68``).

* ``--scheme NAME``: a TUFA model answers with that training dataset's anchors (``--scheme`` is one of the model's
  datasets, e.g. a few-shot entry); a 68-point model's output is mapped to the dataset's scheme through
  ``facetrack.schemes.ibug68_to`` (each point the mean of its iBUG-68 correspondences).
* ``--plane-from-mean`` (TUFA): zero-shot on a scheme the model never saw: the dataset's own mean shape,
  affine-aligned onto the model's plane (thesis section 6.2.4: "the affine-aligned mean shape of another dataset").
* ``--zero-shot`` (TUFA, 68-point datasets): asks for the 16 midpoints of the jaw line between neighbouring
  anchors on the plane, points no dataset labels, and scores them against the midpoints of the ground-truth jaw
  points; the reference is the same midpoints computed from the model's own predictions of the jaw points.
* On a 68-point dataset the result also gives the 17 jaw points' and the 51 other points' NME apart: for a model
  trained with the jaw withheld (``mix.withhold``, ``configs/tufa68_mixed_nojaw.yaml``) its jaw answers are
  zero-shot, asked through the jaw's positions on the mean face (its anchors there, whose embeddings never moved).
  Baseline: ``jaw_from_mean_shape_fit``, the model's mean shape similarity-fitted to its own 51 other points.

NME uses the dataset's headline normaliser (``facetrack.data.catalog``); the result is printed and written to
``--out`` as JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from facetrack.data import catalog
from facetrack.data.transforms import apply_affine, box_from_landmarks, crop_for_inference, invert_affine
from facetrack.metrics.auc import auc_fr
from facetrack.metrics.nme import nme, normaliser
from facetrack.models.hub import load_model
from facetrack.schemes import get_scheme, ibug68_to

JAW = list(range(17))


def crops_of(samples: list, mean68: np.ndarray, size: int, scale: float) -> tuple[torch.Tensor, np.ndarray]:
    """Model-input crops of ground-truth boxes and their image->crop matrices."""
    from facetrack.train.multi import Source, to_ibug68

    scheme = get_scheme(samples[0].scheme)
    if scheme.name == "ibug68":
        boxes = [box_from_landmarks(s.landmarks) for s in samples]
    else:
        from facetrack.train.multi import scheme_correspondence

        corr = scheme_correspondence(scheme.name)
        filled = to_ibug68(Source(scheme.name, scheme.num_points, scheme.flip_perm, corr, samples), mean68, "single")
        boxes = [box_from_landmarks(f.landmarks) for f in filled]
    crops, matrices = [], []
    for s, box in zip(samples, boxes):
        crop, matrix = crop_for_inference(s.load_image(), box, size, scale)
        crops.append(crop[:, :, ::-1].transpose(2, 0, 1) / 255.0)
        matrices.append(matrix)
    return torch.as_tensor(np.stack(crops), dtype=torch.float32), np.stack(matrices)


def to_image(coords: torch.Tensor, matrices: np.ndarray) -> np.ndarray:
    return np.stack([apply_affine(c, invert_affine(m)) for c, m in zip(coords.numpy().astype(np.float64), matrices)])


def summary(errors: np.ndarray, threshold: float) -> dict:
    curve = auc_fr(errors, threshold)
    return {"nme_pct": round(100 * float(errors.mean()), 3), "auc_pct": round(100 * curve["auc"], 2),
            "fr_pct": round(100 * curve["fr"], 2), "faces": int(len(errors)), "threshold": threshold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="shared300w")
    parser.add_argument("--root", type=Path, default=None, help="default: ../shared/data/<dataset> (300w for shared300w)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--scheme", default=None, help="TUFA: which of its datasets' anchors to ask for")
    parser.add_argument("--zero-shot", action="store_true")
    parser.add_argument("--plane-from-mean", action="store_true",
                        help="TUFA, zero-shot on a new scheme: ask for the dataset's own mean shape (from its training "
                             "faces) affine-aligned onto the model's 68-point plane through the scheme's iBUG-68 "
                             "correspondences, with no training on it")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.root or Path("../shared/data") / ("300w" if args.dataset == "shared300w" else args.dataset)
    samples = catalog.load(args.dataset, root, args.split)
    model = load_model(args.model).eval()
    tufa = model.arch == "tufa"
    mean68 = model.anchors().detach().numpy() if tufa else None
    if mean68 is None:  # a 68-point model: any plausible 68-point mean face serves to place partial faces
        from facetrack.data.shape_model import procrustes_align

        mean68 = procrustes_align(np.stack([s.landmarks for s in catalog.load("shared300w", "../shared/data/300w",
                                                                               "train")]))[1]
    scheme = samples[0].scheme
    kind = catalog.normalisers(args.dataset)[0]
    threshold = catalog.get_dataset(args.dataset).threshold or 0.08
    scale = float(getattr(model, "card", {}).get("crop", {}).get("scale", 1.25))
    t0 = time.perf_counter()
    crops, matrices = crops_of(samples, mean68, model.input_size, scale)
    gt = np.stack([s.landmarks for s in samples])
    norm = normaliser(gt, scheme, kind)
    result: dict = {"model": args.model, "dataset": args.dataset, "split": args.split, "normaliser": kind,
                    "scheme": scheme}
    with torch.no_grad():
        if tufa and args.plane_from_mean:
            from facetrack.train.multi import load_source
            from facetrack.train.tufa import plane_shapes

            source = load_source(args.dataset, root, "train")
            reference = model.anchors().detach().numpy()
            plane = torch.as_tensor(plane_shapes([], [source], reference)[source.name], dtype=torch.float32)
            coords, _ = model.predict_points(crops, plane)
            result["plane"] = f"{args.dataset} training mean shape, affine-aligned onto the model's plane (zero-shot)"
        elif tufa:
            plane = model.anchors(args.scheme).detach()
            coords, _ = model.predict_points(crops, plane)
        else:
            coords, _ = model.predict(crops)
    pred = to_image(coords, matrices)
    if pred.shape[1] != gt.shape[1]:
        pred = ibug68_to(pred, scheme)
    result["scheme_points"] = summary(nme(pred, gt, norm), threshold)
    if scheme == "ibug68":  # the jaw and the rest apart: the zero-shot protocol withholds the jaw in training
        rest = [i for i in range(68) if i not in JAW]
        result["jaw_points"] = summary(nme(pred[:, JAW], gt[:, JAW], norm), threshold)
        result["other_points"] = summary(nme(pred[:, rest], gt[:, rest], norm), threshold)
        if tufa:  # the zero-shot baseline: the model's mean shape similarity-fitted to its own 51 other points
            from facetrack.data.shape_model import similarity_fit

            mean = model.mean_shape().detach().numpy().astype(np.float64)
            fits = [similarity_fit(mean[rest], p[rest]) for p in pred]
            fitted = np.stack([mean @ f[:, :2].T + f[:, 2] for f in fits])
            result["jaw_from_mean_shape_fit"] = summary(nme(fitted[:, JAW], gt[:, JAW], norm), threshold)
    if tufa:
        result["withheld_in_training"] = (getattr(model, "card", {}).get("tufa") or {}).get("withheld", {})
    if args.zero_shot:
        if not tufa or scheme != "ibug68":
            raise SystemExit("--zero-shot needs a TUFA model and a 68-point dataset")
        anchors = model.anchors(args.scheme).detach()
        mids = 0.5 * (anchors[JAW[:-1]] + anchors[JAW[1:]])
        with torch.no_grad():
            zero, _ = model.predict_points(crops, mids)
        zero = to_image(zero, matrices)
        gt_mid = 0.5 * (gt[:, JAW[:-1]] + gt[:, JAW[1:]])
        interp = 0.5 * (pred[:, JAW[:-1]] + pred[:, JAW[1:]])
        result["zero_shot_jaw_midpoints"] = summary(nme(zero, gt_mid, norm), threshold)
        result["interpolated_jaw_midpoints"] = summary(nme(interp, gt_mid, norm), threshold)
        # zero-shot answers sit on the face's jaw: their distance from the chord of the two predicted neighbours
        result["zero_shot_vs_interpolated_px_median"] = round(float(np.median(np.linalg.norm(zero - interp, axis=-1))), 3)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
