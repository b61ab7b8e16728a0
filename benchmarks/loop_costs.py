"""CPU cost of the tracking loop's per-face pieces, as CPU time (``time.process_time``) as well as wall time, so that
the numbers mean something on a machine other jobs share:
``python benchmarks/loop_costs.py [--model 1dformer-68] [--rounds 5] [--out benchmarks/results/loop_costs.md]``.

- the temporal model's step graph: float (``--runtime onnx``) against the card's int8 graph (``--runtime int8``,
  made by ``facetrack quantize``), one face, onnxruntime on ``--threads`` threads;
- the face validator: PyTorch on 2 threads, PyTorch on 1 thread, onnxruntime on 1 thread (what the tracker runs).

Rounds interleave the contestants; the report gives medians (and minima) over rounds of the per-call means.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from collections.abc import Callable

import torch
from report_files import write_report

REPO = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``fn`` over ``calls`` calls, after one warm-up call."""
    fn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return 1000 * (time.process_time() - cpu) / calls, 1000 * (time.perf_counter() - wall) / calls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="1dformer-68")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "loop_costs.md")
    args = p.parse_args()
    from facetrack.landmarker import Landmarker
    from facetrack.tracking.validator import load_validator

    torch.set_num_threads(args.threads)
    contestants: dict[str, Callable[[], object]] = {}
    for runtime in ("onnx", "int8"):
        landmarker = Landmarker(args.model, runtime=runtime, calibrate=False)
        model, step = landmarker.model, landmarker.predictor.step
        images = torch.rand(1, 3, model.input_size, model.input_size, generator=torch.Generator().manual_seed(0))
        state = model.init_state(1)
        for _ in range(12):  # a full window of history
            state = step(images, state)[1]
        contestants[f"{args.model} step, {runtime}"] = lambda step=step, images=images, state=state: step(images, state)
    validator = load_validator()
    if validator is not None:
        x = torch.rand(1, 4, 64, 64)

        def net(threads: int) -> Callable[[], object]:
            def run() -> object:
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    return validator.net(x)
            return run

        contestants["validator, PyTorch 2 threads"] = net(2)
        contestants["validator, PyTorch 1 thread"] = net(1)
        validator.forward(x)
        contestants["validator, onnxruntime 1 thread"] = lambda: validator.forward(x)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in contestants}
    for r in range(args.rounds):
        names = list(contestants)
        for name in names[r % len(names):] + names[:r % len(names)]:
            results[name].append(timed(contestants[name], args.calls))
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    lines = ["# Per-face costs of the tracking loop", "",
             f"`python benchmarks/loop_costs.py --model {args.model} --threads {args.threads} --rounds {args.rounds}`; "
             f"{args.rounds} interleaved rounds of {args.calls} calls, medians (minima); load average at the end "
             f"{load:.1f} (CPU time is what to compare on a shared machine).", "",
             "| piece | CPU ms / call | wall ms / call |", "|---|---|---|"]
    for name, values in results.items():
        cpu, wall = [v[0] for v in values], [v[1] for v in values]
        lines.append(f"| {name} | {statistics.median(cpu):.2f} ({min(cpu):.2f}) | "
                     f"{statistics.median(wall):.2f} ({min(wall):.2f}) |")
    write_report(args.out, "\n".join(lines) + "\n",
                 {name: {"cpu_ms": [v[0] for v in values], "wall_ms": [v[1] for v in values]}
                  for name, values in results.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
