"""The AOHR tracker's temporal refinement (AOHR section 4.2, Eq. 13; the λ = 0 / 0.3 comparison of its Table 2)
on held-out pseudo-videos, one command.

Each row is the ``aohr-tracker-lite-128`` preset with a decay λ, trained with a *frozen* per-frame encoder
(``--encoder``) on cached features of training-identity pseudo-videos, tracked closed-loop on held-out
pseudo-videos of identities never used in training, and scored like ``facetrack evaluate --video`` (the same
protocol as ``benchmarks/ablation.py``). λ = 0 keeps CNN3/CNN4 but removes the temporal fusion exactly.

    python benchmarks/aohr_tracker.py --encoder runs/aohr68_default/best.safetensors --threads 1

Writes ``benchmarks/results/aohr_tracker.md`` and ``<work>/results.json``; a re-run skips finished rows.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from temporal_bench import add_arguments, run_study, settings_from_args

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, work="runs/aohr_tracker")
    parser.add_argument("--decays", default="0,0.3", help="comma-separated λ values (the paper: 0 and 0.3)")
    parser.add_argument("--out", default="benchmarks/results/aohr_tracker.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.preset == "1dformer-lite-128":  # the shared default of the study arguments
        args.preset = "aohr-tracker-lite-128"
    rows = {f"lambda={float(d):g}": {"decay": float(d)} for d in args.decays.split(",")}
    settings = settings_from_args(args)
    run_study(settings, rows, "AOHR tracker: temporal refinement (Eq. 13) on held-out pseudo-videos",
              Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
