"""Rolled faces: held-out 300-W faces turned by 0/30/60/90/180 degrees, through ``detect`` and ``track``'s start.

    python benchmarks/rotation.py --model aohr-68 --tracker 1dformer-68 --out benchmarks/results/rotation.md

Each held-out face (``shared300w --split val``: source photographs no shipped recipe trains on) is turned about
its landmark centre by each angle, on a canvas that keeps the whole photograph (black corners); the ground truth
turns with it. ``detect``: ``facetrack.Detector`` (default face detector, its five points, the
engine's re-crop passes). ``track init``: the first frame of ``facetrack track`` (the tracking loop's detection,
start and validation). A face is found when the returned face nearest the truth has its landmark centre within
one inter-ocular distance of the truth's; NME (inter-ocular, %) and FR@8 % are over found faces,
misses are listed apart. Why: models trained on faces within ~15 degrees of upright scatter their landmarks on
faces lying down unless the crop is turned first (benchmarks/README.md, "Rolled faces").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from report_files import write_report

ANGLES = (0, 30, 60, 90, 180)


def rotated(image: np.ndarray, points: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned counter-clockwise on screen by ``angle`` degrees about the landmarks' centre, on a canvas
    large enough to keep all of it (black outside: mirrored borders would add mirrored faces)."""
    from facetrack.data.transforms import apply_affine

    h, w = image.shape[:2]
    side = int(np.ceil(np.hypot(h, w)))
    centre = points.mean(axis=0)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), 1.0)
    matrix[:, 2] += 0.5 * side - centre  # the face's centre to the canvas centre
    out = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return out, apply_affine(points, matrix)


def _match(found: list[np.ndarray], truth: np.ndarray, iod: float) -> np.ndarray | None:
    if not found:
        return None
    centres = np.array([f.mean(axis=0) for f in found])
    k = int(np.argmin(np.linalg.norm(centres - truth.mean(axis=0), axis=1)))
    return found[k] if np.linalg.norm(centres[k] - truth.mean(axis=0)) < iod else None


def run(model: str, tracker_model: str | None, root: Path, limit: int | None, threads: int) -> dict:
    import torch

    import facetrack
    from facetrack.evaluation import load_shared300w
    from facetrack.metrics.nme import nme, normaliser
    from facetrack.tracking.pipeline import FaceTracker

    torch.set_num_threads(threads)
    samples = load_shared300w(root, "val")[:limit]
    detector = facetrack.Detector(model=model)
    tracker = facetrack.Tracker(model=tracker_model) if tracker_model else None
    rows: dict[str, dict[str, list]] = {}
    for angle in ANGLES:
        for protocol in ("detect", "track init") if tracker else ("detect",):
            rows[f"{protocol}@{angle}"] = {"nme": [], "miss": 0, "ms": []}
    for sample in tqdm(samples, desc="faces", unit="face"):
        image = sample.load_image()
        for angle in ANGLES:
            frame, truth = rotated(image, sample.landmarks, angle)
            norm = float(normaliser(truth[None], "ibug68", "ocular")[0])
            t0 = time.perf_counter()
            faces = [f.landmarks for f in detector(frame)]
            runs = [("detect", faces, time.perf_counter() - t0)]
            if tracker is not None:
                loop = FaceTracker(tracker.engine, tracker.detector, tracker.validator, tracker.config,
                                   tracker.shape_check)
                t0 = time.perf_counter()
                faces = [f.landmarks for f in loop.update(frame, 0.0)]
                runs.append(("track init", faces, time.perf_counter() - t0))
            for protocol, faces, seconds in runs:
                row = rows[f"{protocol}@{angle}"]
                row["ms"].append(1000.0 * seconds)
                pred = _match(faces, truth, norm)
                if pred is None:
                    row["miss"] += 1
                else:
                    row["nme"].append(float(nme(pred[None], truth[None], np.array([norm]))[0]))
    summary = {}
    for key, row in rows.items():
        errors = np.array(row["nme"])
        summary[key] = {"faces": len(samples), "found": len(errors), "misses": row["miss"],
                        "nme": float(errors.mean()) if len(errors) else float("nan"),
                        "fr": float((errors > 0.08).mean()) if len(errors) else float("nan"),
                        "ms": float(np.median(row["ms"]))}
    return summary


def table(summary: dict, command: str) -> str:
    lines = ["# Rolled faces: held-out 300-W faces turned by an angle", "", f"Command: `{command}`", "",
             "| protocol | angle | faces | misses | NME % | vs upright | FR@8 % | ms per image |",
             "|---|---|---|---|---|---|---|---|"]
    for key, row in summary.items():
        protocol, angle = key.split("@")
        upright = summary[f"{protocol}@0"]["nme"]
        lines.append(f"| {protocol} | {angle} | {row['faces']} | {row['misses']} | {100 * row['nme']:.2f} | "
                     f"{row['nme'] / upright:.2f}x | {100 * row['fr']:.1f} | {row['ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="aohr-68", help="the stills model (detect)")
    parser.add_argument("--tracker", default="1dformer-68", help="the video model (track init); '' to skip")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/300w"))
    parser.add_argument("--limit", type=int, default=None, help="first N held-out faces only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="markdown table (and a .json next to it)")
    args = parser.parse_args()
    summary = run(args.model, args.tracker or None, args.root, args.limit, args.threads)
    command = "python benchmarks/rotation.py " + " ".join(
        f"--{k} {v}" for k, v in (("model", args.model), ("tracker", args.tracker or "''"), ("limit", args.limit))
        if v is not None)
    write_report(args.out, table(summary, command), summary)


if __name__ == "__main__":
    main()
