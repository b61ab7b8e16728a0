"""Flip consistency of a per-frame model and what calibration and test-time flip do to its accuracy.

    python benchmarks/flip_consistency.py --model aohr-68 --out benchmarks/results/flip_consistency.md

1. On the *training* faces of the shared 300-W crops, each face is predicted from its crop and from its mirrored
   crop (mirrored back); their x biases split into the annotations' mirror offset a that flip augmentation
   trained against (``facetrack.calibration``) and a shift c the model makes in any crop; a is reported in crop
   pixels and in pixels of the 384 px shared crops, by the crop's zoom of its source photograph (``manifest.csv``).
2. On the held-out faces (``val``), ``facetrack detect --boxes`` with ground-truth boxes, then ``facetrack
   evaluate``: plain / calibrated / flip / flip + calibrated (the card needs a ``calibration`` section:
   ``facetrack calibrate MODEL --dataset shared300w --root ROOT --split train``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
import torch

from facetrack.cli import main as cli

ZOOM_BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 1.1), (1.1, 1.5), (1.5, 100.0))


def mirror_offsets(model: str, root: Path, faces: int) -> list[tuple[float, float, float, float]]:
    """(zoom, mirror offset in crop px, the same in shared-crop px, common x shift in crop px) per training face."""
    from facetrack.data.sample import read_image
    from facetrack.data.transforms import apply_affine, box_from_landmarks
    from facetrack.evaluation import load_shared300w
    from facetrack.landmarker import Landmarker

    zooms = {}
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) >= 3 and row[0] != "crop":
                try:
                    zooms[row[0]] = float(row[2])
                except ValueError:
                    continue
    samples = load_shared300w(root, "train")
    samples = [samples[i] for i in np.linspace(0, len(samples) - 1, min(faces, len(samples))).round().astype(int)]
    lm = Landmarker(model, refine=0, calibrate=False)
    rows = []
    for s in samples:
        tensor, matrices = lm.crops(read_image(s.image_path), [box_from_landmarks(s.landmarks)])
        with torch.inference_mode():
            coords, _, mirrored, _ = lm.predict_mirrored(tensor)
        gt = apply_affine(s.landmarks, matrices[0])
        plain_x = float((coords[0, :, 0].double().numpy() - gt[:, 0]).mean())
        back_x = float((mirrored[0, :, 0].double().numpy() - gt[:, 0]).mean())
        # With labels = truth + a (a mirror offset of the annotations) and a shift c the model makes in every crop,
        # the plain crop's x bias is c - a and the mirrored-back one's is -(c + a).
        offset, shift = -0.5 * (plain_x + back_x), 0.5 * (plain_x - back_x)
        key = Path(os.path.relpath(s.image_path, root)).with_suffix("").as_posix()
        zoom = zooms.get(key, float("nan"))
        rows.append((zoom, offset, offset / abs(matrices[0][0, 0]), shift))
    return rows


def val_nme(model: str, root: Path, work: Path, flags: list[str]) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    boxes = work / "val_boxes.json"
    common = ["--dataset", "shared300w", "--root", str(root), "--split", "val"]
    if not boxes.is_file() and cli(["evaluate", *common, "--boxes-out", str(boxes)]) != 0:
        raise SystemExit("could not write the ground-truth boxes")
    tag = "_".join(f.strip("-") for f in flags) or "plain"
    pred, result = work / f"pred_{tag}.json", work / f"result_{tag}.json"
    if cli(["detect", *sorted(json.loads(boxes.read_text())), "--boxes", str(boxes), "--model", model,
            "--out", str(pred), *flags]) != 0:
        raise SystemExit(f"detect failed ({tag})")
    if cli(["evaluate", str(pred), *common, "--out", str(result)]) != 0:
        raise SystemExit(f"evaluate failed ({tag})")
    (subset,) = json.loads(result.read_text())["subsets"].values()
    ocular = subset["nme"]["ocular"]
    return {"nme": 100 * ocular["nme"], "auc": 100 * ocular["auc_fr"]["auc"], "fr": 100 * ocular["auc_fr"]["fr"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="aohr-68")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/300w"))
    parser.add_argument("--faces", type=int, default=1200, help="training faces for the mirror offsets")
    parser.add_argument("--work", type=Path, default=Path("runs/flip_consistency"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/flip_consistency.md"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = np.array(mirror_offsets(args.model, args.root, args.faces))
    lines = [f"# Flip consistency of {args.model}", "",
             f"Command: `python benchmarks/flip_consistency.py --model {args.model} --faces {args.faces}`", "",
             f"On {len(rows)} training faces, x only: annotation mirror offset a = {rows[:, 1].mean():+.3f} crop px "
             f"({rows[:, 2].mean():+.3f} px of the 384 px shared crops); shift c the model makes in every crop "
             f"= {rows[:, 3].mean():+.3f} crop px. Plain inference is biased by c - a, flip averaging by -a.", "",
             "| zoom of the shared crop | faces | offset, crop px | offset, shared-crop px (± s.e.) |",
             "|---|---|---|---|"]
    for lo, hi in ZOOM_BINS:
        sel = (rows[:, 0] >= lo) & (rows[:, 0] < hi)
        if sel.any():
            se = rows[sel, 2].std() / np.sqrt(sel.sum())
            lines.append(f"| {lo:g}-{hi:g} | {int(sel.sum())} | {rows[sel, 1].mean():+.3f} | "
                         f"{rows[sel, 2].mean():+.3f} ± {se:.3f} |")
    lines += ["", "Held-out faces (`val`), ground-truth boxes, `facetrack detect` + `facetrack evaluate`:", "",
              "| inference | NME % | AUC@0.08 | FR@0.08 % |", "|---|---|---|---|"]
    for name, flags in (("plain", ["--no-calibration"]), ("calibrated", []), ("flip", ["--flip", "--no-calibration"]),
                        ("flip + calibrated", ["--flip"])):
        r = val_nme(args.model, args.root, args.work, flags)
        lines.append(f"| {name} | {r['nme']:.3f} | {r['auc']:.2f} | {r['fr']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
