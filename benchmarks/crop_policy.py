"""The tracker's crop policy and output filter on held-out pseudo-videos, per model.

Every model is tracked closed-loop (frame 0 from the GT box, then its own crops) on the held-out pseudo-videos of
``benchmarks/ablation.py`` (identities never used in training, written once under ``--cache``), with each crop
policy: ``raw`` (the crop is cut around the previous frame's landmark box) and ``CropSmoothing`` settings
``centre,size,follow`` (``facetrack.data.transforms.CropSmoothing``), and each output filter (what
``Tracker(smoothing=...)`` / ``track --smooth`` do to the reported landmarks, never to the next crop): ``none``,
``aligned[:window,decay]`` (``AlignedShapeFilter``) or ``one-euro[:min_cutoff,beta]``. Scored with the code of
``facetrack evaluate --video``: NRMSE, the FHR jitter e3/e4 and delay e1.

    python benchmarks/crop_policy.py --models aohr-68 1dformer-68 --policies raw 0.5,0.3,0.1 0.5,0.3,1e9
    python benchmarks/crop_policy.py --models aohr-68 1dformer-68 --filters none aligned one-euro \
        --work runs/output_filters --out benchmarks/results/output_filters.md

Writes ``benchmarks/results/crop_policy.md`` and ``<work>/results.json`` (finished cells are skipped on a re-run).
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


def parse_policy(text: str):  # -> CropSmoothing
    from facetrack.data.transforms import CropSmoothing

    if text == "raw":
        return CropSmoothing(1.0, 1.0)
    try:
        values = [float(v) for v in text.split(",")]
        return CropSmoothing(*values)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"crop_policy.py: bad policy {text!r} (raw or centre,size[,follow]): {exc}") from None


def parse_filter(text: str) -> dict[str, Any] | None:
    """``none`` -> None; ``aligned:5,0.7`` -> {"method": "aligned", "window": 5, "decay": 0.7}; ``one-euro:1,0.05``."""
    from facetrack.tracking.smoothing import smoothing_params

    method, _, values = text.partition(":")
    if method == "none":
        return None
    names = {"aligned": ("window", "decay"), "one-euro": ("min_cutoff", "beta")}.get(method)
    try:
        if names is None:
            raise ValueError("unknown filter")
        numbers = [float(v) for v in values.split(",")] if values else []
        spec: dict[str, Any] = {"method": method, **dict(zip(names, numbers))}
        if "window" in spec:
            spec["window"] = int(spec["window"])
        return smoothing_params(spec)
    except ValueError as exc:
        raise SystemExit(f"crop_policy.py: bad filter {text!r} (none, aligned[:w,d], one-euro[:c,b]): {exc}") from None


def tracks_folder(work: Path, model: str, policy: str, filter_name: str) -> Path:
    """Where one cell's tracks go (``<work>/tracks/<model stem>_<policy>[_<filter>]``)."""
    folder = f"{Path(model).stem}_{policy}" + (f"_{filter_name}" if filter_name != "none" else "")
    return work / "tracks" / folder.replace(",", "_").replace(":", "_")


def track_raw(model: Any, clips: Path, crop_scale: float, policy: Any, runtime: str) -> dict[str, Any]:
    """Closed-loop tracking of every held-out clip with no output filter (the filter never feeds the next crop,
    so a filtered track is this raw track passed through the filter afterwards): clip name -> (landmarks (T, N,
    2), confidences (T, N))."""
    from facetrack.data.sample import read_image
    from facetrack.data.transforms import box_from_landmarks
    from facetrack.evaluation import track_clip
    from facetrack.io.pts import read_pts

    raw = {}
    for clip in sorted(p for p in clips.iterdir() if (p / "annot").is_dir()):
        images = sorted((clip / "imgs").iterdir())
        first = read_pts(clip / "annot" / "000001.pts")
        raw[clip.name] = track_clip(model, (read_image(p) for p in images), box_from_landmarks(first), crop_scale,
                                    policy, None, runtime)
    return raw


