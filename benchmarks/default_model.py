"""Accuracy of a per-frame model on the held-out 300-W crops, with ground-truth boxes and with the face detector.

    python benchmarks/default_model.py --model runs/aohr68_default/best.safetensors --out benchmarks/results/default_model

Runs ``facetrack detect`` twice on the held-out split (``shared300w --split val``: source photographs no shipped
recipe trains on) — once with boxes from the ground-truth landmark extent (``--boxes``, the benchmark protocol)
and once with the default face detector — and scores both with ``facetrack evaluate`` (inter-ocular NME,
AUC@0.08 / FR@0.08, CED). Writes ``<out>/{gt_boxes,detector}.json`` (evaluation results, used by
``facetrack export`` for the model card), the CED plots and a markdown summary; the boxes and prediction files
go to ``--work`` (git-ignored ``runs/``), since they are derived from the 300-W annotations.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from facetrack.cli import main as cli


def run(model: str, root: Path, out: Path, work: Path, flip: bool = False, runtime: str = "auto") -> dict[str, dict]:
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)  # boxes and predictions derived from 300-W stay out of the repository
    boxes = work / "val_boxes.json"
    common = ["--dataset", "shared300w", "--root", str(root), "--split", "val"]
    if cli(["evaluate", *common, "--boxes-out", str(boxes)]) != 0:
        raise SystemExit("could not write the ground-truth boxes")
    images = sorted(json.loads(boxes.read_text()))
    results = {}
    for protocol, extra in (("gt_boxes", ["--boxes", str(boxes)]), ("detector", [])):
        pred = work / f"pred_{protocol}.json"
        if cli(["detect", *images, "--model", model, "--out", str(pred), *extra, *(["--flip"] if flip else []),
                "--runtime", runtime]) != 0:
            raise SystemExit(f"detect failed ({protocol})")
        result = out / f"{protocol}.json"
        if cli(["evaluate", str(pred), *common, "--out", str(result), "--ced", str(out / f"ced_{protocol}.png")]) != 0:
            raise SystemExit(f"evaluate failed ({protocol})")
        results[protocol] = json.loads(result.read_text())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--root", type=Path, default=Path("../shared/data/300w"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/default_model"))
    parser.add_argument("--work", type=Path, default=Path("runs/default_model"), help="boxes and predictions")
    parser.add_argument("--flip", action="store_true", help="detect --flip (test-time flip averaging)")
    parser.add_argument("--runtime", default="auto", help="detect --runtime (auto, onnx, torch, int8)")
    args = parser.parse_args()
    results = run(args.model, args.root, args.out, args.work, args.flip, args.runtime)
    flag = (" --flip" if args.flip else "") + (f" --runtime {args.runtime}" if args.runtime != "auto" else "")
    lines = [f"# Per-frame model on the held-out 300-W crops ({args.model}{flag})", "",
             f"Command: `python benchmarks/default_model.py --model {args.model} --out {args.out}{flag}`", "",
             "| boxes | faces | misses | NME % (inter-ocular) | AUC@0.08 | FR@0.08 % |", "|---|---|---|---|---|---|"]
    for protocol, result in results.items():
        (subset,) = result["subsets"].values()
        ocular = subset["nme"]["ocular"]
        lines.append(f"| {protocol} | {subset['faces']} | {subset['misses']} | {100 * ocular['nme']:.2f} | "
                     f"{100 * ocular['auc_fr']['auc']:.2f} | {100 * ocular['auc_fr']['fr']:.2f} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
