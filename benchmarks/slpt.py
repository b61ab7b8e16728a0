"""SLPT / DSLPT (thesis ch. 4-5) against aohr-68 on the held-out 300-W crops: accuracy, stages, patch rule,
occlusion, DSLPT's uncertainty, cost.

    python benchmarks/slpt.py --slpt runs/slpt68_cpu/best.safetensors --dslpt runs/dslpt68_cpu/best.safetensors \
        --out benchmarks/results/slpt

Every number comes from the held-out split (``shared300w --split val``: 202 faces of source photographs no recipe
trains on) through ``facetrack.Detector`` with ground-truth landmark-extent boxes and its default two re-crops, the
code path of ``facetrack detect --boxes`` that ``benchmarks/default_model.py`` scores (the aohr-68 row reproduces
that script's number). Inter-ocular NME (%), AUC@0.08 and FR@0.08 (``facetrack.metrics``: trapezoid, step 1e-4,
inclusive).

* stages: the trained 3-stage models stopped after stage 1, 2 or 3 (``exit_stage``; the thesis also trains 1-,
  2- and 4-stage models separately, Tables 4.5 / 5.13: not done here, one CPU training each).
* patch rule: the trained DSLPT with its dynamic patches vs halving patches (L_down = L_up = 0.5) at inference (the
  thesis trains each rule, Table 5.17).
* occlusion: the same faces with ``--blocks`` random blocks (solid colour or smooth noise), each centred on a
  different randomly chosen face part (brows, eyes, nose, mouth, jaw), side 0.3-0.6 x the inter-ocular distance;
  seeded per face, so every model sees the same pixels. NME over all points and over the covered points.
* uncertainty (DSLPT): Spearman correlation between each landmark's predicted uncertainty (1 - confidence, a
  monotone function of its W sigma) and its error (per point, over all held-out points), and the mean error of the
  10 % most and least confident points; clean and occluded.
* cost: parameters, FLOPs of one forward at batch 1 (``torch.utils.flop_counter``: matmuls and convolutions; the
  bilinear patch sampling is not counted), ms per face (crop + forward + decode, ``Landmarker.predict_boxes``,
  BatchNorm folded, refine 0) on ``--threads`` threads, the models timed in turn within each repetition so a shared
  CPU's load hits them alike.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

PARTS = ("right_brow", "left_brow", "right_eye", "left_eye", "nose", "mouth", "contour")


def load_faces(root: Path) -> tuple[list[np.ndarray], np.ndarray]:
    from facetrack.evaluation import load_shared300w

    samples = load_shared300w(root, "val")
    return [s.load_image() for s in samples], np.stack([np.asarray(s.landmarks, dtype=np.float64) for s in samples])


def occlude(image: np.ndarray, gt: np.ndarray, blocks: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``blocks`` random blocks over distinct face parts; returns the image and which landmarks they cover."""
    from facetrack.schemes import get_scheme

    groups = get_scheme("ibug68").groups
    iod = float(np.linalg.norm(gt[36] - gt[45]))
    out = image.copy()
    mask = np.zeros(image.shape[:2], np.uint8)
    for part in rng.choice(PARTS, size=blocks, replace=False):
        members = gt[list(groups[part])]
        centre = members[rng.integers(len(members))] + rng.normal(0, 0.1 * iod, 2)
        w, h = rng.uniform(0.3, 0.6, 2) * iod
        x0, y0 = int(round(centre[0] - w / 2)), int(round(centre[1] - h / 2))
        x1, y1 = int(round(centre[0] + w / 2)), int(round(centre[1] + h / 2))
        block = np.zeros_like(mask)
        cv2.rectangle(block, (x0, y0), (x1, y1), 255, -1)
        if rng.random() < 0.5:
            fill = np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), image.shape)
        else:
            cells = int(rng.integers(2, 9))
            fill = cv2.resize(rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8), image.shape[1::-1],
                              interpolation=cv2.INTER_CUBIC)
        covered = block > 0
        out[covered] = fill[covered]
        mask |= block
    xy = np.clip(np.round(gt).astype(int), 0, np.array(image.shape[1::-1]) - 1)
    return out, mask[xy[:, 1], xy[:, 0]] > 0


