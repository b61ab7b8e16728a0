"""``facetrack report RUN_DIR``: a static ``report.html`` of a ``facetrack track`` output folder.

One page, no server and no network (plots are inline SVG, thumbnails inline JPEG): per video the summary table,
overlay thumbnails cut from the source video with the landmarks drawn, and over time the face confidence, the
mean landmark confidence and the jitter, with every re-detection marked. ``--truth ROOT`` (with ``--dataset``,
the ground truth ``facetrack evaluate --video`` reads: pseudo-video clips, 300VW, Talking Face) adds the error
over time and its CED; output folders are matched to annotated videos by name.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="a static report.html of a tracking run (plots, thumbnails)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of facetrack track")
    p.add_argument("--out", type=Path, default=None, help="the page to write (default: RUN_DIR/report.html)")
    p.add_argument("--truth", metavar="ROOT", help="ground truth of the videos (a folder, as evaluate --video --root)")
    p.add_argument("--dataset", default="pseudo",
                   help="what --truth holds: a video dataset of facetrack evaluate (default: pseudo)")
    p.add_argument("--split", help="video dataset columns, comma-separated (e.g. 300VW: S1,S2,S3)")
    p.add_argument("--thumbnails", type=int, default=4, help="overlay thumbnails per video (default 4, 0 = none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facetrack.errors import FacetrackError
    from facetrack.report import write_report

    truth = None
    if args.truth:
        from facetrack.data.catalog import get_dataset
        from facetrack.evaluation import load_video_truth

        try:
            spec = get_dataset(args.dataset)
        except KeyError:
            raise FacetrackError(f"unknown --dataset {args.dataset!r}") from None
        splits = [s for s in (args.split or spec.default_split or "").split(",") if s] if spec.splits else []
        try:
            columns = load_video_truth(args.dataset, args.truth, splits)
        except ValueError as exc:
            raise FacetrackError(str(exc)) from None
        truth = {v.name: v for videos in columns.values() for v in videos}
    if args.thumbnails < 0:
        raise FacetrackError("--thumbnails must be >= 0")
    path, videos = write_report(args.run_dir, args.out, truth, args.thumbnails)
    scored = sum(v.truth is not None for v in videos)
    print(f"wrote {path}: {len(videos)} video(s)" + (f", {scored} scored against {args.truth}" if truth else ""))
    return 0
