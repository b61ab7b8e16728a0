"""1DFormer's window study (paper Fig. 7) on held-out pseudo-videos: the full model for W in 2..16.

Each W trains the full ``1dformer-lite-128`` (BL+TE+IR+IT) with a frozen per-frame encoder (``--encoder``) on
cached features of training-identity pseudo-videos and is scored by closed-loop tracking of held-out
pseudo-videos (identities never used in training), exactly as ``benchmarks/ablation.py`` does; it shares that
script's feature cache and held-out clips (``--cache``). Results are written after every W; a re-run skips
finished ones.

    python benchmarks/window_study.py --encoder runs/aohr_lite_shared300w_128/best.safetensors --smoke
    python benchmarks/window_study.py --encoder runs/aohr_lite_shared300w_128/best.safetensors

Writes ``benchmarks/results/window_study.md`` and ``benchmarks/results/window_study.png`` (NRMSE and jitter vs W).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

WINDOWS = (2, 4, 6, 8, 10, 12, 16)


def plot(results: dict[str, Any], path: Path) -> None:
    """NRMSE and the jitter terms against W."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(((int(name.split("=")[1]), row["column"]) for name, row in results["rows"].items()))
    if not rows:
        return
    ws = [w for w, _ in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(ws, [c["nrmse_per_video_mean"] for _, c in rows], "o-")
    ax1.set_xlabel("window W")
    ax1.set_ylabel("NRMSE (%)")
    ax1.set_title("accuracy")
    for key, label in (("e3_jitter", "e3"), ("e4_jitter_velocity_invariant", "e4")):
        ax2.plot(ws, [c[key] for _, c in rows], "o-", label=label)
    ax2.axhline(rows[0][1]["gt_e3_jitter"], color="grey", ls="--", label="GT e3")
    ax2.set_xlabel("window W")
    ax2.set_ylabel("FHR jitter (% of face size)")
    ax2.set_title("stability")
    nmj_axis = ax2.twinx()  # NMJ is on another scale
    nmj_axis.plot(ws, [c["nmj"] for _, c in rows], "s--", color="tab:green", label="NMJ")
    nmj_axis.set_ylabel("LDEQ NMJ")
    handles = ax2.get_legend_handles_labels()
    more = nmj_axis.get_legend_handles_labels()
    ax2.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(ws)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from temporal_bench import add_arguments, run_study, settings_from_args

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, work="runs/window_study")
    parser.add_argument("--windows", default=",".join(map(str, WINDOWS)), help="comma-separated W values")
    parser.add_argument("--out", default="benchmarks/results/window_study.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import facetrack.models.temporal as temporal

    settings = settings_from_args(args)
    out = Path(args.out if not args.smoke or args.out != "benchmarks/results/window_study.md"
               else Path(settings.work) / "window_study.md")
    png = out.with_suffix(".png")
    full = temporal.ABLATIONS["BL+TE+IR+IT"]
    rows = {f"W={int(w)}": {**full, "window": int(w)} for w in args.windows.split(",")}
    run_study(settings, rows, "1DFormer window study (BL+TE+IR+IT) on held-out pseudo-videos", out,
              plot=lambda results: plot(results, png))
    print(out.read_text(encoding="utf-8"))
    print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
