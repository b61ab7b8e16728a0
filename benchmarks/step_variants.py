"""How fast could a thinner tracker step be? The shipped ``1dformer-68`` step against untrained, thinner variants of
the same architecture, each exported and run as ``track`` runs it (``onnx_step``: crop tensor in, decoded landmarks
and the next state out), one face, one onnxruntime thread, CPU and wall milliseconds per step:

    python benchmarks/step_variants.py [--calls 200] [--out benchmarks/results/step_variants.md]

Untrained weights time the same as trained ones (the arithmetic does not depend on the values), so this says what a
variant would cost before anyone spends the training on it; it says nothing about its accuracy.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

from report_files import write_report

ENCODER = {"arch": "aohr", "num_points": 68, "scheme": "ibug68", "input_size": 128, "ratio": 3.0, "sigma": 1.5,
           "gamma": 0.4, "attn_dim": 16, "head_layers": 1, "head_separable": True, "head_compress": "full",
           "decoder_kernel": 5, "loss": "kl"}
HEAD = {"window": 10, "heads": 4, "head_dim": 16, "ffn_dim": 128, "conf_hidden": 32, "conv_kernel": 5,
        "group_expand": 2, "inter_channels": 64}
BACKBONES = {
    "24/48/96/128, blocks 1/2/1 (shipped)": ({"name": "plain", "channels": [24, 48, 96, 128], "blocks": [1, 2, 1],
                                              "out_channels": 128}, 128),
    "16/32/64/96, blocks 1/1/1": ({"name": "plain", "channels": [16, 32, 64, 96], "blocks": [1, 1, 1],
                                   "out_channels": 96}, 96),
    "16/32/64/64, blocks 1/1/1": ({"name": "plain", "channels": [16, 32, 64, 64], "blocks": [1, 1, 1],
                                   "out_channels": 64}, 64),
}
HEADS = {"temporal attention + intra + inter-group (shipped)": {},
         "temporal attention + inter-group": {"intra_group": False},
         "temporal attention alone": {"intra_group": False, "inter_group": False}}


def timed(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call, after five warm-up calls."""
    for _ in range(5):
        fn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return 1000 * (time.process_time() - cpu) / calls, 1000 * (time.perf_counter() - wall) / calls


def step_cost(model: Any, calls: int) -> tuple[float, float]:
    import torch

    from facetrack.models.onnx_runtime import onnx_step

    step = onnx_step(model.eval(), threads=1)
    crop, state = torch.rand(1, 3, 128, 128), model.init_state(1)
    return timed(lambda: step(crop, state), calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:  # untrained graphs stay out of the user's graph cache
        os.environ["FACETRACK_CACHE"] = cache
        from facetrack.models.hub import load_model
        from facetrack.models.registry import build_model

        rows = [{"backbone": "shipped weights", "head": "1dformer-68",
                 "params": sum(p.numel() for p in load_model("1dformer-68").parameters()),
                 "ms": step_cost(load_model("1dformer-68"), args.calls)}]
        for bname, (backbone, channels) in BACKBONES.items():
            for hname, head in HEADS.items():
                model = build_model("1dformer", encoder={**ENCODER, "backbone": backbone, "head_channels": channels},
                                    **HEAD, **head)
                rows.append({"backbone": bname, "head": hname, "params": sum(p.numel() for p in model.parameters()),
                             "ms": step_cost(model, args.calls)})
                print(rows[-1], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["# Tracker step cost: the shipped step against thinner, untrained variants", "",
             f"`python benchmarks/step_variants.py --calls {args.calls}`; one face, onnxruntime on one thread, "
             f"load average {load:.1f} at the end.", "",
             "| backbone (channels, blocks) | 1DFormer head | parameters | CPU ms / step | wall ms / step |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['backbone']} | {r['head']} | {r['params'] / 1e6:.2f} M | {r['ms'][0]:.2f} | {r['ms'][1]:.2f} |"
              for r in rows]
    write_report(args.out, "\n".join(lines) + "\n", rows)


if __name__ == "__main__":
    main()
