"""``facetrack evaluate``: score a PRED.json on a benchmark's ground truth and print/write the numbers with
every setting that produced them. ``--boxes-out`` writes the ground-truth boxes for ``detect --boxes``.

``--video``: score tracking output folders (``landmarks.csv`` of ``facetrack track`` or per-frame ``.pts``,
one sub-folder per video) on 300VW, Talking Face or pseudo-video ground truth (``facetrack.evaluation``).
"""
from __future__ import annotations

import argparse
import sys

from facetrack.data.catalog import get_dataset, list_datasets
from facetrack.metrics.nme import NORMALISERS as NORMS


def __getattr__(name: str) -> tuple[str, ...]:
    """``DATASETS`` / ``VIDEO_DATASETS``: the catalogue's image datasets and scored video datasets."""
    if name == "DATASETS":
        return tuple(list_datasets("image"))
    if name == "VIDEO_DATASETS":
        return tuple(list_datasets("video", video_truth=True))
    raise AttributeError(name)


def _split_help() -> str:
    parts = []
    for name in list_datasets("image") + list_datasets("video", video_truth=True):
        spec = get_dataset(name)
        if spec.splits:
            extra = "|SPLIT.json" if spec.held_out is not None else ""
            parts.append(f"{name}: {'|'.join(spec.splits)}{extra} (default {spec.default_split})")
    return "; ".join(parts) + "; video splits: comma-separated columns"


