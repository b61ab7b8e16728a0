"""Memory and time of one training step of the 1D (AOHR) head vs the 2D-heatmap head, across L (AOHR Table 1).

For N = 68 landmarks, F = 256 and L in {64, 128, 256, 512, 768}, each (head, L) runs in a fresh subprocess
that builds the model on a *reduced* stacked hourglass (so a CPU run is feasible), runs one warm-up step,
then times ``--steps`` training steps (forward + loss + backward + Adam step) and reports the growth of the
peak resident set size (``ru_maxrss``) over its own baseline (after imports, model and batch creation).
Before launching a configuration its memory is estimated from the tensor sizes; a configuration whose
estimate exceeds ``--cap-gb`` is reported as skipped instead of being run. The report also gives the AOHR
quantisation error (Eq. 3-5) versus L/F, averaged over random points.

    python benchmarks/head_memory.py                       # writes benchmarks/results/head_memory.md
    python benchmarks/head_memory.py --lengths 64 128 --steps 1 --out /tmp/hm.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_POINTS = 68
INPUT_SIZE = 256
BACKBONE = {"name": "hourglass", "stacks": 1, "depth": 4, "width": 64}
HEAD_CHANNELS = 32
RESULTS = Path(__file__).resolve().parent / "results" / "head_memory.md"


def model_config(head: str, length: int) -> tuple[str, dict]:
    """(arch, config) of the benchmarked model: same reduced backbone, 1D or 2D head producing resolution L."""
    common = {"num_points": N_POINTS, "input_size": INPUT_SIZE, "backbone": BACKBONE, "head_channels": HEAD_CHANNELS}
    if head == "1d":
        return "aohr", {**common, "ratio": length / INPUT_SIZE, "attn_dim": 8, "head_layers": 1}
    return "heatmap2d", {**common, "heatmap_size": length}


def estimate_bytes(head: str, length: int, batch: int) -> int:
    """Rough upper estimate of the training-step memory growth, from the tensors the head creates.

    Output-sized tensors: output, target, difference, its square, and their gradients (x6); 2D head
    deconvolution layers keep about 4 copies (conv out, BN out, grads) of HEAD_CHANNELS x s x s per level.
    The backbone's share is taken as 128 MiB per image (the 1D rows measure about 70).
    """
    floats = 0
    if head == "1d":
        floats += 6 * 2 * N_POINTS * length
    else:
        floats += 6 * N_POINTS * length * length
        size = INPUT_SIZE // 4
        while size * 2 <= length:
            size *= 2
            floats += 4 * HEAD_CHANNELS * size * size
    return batch * (4 * floats + 128 * 2**20)


def rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def worker(head: str, length: int, batch: int, steps: int, threads: int) -> dict:
    """Run in a fresh process: time training steps of one configuration and measure its peak RSS growth."""
    import numpy as np
    import torch

    from facetrack.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    arch, config = model_config(head, length)
    model = build_model(arch, **config).train()
    rng = np.random.default_rng(0)
    encoded = [model.encode_targets(rng.uniform(20, INPUT_SIZE - 20, size=(N_POINTS, 2))) for _ in range(batch)]
    targets = {key: torch.from_numpy(np.stack([e[key] for e in encoded])) for key in encoded[0]}
    images = torch.rand(batch, 3, INPUT_SIZE, INPUT_SIZE)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    baseline = rss_bytes()
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        outputs = model(images)
        loss = model.loss(outputs, targets)
        loss.backward()
        optimiser.step()
        if step:  # the first step allocates Adam's state and warms the allocator
            times.append(time.perf_counter() - start)
        del outputs, loss
    return {
        "peak_growth_bytes": rss_bytes() - baseline,
        "baseline_bytes": baseline,
        "step_s": statistics.median(times),
        "step_min_s": min(times),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def run_config(head: str, length: int, args: argparse.Namespace) -> dict:
    """One configuration in a fresh subprocess (or skipped when its estimate exceeds the cap)."""
    estimate = estimate_bytes(head, length, args.batch)
    outputs = 2 * N_POINTS * length if head == "1d" else N_POINTS * length * length
    result: dict = {"head": head, "length": length, "estimate_bytes": estimate, "io_bytes_per_image": 2 * 4 * outputs}
    if estimate > args.cap_gb * 2**30:
        return {**result, "status": f"skipped: estimate {estimate / 2**30:.1f} GB > cap {args.cap_gb:g} GB"}
    command = [sys.executable, __file__, "--worker", head, str(length), "--batch", str(args.batch),
               "--steps", str(args.steps), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        status = "out of memory (killed)" if proc.returncode in (-9, 137) else f"failed: {tail[0][:80]}"
        return {**result, "status": status}
    return {**result, "status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])}


def quantisation_table(lengths: list[int], samples: int) -> list[tuple[int, float, float]]:
    """(L, L/F, mean AOHR quantisation error in px) over ``samples`` uniform random points in the crop."""
    import numpy as np

    from facetrack.codecs.heatmap1d import quantization_error

    points = np.random.default_rng(0).uniform(0, INPUT_SIZE, size=(samples, 2))
    return [(L, L / INPUT_SIZE, float(np.mean([quantization_error(p, L, INPUT_SIZE) for p in points])))
            for L in lengths]


def mib(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def report(results: list[dict], quant: list[tuple[int, float, float]], args: argparse.Namespace, wall: float) -> str:
    import torch

    lines = [
        "# Training-step memory and time: 1D (AOHR) head vs 2D-heatmap head",
        "",
        f"Command: `{' '.join(['python benchmarks/head_memory.py', *args.argv])}`",
        "",
        f"Machine: {platform.machine()} {platform.processor() or ''} ({os.cpu_count()} CPUs visible, shared with other "
        f"jobs), Linux {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{args.threads} torch threads. Total wall time {wall:.0f} s.",
        "",
        f"Setup: N = {N_POINTS}, F = {INPUT_SIZE}, batch {args.batch}, median and min of {args.steps} step(s) after "
        "one warm-up step (the CPUs are shared, so the min is the better estimate of the cost). Reduced backbone "
        f"for a CPU run: stacked hourglass {BACKBONE} (the paper uses 2 stacks of width 256) and head_channels = "
        f"{HEAD_CHANNELS} for both heads. One training step = forward + loss + backward + Adam. Peak RSS growth = "
        "ru_maxrss at the end minus ru_maxrss after imports, model and batch "
        f"creation, in a fresh process per row. Rows whose estimate exceeds {args.cap_gb:g} GB are not run.",
        "",
        "| head | L | L/F | output+target per image (MiB) | estimate (MiB) | peak RSS growth (MiB) "
        "| step median / min (s) | params | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        measured = ("-", "-", "-")
        if r["status"] == "ok":
            step = f"{r['step_s']:.2f} / {r['step_min_s']:.2f}"
            measured = (mib(r["peak_growth_bytes"]), step, f"{r['parameters']:,}")
        lines.append(
            f"| {r['head'].upper()} | {r['length']} | {r['length'] / INPUT_SIZE:g} | {mib(r['io_bytes_per_image'])} | "
            f"{mib(r['estimate_bytes'])} | {' | '.join(measured)} | {r['status']} |"
        )
    lines += [
        "",
        f"## Quantisation error versus L/F (AOHR Eq. 3-5, floor to a cell; mean over {args.samples:,} uniform random "
        "points in the crop)",
        "",
        "| L | L/F | mean error (px) |",
        "|---|---|---|",
    ]
    lines += [f"| {L} | {r:g} | {e:.3f} |" for L, r, e in quant]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("HEAD", "L"), help=argparse.SUPPRESS)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 768])
    parser.add_argument("--heads", nargs="+", default=["1d", "2d"], choices=["1d", "2d"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cap-gb", type=float, default=8.0, help="skip configurations estimated above this")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per configuration")
    parser.add_argument("--samples", type=int, default=20000, help="random points for the quantisation error")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.worker:
        head, length = args.worker
        print(json.dumps(worker(head, int(length), args.batch, args.steps, args.threads)))
        return
    args.argv = sys.argv[1:] if argv is None else argv
    start = time.perf_counter()
    results = []
    for length in args.lengths:
        for head in args.heads:
            results.append(run_config(head, length, args))
            print(json.dumps(results[-1]), flush=True)
    quant = quantisation_table(sorted(set(args.lengths) | {64, 128, 256, 384, 512, 640, 768}), args.samples)
    text = report(results, quant, args, time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