def score_filtered(raw: dict[str, Any], spec: dict[str, Any] | None, clips: Path, tracks: Path) -> dict[str, Any]:
    """Pass each raw track through a fresh output filter ``spec`` (as ``track_clip`` with ``smoothing=spec``
    does, frame by frame at 30 fps), write the ``landmarks.csv`` files under ``tracks`` and score them with the
    code of ``facetrack evaluate --video`` (the pseudo column without per-video rows)."""
    import numpy as np

    from facetrack.data.transforms import box_from_landmarks
    from facetrack.evaluation import VideoSettings, evaluate_videos, load_pseudo_truth
    from facetrack.io.results import LandmarksCSVWriter
    from facetrack.tracking.smoothing import make_filter

    for name, (pred, conf) in raw.items():
        output = make_filter(spec) if spec is not None else None
        points = np.stack([output(p, t / 30.0) for t, p in enumerate(pred)]) if output is not None else pred
        with LandmarksCSVWriter(tracks / name / "landmarks.csv", points.shape[1]) as writer:
            for t, (pts, c) in enumerate(zip(points, conf)):
                writer.write(t, t / 30.0, 1, box_from_landmarks(pts), None, pts, c)
    scored = evaluate_videos({"m": tracks}, {"pseudo": load_pseudo_truth(clips)}, VideoSettings("pseudo", str(clips)))
    column = scored["methods"]["m"]["columns"]["pseudo"]
    column.pop("per_video", None)
    return column


