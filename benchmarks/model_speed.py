"""Milliseconds per face of landmark models on the CPU: crop + forward + decode at batch 1.

    python benchmarks/model_speed.py --model aohr-68 --threads 2 --json benchmarks/results/model_speed.json

Each model is timed as ``facetrack`` runs it (``Landmarker.predict_boxes``: warp the crop, BatchNorm-folded
forward, 1D heatmap decoding, inverse mapping) on a 640x360 frame, after warm-up; the median and the minimum
of ``--runs`` calls are reported with the machine's load, because shared CPUs inflate medians.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def time_model(name: str, runs: int, image: np.ndarray, box: np.ndarray, flip: bool = False) -> dict[str, object]:
    from facetrack.landmarker import Landmarker
    from facetrack.models.hub import load_model
    from facetrack.models.registry import build_model

    try:
        model = load_model(name)
    except Exception:  # a registered architecture without weights: timing needs no trained values
        model = build_model(name)
    landmarker = Landmarker(model, refine=0, flip=flip)
    for _ in range(10):
        landmarker.predict_boxes(image, box)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        landmarker.predict_boxes(image, box)
        times.append(1000.0 * (time.perf_counter() - t0))
    return {"model": name, "flip": flip, "arch": model.arch, "input_size": model.input_size,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "ms_median": round(statistics.median(times), 3), "ms_min": round(min(times), 3), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, help="model name or weights path (repeatable)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--flip", action="store_true", help="also time each model with test-time flip")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    box = np.array([[250.0, 100.0, 390.0, 260.0]])
    rows = [time_model(name, args.runs, image, box, flip) for name in (args.model or ["aohr-68"])
            for flip in ((False, True) if args.flip else (False,))]
    report = {"command": "python benchmarks/model_speed.py " + " ".join(
                  f"--model {m}" for m in (args.model or [])) + f" --threads {args.threads}" + (" --flip" if args.flip else ""),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, torch {torch.__version__}, "
                         f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}",
              "rows": rows}
    for row in rows:
        print(f"{row['model']}{' (flip)' if row['flip'] else ''}: {row['ms_median']:.2f} ms median, {row['ms_min']:.2f} ms min per face "
              f"({row['parameters']:,} parameters, {row['input_size']} px)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