def register(subparsers: argparse._SubParsersAction) -> None:
    DATASETS = tuple(list_datasets("image"))
    VIDEO_DATASETS = tuple(list_datasets("video", video_truth=True))
    p = subparsers.add_parser(
        "evaluate",
        help="score a prediction file against a dataset's landmarks",
        description="Score PRED.json (from 'facetrack detect' or any method writing that format) on a "
        "dataset: NME, AUC and failure rate per subset, with the settings recorded.",
    )
    p.add_argument("pred", nargs="*", metavar="PRED.json",
                   help="prediction file (optional with --boxes-out); with --video: tracking output folders, "
                        "each [NAME=]DIR holding DIR/<video>/landmarks.csv or DIR/<video>/[annot/]*.pts")
    p.add_argument("--dataset", required=True, choices=DATASETS + VIDEO_DATASETS,
                   help=f"image datasets score PRED.json; {', '.join(VIDEO_DATASETS)} need --video")
    p.add_argument("--root", required=True, help="dataset folder (COFW: the folder or the .mat file)")
    p.add_argument("--split", help=_split_help())
    p.add_argument("--norm", action="append", choices=NORMS,
                   help="normaliser (repeat for several; default per dataset, e.g. ocular for 300W)")
    p.add_argument("--threshold", type=float, help="AUC/FR threshold as a fraction (default per dataset, 300W 0.08)")
    p.add_argument("--preset", choices=("star", "sbr", "spiga"),
                   help="reproduce a codebase's AUC/FR convention instead of --step/--integrator/--strict")
    p.add_argument("--step", type=float, default=1e-4, help="CED grid step (default 1e-4)")
    p.add_argument("--integrator", choices=("trapz", "simpson"), default="trapz")
    p.add_argument("--strict", action="store_true", help="count error < x as success (default <=)")
    p.add_argument("--visible-only", action="store_true", help="average over visible points only")
    p.add_argument("--out", metavar="RESULT.json", help="write the full result (settings, misses, per-face errors)")
    p.add_argument("--ced", metavar="CED.png", help="plot the CED curves of the subsets")
    p.add_argument("--boxes-out", metavar="BOXES.json", help="write ground-truth boxes for 'detect --boxes'")
    v = p.add_argument_group("video (--video)")
    v.add_argument("--video", action="store_true",
                   help="score tracking output on videos: NRMSE, FHR stability, NMJ, frames lost, AUROC")
    v.add_argument("--skip-frames", metavar="JSON", help="300VW frames to leave out ({\"401\": [722, ...]})")
    v.add_argument("--stability", choices=("e3", "e4"), default="e3",
                   help="FHR term shown as S in the table (default e3, FHR's sta1; both are in RESULT.json)")
    v.add_argument("--merge", action="append", default=[], metavar="RESULT.json",
                   help="join earlier video results (e.g. 300VW S1-S3 and TF) into one table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.video or get_dataset(args.dataset).kind == "video":
        return run_video(args)
    if len(args.pred) > 1:
        print("facetrack evaluate: error: give one PRED.json (several outputs need --video)", file=sys.stderr)
        return 2
    args.pred = args.pred[0] if args.pred else None
    from facetrack.evaluation import (
        default_settings,
        evaluate,
        format_table,
        load_ground_truth,
        matching_root,
        write_gt_boxes,
    )
    from facetrack.io.results import read_predictions, write_json

    if args.pred is None and args.boxes_out is None:
        print("facetrack evaluate: error: give PRED.json (or --boxes-out BOXES.json)", file=sys.stderr)
        return 2
    settings = default_settings(
        args.dataset,
        split=args.split,
        norm=args.norm,
        threshold=args.threshold,
        preset=args.preset,
        step=args.step,
        integrator=args.integrator,
        inclusive=not args.strict,
        use_visible=args.visible_only,
    )
    subsets = load_ground_truth(settings.dataset, args.root, settings.split)
    if args.boxes_out:
        whole = max(subsets.values(), key=len)  # the whole split (300W full, WFLW full)
        write_gt_boxes(whole, args.boxes_out)
        print(f"wrote ground-truth boxes of {len(whole)} faces to {args.boxes_out}")
    if args.pred is None:
        return 0
    pred = read_predictions(args.pred)
    root = matching_root(settings.dataset, args.root, settings.split)
    result = evaluate(pred, subsets, root, settings, pred_path=args.pred)
    print(format_table(result))
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    if args.ced:
        from facetrack.metrics.plots import plot_ced

        kind = settings.norms[0]
        curves = {
            name: [f["nme"][kind] for f in result["faces"] if name in f["subsets"]] for name in result["subsets"]
        }
        title = f"{pred.model} on {settings.dataset} ({kind} NME)"
        plot_ced(curves, args.ced, settings.threshold, title,
                 step=settings.step, integrator=settings.integrator, inclusive=settings.inclusive)
        print(f"wrote {args.ced}")
    return 0


def run_video(args: argparse.Namespace) -> int:
    """``--video``: tracking output folders against video ground truth, in 1DFormer's Table 2 layout."""
    from facetrack.io.results import write_json
    from facetrack.evaluation import (
        VideoSettings,
        evaluate_videos,
        format_video_table,
        load_video_truth,
        merge_results,
        method_name,
        read_video_result,
    )

    video_datasets = list_datasets("video", video_truth=True)
    if args.dataset not in video_datasets:
        print(f"facetrack evaluate: error: --video needs --dataset {'|'.join(video_datasets)}", file=sys.stderr)
        return 2
    if not args.video:
        print(f"facetrack evaluate: error: --dataset {args.dataset} scores tracking output: add --video",
              file=sys.stderr)
        return 2
    if not args.pred:
        print("facetrack evaluate: error: give at least one tracking output folder", file=sys.stderr)
        return 2
    methods: dict[str, str] = {}
    for item in args.pred:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = method_name(item), item
        if name in methods:
            print(f"facetrack evaluate: error: two outputs are named {name!r}; use NAME=DIR", file=sys.stderr)
            return 2
        methods[name] = path
    spec = get_dataset(args.dataset)  # a video dataset with splits scores one table column per split
    splits = [s for s in (args.split or spec.default_split).split(",") if s] if spec.splits else []
    settings = VideoSettings(args.dataset, str(args.root), splits, args.skip_frames, args.stability)
    truth = load_video_truth(args.dataset, args.root, settings.splits, args.skip_frames)
    result = evaluate_videos(methods, truth, settings)
    if args.merge:
        result = merge_results([read_video_result(path) for path in args.merge] + [result])
    print(format_video_table(result))
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0
