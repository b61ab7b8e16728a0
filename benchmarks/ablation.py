"""1DFormer's Table 1 on held-out pseudo-videos: every ablation row with W = 10, one command.

Each row (BL, BL+TE^-a, BL+TE^-r, BL+TE^-c, BL+TE, BL+IR, BL+IT, BL+IR+IT, BL+TE+IR+IT; ``--rows all`` adds
BL+TE+IR and BL+TE+IT) is the ``1dformer-lite-128`` preset with that row's switches, trained with a *frozen*
per-frame encoder (``--encoder``) on cached features of training-identity pseudo-videos, then tracked
closed-loop on held-out pseudo-videos of identities never used in training and scored with the code of
``facetrack evaluate --video`` (see ``benchmarks/temporal_bench.py``). Results are written after every
row and a re-run skips finished rows (and resumes an unfinished row's training).

    python benchmarks/ablation.py --encoder runs/aohr_lite_shared300w_128/best.safetensors --smoke   # ~1-2 min
    python benchmarks/ablation.py --encoder runs/aohr_lite_shared300w_128/best.safetensors           # the table

Writes ``benchmarks/results/ablation.md`` (NRMSE, e3, e4, NMJ, ...) and ``<work>/results.json``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

TABLE1_ROWS = ("BL", "BL+TE^-a", "BL+TE^-r", "BL+TE^-c", "BL+TE", "BL+IR", "BL+IT", "BL+IR+IT", "BL+TE+IR+IT")


def main(argv: list[str] | None = None) -> int:
    from temporal_bench import add_arguments, run_study, settings_from_args

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, work="runs/ablation")
    parser.add_argument("--rows", default="table1",
                        help="table1 (the 9 rows), all (11), or a comma-separated list of row names")
    parser.add_argument("--window", type=int, default=10, help="temporal window W (default 10, as Table 1)")
    parser.add_argument("--out", default="benchmarks/results/ablation.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import facetrack.models.temporal as temporal

    names = {"table1": list(TABLE1_ROWS), "all": list(temporal.ABLATIONS)}.get(args.rows, args.rows.split(","))
    unknown = [n for n in names if n not in temporal.ABLATIONS]
    if unknown:
        print(f"ablation.py: unknown rows {unknown}; known: {', '.join(temporal.ABLATIONS)}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    out = Path(args.out if not args.smoke or args.out != "benchmarks/results/ablation.md"
               else Path(settings.work) / "ablation.md")
    rows = {n: {**temporal.ABLATIONS[n], "window": args.window} for n in names}
    run_study(settings, rows, f"1DFormer ablation (Table 1 rows, W = {args.window}) on held-out pseudo-videos", out)
    print(out.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