def predict(model: Any, images: list[np.ndarray], gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (M, N, 2) and confidences (M, N) with ground-truth landmark-extent boxes (detect --boxes)."""
    from facetrack import Detector
    from facetrack.data.transforms import box_from_landmarks

    detector = Detector(model=model)
    points, conf = [], []
    for image, g in zip(images, gt):
        (face,) = detector(image, boxes=[box_from_landmarks(g)])
        points.append(face.landmarks)
        conf.append(face.confidences)
    return np.stack(points), np.stack(conf)


def scores(points: np.ndarray, gt: np.ndarray, covered: np.ndarray | None = None) -> dict[str, float]:
    from facetrack.metrics.auc import auc_fr
    from facetrack.metrics.nme import nme, normaliser

    d = normaliser(gt, "ibug68", "ocular")
    per_face = nme(points, gt, d)
    curve = auc_fr(per_face, 0.08)
    row = {"nme": 100 * float(per_face.mean()), "auc": 100 * curve["auc"], "fr": 100 * curve["fr"]}
    if covered is not None:
        per_point = np.linalg.norm(points - gt, axis=-1) / d[:, None]
        row["nme_covered"] = 100 * float(per_point[covered].mean())
        row["nme_uncovered"] = 100 * float(per_point[~covered].mean())
        row["covered_share"] = 100 * float(covered.mean())
    return row


def uncertainty(points: np.ndarray, conf: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr

    from facetrack.metrics.nme import normaliser

    error = (np.linalg.norm(points - gt, axis=-1) / normaliser(gt, "ibug68", "ocular")[:, None]).ravel()
    unsure = (1.0 - conf).ravel()
    order = np.argsort(-conf.ravel(), kind="stable")  # most confident first
    tenth = max(1, len(order) // 10)
    return {"spearman_uncertainty_error": float(spearmanr(unsure, error).statistic),
            "error_most_confident_10pct": 100 * float(error[order[:tenth]].mean()),
            "error_least_confident_10pct": 100 * float(error[order[-tenth:]].mean()),
            "error_all": 100 * float(error.mean())}


def with_options(model: Any, exit_stage: int | None = None, patch_rule: str | None = None) -> Any:
    variant = copy.deepcopy(model)
    variant.config = dict(variant.config)  # the ONNX cache key includes the config: variants get their own graph
    if exit_stage is not None:
        variant.exit_stage = exit_stage
    if patch_rule == "fixed":  # L_down = L_up = 0.5: SLPT's halving
        variant.config = {**variant.config, "patch_rule": "fixed"}
    return variant


def flops(model: Any) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:  # (under no_grad its module tracker fails on the expanded parameters)
        model.eval()(torch.rand(1, 3, model.input_size, model.input_size))
    return counter.get_total_flops() / 1e9


def speed(models: dict[str, Any], runs: int) -> dict[str, dict[str, float]]:
    from facetrack.landmarker import Landmarker

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    box = np.array([[250.0, 100.0, 390.0, 260.0]])
    marks = {name: Landmarker(m, refine=0) for name, m in models.items()}
    for lm in marks.values():
        for _ in range(10):
            lm.predict_boxes(image, box)
    times: dict[str, list[float]] = {name: [] for name in marks}
    for _ in range(runs):
        for name, lm in marks.items():
            t0 = time.perf_counter()
            lm.predict_boxes(image, box)
            times[name].append(1000.0 * (time.perf_counter() - t0))
    return {n: {"ms_median": round(statistics.median(t), 3), "ms_min": round(min(t), 3)} for n, t in times.items()}


def main() -> None:
    from facetrack.models.hub import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slpt", help="trained SLPT weights")
    parser.add_argument("--dslpt", help="trained DSLPT weights")
    parser.add_argument("--baseline", default="aohr-68")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/300w"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/slpt"))
    parser.add_argument("--blocks", type=int, default=3, help="occluding blocks per face")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200, help="timed calls per model")
    parser.add_argument("--limit", type=int, default=0, help="only the first N faces (a smoke test)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["stages", "patch", "occlusion", "cost"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {"aohr-68": load_model(args.baseline)}
    for name, path in (("slpt-68", args.slpt), ("dslpt-68", args.dslpt)):
        if path:
            models[name] = load_model(path)
    images, gt = load_faces(args.root)
    if args.limit:
        images, gt = images[:args.limit], gt[:args.limit]
    occluded, covered = zip(*(occlude(im, g, args.blocks, np.random.default_rng([args.seed, i]))
                              for i, (im, g) in enumerate(zip(images, gt))))
    covered_arr = np.stack(covered)
    report: dict[str, Any] = {
        "command": "python benchmarks/slpt.py " + " ".join(
            f"--{k} {v}" for k, v in (("slpt", args.slpt), ("dslpt", args.dslpt)) if v)
        + f" --out {args.out}" + (f" --limit {args.limit}" if args.limit else "") + (f" --skip {' '.join(args.skip)}" if args.skip else ""),
        "faces": len(images), "protocol": "shared300w val, ground-truth landmark-extent boxes, Detector refine 2",
        "models": {n: getattr(m, "card_path", n).__str__() for n, m in models.items()},
        "accuracy": {}, "occlusion": {}, "stages": {}, "patch_rule": {}, "uncertainty": {}, "cost": {}}
    for name, model in models.items():
        points, conf = predict(model, images, gt)
        report["accuracy"][name] = scores(points, gt)
        if "occlusion" not in args.skip:
            occ_points, occ_conf = predict(model, list(occluded), gt)
            report["occlusion"][name] = scores(occ_points, gt, covered_arr)
        if name == "dslpt-68":
            report["uncertainty"]["clean"] = uncertainty(points, conf, gt)
            if "occlusion" not in args.skip:
                report["uncertainty"]["occluded"] = uncertainty(occ_points, occ_conf, gt)
                conf_cov, conf_unc = occ_conf[covered_arr].mean(), occ_conf[~covered_arr].mean()
                report["uncertainty"]["occluded"].update(mean_conf_covered=float(conf_cov),
                                                         mean_conf_uncovered=float(conf_unc))
        if name != "aohr-68" and "stages" not in args.skip:
            report["stages"][name] = {k: scores(predict(with_options(model, exit_stage=k), images, gt)[0], gt)
                                      for k in (1, 2)}
            report["stages"][name][3] = report["accuracy"][name]
        if name == "dslpt-68" and "patch" not in args.skip:
            fixed = with_options(model, patch_rule="fixed")
            report["patch_rule"] = {"dynamic": report["accuracy"][name],
                                    "fixed (halving)": scores(predict(fixed, images, gt)[0], gt)}
            if "occlusion" not in args.skip:
                report["patch_rule"]["fixed (halving), occluded"] = scores(
                    predict(fixed, list(occluded), gt)[0], gt, covered_arr)
                report["patch_rule"]["dynamic, occluded"] = report["occlusion"][name]
        print(name, json.dumps(report["accuracy"][name]), flush=True)
    if "cost" not in args.skip:
        timed = {}
        for name, model in models.items():
            stages = [None] if name == "aohr-68" else [1, 2, 3]
            for k in stages:
                variant = model if k is None else with_options(model, exit_stage=k)
                label = name if k is None else f"{name} ({k} stage{'s' if k > 1 else ''})"
                timed[label] = variant
                report["cost"][label] = {"parameters": int(sum(p.numel() for p in model.parameters())),
                                         "gflops": round(flops(copy.deepcopy(variant)), 3)}
        for label, row in speed(timed, args.runs).items():
            report["cost"][label].update(row)
        report["cost_machine"] = (f"{os.cpu_count()} CPUs visible, torch {torch.__version__}, {args.threads} threads, "
                                  f"load average {os.getloadavg()[0]:.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "slpt.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (args.out / "summary.md").write_text(summary(report), encoding="utf-8")
    print(summary(report))


def summary(report: dict[str, Any]) -> str:
    lines = [f"Command: `{report['command']}`", "", f"Held-out faces: {report['faces']} ({report['protocol']})", "",
             "| model | NME % | AUC@0.08 | FR@0.08 % | occluded NME % | NME % of covered points |",
             "|---|---|---|---|---|---|"]
    for name, row in report["accuracy"].items():
        occ = report["occlusion"].get(name, {})
        lines.append(f"| {name} | {row['nme']:.2f} | {row['auc']:.1f} | {row['fr']:.2f} | "
                     f"{occ.get('nme', float('nan')):.2f} | {occ.get('nme_covered', float('nan')):.2f} |")
    if report["stages"]:
        lines += ["", "| model | stage 1 NME % | stage 2 NME % | stage 3 NME % |", "|---|---|---|---|"]
        for name, rows in report["stages"].items():
            lines.append(f"| {name} | " + " | ".join(f"{rows[k]['nme']:.2f}" for k in (1, 2, 3)) + " |")
    if report["patch_rule"]:
        lines += ["", "| DSLPT patch rule (inference) | NME % | AUC@0.08 | FR@0.08 % |", "|---|---|---|---|"]
        for rule, row in report["patch_rule"].items():
            lines.append(f"| {rule} | {row['nme']:.2f} | {row['auc']:.1f} | {row['fr']:.2f} |")
    for when, row in report["uncertainty"].items():
        lines.append(f"\nDSLPT uncertainty ({when}): Spearman(uncertainty, error) = {row['spearman_uncertainty_error']:.3f}; "
                     f"error of the 10 % most / least confident points {row['error_most_confident_10pct']:.2f} / "
                     f"{row['error_least_confident_10pct']:.2f} % (all {row['error_all']:.2f} %)")
    if report["cost"]:
        lines += ["", f"Cost ({report.get('cost_machine', '')}):", "",
                  "| model | parameters | GFLOPs | ms/face median | ms/face min |", "|---|---|---|---|---|"]
        for label, row in report["cost"].items():
            lines.append(f"| {label} | {row['parameters']:,} | {row['gflops']:.3f} | {row.get('ms_median', 0):.2f} | "
                         f"{row.get('ms_min', 0):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