def plot_filters(results: dict[str, Any], clips: Path, work: Path, path: Path, point: int = 30) -> Path | None:
    """One held-out clip, one landmark (30: nose tip): its error along x over time, raw and with each filter
    of the first model that has more than one (what the e3 and e1 columns summarise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facetrack.io.results import read_landmarks_csv
    from facetrack.evaluation import load_pseudo_truth

    rows = [r for r in results.values() if "filter" in r]
    first = next((r["model"] for r in rows if sum(x["model"] == r["model"] for x in rows) > 1), None)
    if first is None:
        return None
    truth = load_pseudo_truth(clips)[0]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for row in (r for r in rows if r["model"] == first):
        table = read_landmarks_csv(tracks_folder(work, row["model"], row["policy"], row["filter"]) / truth.name
                                   / "landmarks.csv")
        err = table.landmarks[:, point, 0] - truth.landmarks[table.frame, point, 0]
        ax.plot(table.frame, err, label=f"{row['filter']} (e3 {row['column']['e3_jitter']:.3f} %)", lw=1.2)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("frame")
    ax.set_ylabel(f"x error of point {point} (px)")
    ax.set_title(f"{first}, held-out pseudo-video {truth.name}, policy {rows[0]['policy']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    import torch

    from facetrack.models.hub import load_model
    from temporal_bench import StudySettings, write_heldout_clips

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["aohr-68", "1dformer-68"], help="names or weight files")
    parser.add_argument("--policies", nargs="+", default=["raw", "0.5,0.3,0.1"],
                        help="raw, or centre,size[,follow] weights of CropSmoothing (default policy: 0.5,0.3,0.1)")
    parser.add_argument("--filters", nargs="+", default=["none"],
                        help="output filters: none, aligned[:window,decay], one-euro[:min_cutoff,beta]")
    parser.add_argument("--root", default="../shared/data/300w", help="the shared 300-W crops")
    parser.add_argument("--cache", default="runs/temporal_cache", help="held-out clips (shared with ablation.py)")
    parser.add_argument("--work", default="runs/crop_policy", help="tracks and results.json (resume point)")
    parser.add_argument("--test-clips", type=int, default=24)
    parser.add_argument("--test-frames", type=int, default=75)
    parser.add_argument("--seed", type=int, default=0, help="held-out clip set (0: the ablation's clips)")
    parser.add_argument("--crop-scale", type=float, default=1.25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtime", default="auto", help="the Landmarker runtime (auto, onnx, torch, int8)")
    parser.add_argument("--qdq-in-float", action="store_true",
                        help="diagnostic: run an int8 graph's quantised operators in float (onnxruntime's "
                             "session.disable_quant_qdq): the quantisation's rounding without the int8 kernels")
    parser.add_argument("--out", default="benchmarks/results/crop_policy.md")
    args = parser.parse_args(argv)
    if args.qdq_in_float:
        from facetrack.models.onnx_runtime import SESSION_CONFIG

        SESSION_CONFIG["session.disable_quant_qdq"] = "1"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    policies = {text: parse_policy(text) for text in args.policies}
    filters = {text: parse_filter(text) for text in args.filters}

    settings = StudySettings(encoder="", root=args.root, cache=args.cache, test_clips=args.test_clips,
                             test_frames=args.test_frames, seed=args.seed)
    clips = write_heldout_clips(settings)
    work = Path(args.work)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    for model_name in args.models:
        model = load_model(model_name)
        label = model_name if args.runtime == "auto" else f"{model_name} ({args.runtime})"
        label = label[:-1] + ", QDQ in float)" if args.qdq_in_float and label.endswith(")") else label
        for text, policy in policies.items():
            raw, seconds = None, 0.0  # tracked once per model and policy, then passed through each filter
            for name, spec in filters.items():
                key = f"{label} | {text}" + (f" | {name}" if spec is not None else "")
                if key in results:
                    continue
                if raw is None:
                    start = time.perf_counter()
                    raw = track_raw(model_name if args.runtime == "int8" else model, clips, args.crop_scale, policy,
                                    args.runtime)
                    seconds = time.perf_counter() - start
                column = score_filtered(raw, spec, clips, tracks_folder(work, label, text, name))
                results[key] = {"model": label, "policy": text, "filter": name, "column": column,
                                "seconds": seconds}
                work.mkdir(parents=True, exist_ok=True)
                results_path.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
                logging.info("%s: NRMSE %.3f%%, e3 %.3f%%", key, column["nrmse_per_video_mean"],
                             column["e3_jitter"])
    lines = ["# Tracking crop policy and output filter on held-out pseudo-videos", "",
             f"{args.test_clips} clips x {args.test_frames} frames of identities never used in training, tracked "
             "closed-loop from the GT box of frame 0. Policy `raw`: each crop around the previous frame's landmark "
             "box; `c,s,f`: `CropSmoothing(centre=c, size=s, follow=f)`. Filter (reported landmarks only): `aligned` "
             "= `AlignedShapeFilter(window=5, decay=0.7)`, `aligned:w,d` other settings; `one-euro` = "
             "`OneEuroFilter(1.0 Hz, beta 0.05)`. NRMSE: inter-ocular %, per video then over videos; e3/e4: FHR "
             "jitter (% of face size); e1: delay (frames).",
             f"Command: `python benchmarks/crop_policy.py --models {' '.join(args.models)} "
             f"--policies {' '.join(args.policies)} --filters {' '.join(args.filters)}"
             + (f" --runtime {args.runtime}" if args.runtime != "auto" else "")
             + (" --qdq-in-float" if args.qdq_in_float else "")
             + (f" --seed {args.seed}" if args.seed else "") + "`", "",
             "| model | policy | filter | NRMSE % | e3 % | e4 % | e1 |", "|---|---|---|---|---|---|---|"]
    for row in results.values():
        c = row["column"]
        lines.append(f"| {row['model']} | {row['policy']} | {row.get('filter', 'none')} | "
                     f"{c['nrmse_per_video_mean']:.3f} | {c['e3_jitter']:.3f} "
                     f"| {c['e4_jitter_velocity_invariant']:.3f} | {c['e1_delay']:.3f} |")
    if len(filters) > 1:
        plot = plot_filters(results, clips, work, Path(args.out).with_suffix(".png"))
        if plot is not None:
            lines += ["", f"![error of one landmark over time]({plot.name})"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
