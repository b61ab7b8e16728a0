"""facetrack track SOURCE... [--out DIR|-] [--model NAME|PATH] [--detector NAME] [--render] [--max-faces K]
[--detect-every N] [--format csv,jsonl,npz,pts] [--smooth aligned|one-euro|none]

Landmarks of every face on every frame. --out - streams one JSON line per frame to standard output
({"source", "frame", "time_s", "faces": [{"track_id", "box", "score", "landmarks", "confidences"}]}) and
writes no files.

SOURCE: a video file, a folder of frames, a folder of videos, or a camera index. One source writes into DIR;
several sources (or a folder of videos) write one folder per video under DIR. Each folder's summary.json
records what made it (the source's path, size, time and content hash, the model, detector, formats and
options): a folder made by exactly this run and finished is skipped, one interrupted is resumed from its last
checkpoint (tracks restart there with a fresh detection), and one made by anything else is refused, never
overwritten (--force starts over). A failing or refused video is reported and the others go on; the exit
code is 1 when any failed. --ray [ADDRESS] runs one Ray task per video (same folders; failures retried once;
DIR/manifest.json lists successes and failures). A camera shows a
live window when a display exists (never with opencv-python-headless). Ctrl-C keeps what was written and
marks the summary as stopped early.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facetrack.commands import DEFAULT_DETECTOR_HELP, DEFAULT_TRACKER, RUNTIMES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("track", help="landmarks of every face on every frame of videos or a camera",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="video file, frame folder, folder of videos, camera index")
    p.add_argument("--out", type=Path, default=Path("facetrack_out"),
                   help="output folder (default: facetrack_out); - streams JSON lines to standard output")
    p.add_argument("--model", default=None,
                   help=f"landmark model: a packaged name (facetrack models) or a weights path (default: {DEFAULT_TRACKER})")
    p.add_argument("--detector", default=None, help=f"face detector name ({DEFAULT_DETECTOR_HELP})")
    p.add_argument("--validator", default="default",
                   help="face validator weights path, 'default' (packaged) or 'none' (landmark confidences only)")
    p.add_argument("--render", action="store_true", help="also write overlay.mp4 with the landmarks drawn")
    p.add_argument("--max-faces", type=int, default=0, help="track at most K faces (default 0: every face)")
    p.add_argument("--detect-every", type=int, default=0,
                   help="also run the detector every N frames to pick up new faces (0 = only when needed)")
    p.add_argument("--face-check", choices=("validator", "atpn"), default="validator",
                   help="what keeps a tracked face: 'validator' (default: the face validator with the landmark "
                        "confidences) or 'atpn' (ATPN's tracking head, p(face) > 0.7; needs --model atpn-68 or its weights)")
    p.add_argument("--verify-every", type=int, default=5,
                   help="re-check tracked faces against the detector every N frames: a face no detection matches at "
                        "two checks in a row is re-detected; this also picks up new faces (default 5, 0 = never)")
    p.add_argument("--search-every", type=int, default=1,
                   help="every Nth re-check searches the whole frame for faces that enter (found within N x "
                        "--verify-every frames), the others only around the tracked faces: cheaper for small faces "
                        "in large frames (default 1: every re-check searches the whole frame; 3: 1.9x the frame "
                        "rate on 1080p with one 150 px face, new faces found later)")
    p.add_argument("--format", default="csv", help="comma-separated extras: jsonl, npz, pts (csv is always written)")
    p.add_argument("--smooth", choices=("aligned", "one-euro", "none"), default="aligned", nargs="?", const="aligned",
                   help="filter the reported landmarks over time: 'aligned' (default: a shape-aligned average of the "
                        "last frames; half the jitter, no extra error on held-out pseudo-videos), 'one-euro' (lags on "
                        "moving faces) or 'none' (the model's raw output)")
    p.add_argument("--refine", type=int, default=2, help="re-crop passes on a fresh detection (default 2)")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="landmark model runtime: auto (default) = onnxruntime (float) on the CPU when possible, onnx "
                        "insists, torch = PyTorch, int8 = the card's int8 graph (facetrack quantize; about 1.5x "
                        "faster for the default tracker, a little more jitter)")
    p.add_argument("--force", action="store_true",
                   help="start over: replace the output folder's results whatever made them (no skip, no resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--box-tracker", choices=("landmarks", "crct"), default="landmarks",
                   help="how a tracked face's next crop box is found: 'landmarks' (default: around the previous "
                        "landmarks) or 'crct' (CRCT's recurrent box tracker BT, then the landmark model on its box)")
    p.add_argument("--box-tracker-model", default="crct-bt", metavar="NAME|PATH",
                   help="BT weights for --box-tracker crct: a packaged name or a weights path (default crct-bt)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="one Ray task per video (pip install 'facetrack[ray]') on the cluster at ADDRESS "
                        "('auto', 'ray://head:10001', 'local'); bare --ray: $RAY_ADDRESS, else a cluster started here "
                        "with 'ray start', else a new local instance. Writes DIR/manifest.json of successes and "
                        "failures. Put a bare --ray after the sources")
    p.set_defaults(func=run)


def expand_sources(items: list[str]) -> tuple[list[str], bool]:
    """Sources to track, in order, and whether they come from a batch (several, or a folder of videos).

    A folder holding video files is a batch of videos; any other folder is one video made of frames.
    Missing paths are kept so that they are reported as failures with the others.
    """
    found: list[str] = []
    batch = len(items) > 1
    for item in items:
        path = Path(item)
        if path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if videos:
                found.extend(str(v) for v in videos)
                batch = True
                continue
        found.append(item)
    return list(dict.fromkeys(found)), batch


def output_folders(sources: list[str], out: Path, batch: bool) -> list[Path]:
    """DIR for a single source; DIR/<name> per source in a batch, made unique when names repeat."""
    if not batch:
        return [out]
    folders: list[Path] = []
    used: set[str] = set()
    for src in sources:
        path = Path(src)
        base = f"camera{src}" if src.isdigit() and not path.exists() else (path.stem or path.name or "source")
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        folders.append(out / name)
    return folders


def run(args: argparse.Namespace) -> int:
    from facetrack.api import Tracker
    from facetrack.errors import FacetrackError
    from facetrack.io.track_output import plan
    from facetrack.tracking.session import parse_formats, provenance, track_to_folder

    try:
        formats = parse_formats(args.format)
    except ValueError as exc:
        raise FacetrackError(str(exc)) from None
    if args.max_faces < 0 or args.detect_every < 0 or args.verify_every < 0 or args.search_every < 1:
        raise FacetrackError("--max-faces must be >= 0 (0 = every face), --detect-every and --verify-every >= 0, "
                             "--search-every >= 1")
    sources, batch = expand_sources(args.sources)
    folders = output_folders(sources, args.out, batch)
    validator = None if args.validator.lower() == "none" else args.validator
    options = dict(model=args.model, detector=args.detector, detect_every=args.detect_every,
                   max_faces=args.max_faces, smoothing=None if args.smooth == "none" else args.smooth,
                   validator=validator, refine=args.refine, runtime=args.runtime, verify_every=args.verify_every,
                   search_every=args.search_every, face_check=args.face_check)
    if args.box_tracker == "crct":
        if args.ray is not None:
            raise FacetrackError("--box-tracker crct runs locally only (not with --ray)")
        options["model"] = _crct_engine(args)
    if args.ray is not None:
        return run_ray(args, sources, folders, options, formats)
    tracker = Tracker(**options)
    if str(args.out) == "-":
        return stream_json(tracker, sources)
    failed: list[tuple[str, str]] = []
    done = skipped = 0
    for src, folder in zip(sources, folders):
        is_camera = src.isdigit() and not Path(src).exists()
        try:  # what the folder holds decides: skip an exact finished match, resume an exact unfinished one
            record = provenance(tracker, int(src) if is_camera else src, formats, args.render)
            todo = plan(folder, record, force=args.force or is_camera, resumable=not args.render)
        except Exception as exc:
            failed.append((src, str(exc)))
            print(f"FAILED {_about(src, str(exc))}", file=sys.stderr)
            continue
        if todo.action == "skip":
            print(f"skip {src}: {todo.message}")
            skipped += 1
            continue
        if todo.action == "refuse":
            failed.append((src, f"refused: {todo.message}"))
            print(f"REFUSED {src}: {todo.message}", file=sys.stderr)
            continue
        if todo.action == "resume":
            print(f"{src}: {todo.message}")
        try:
            summary = track_to_folder(tracker, int(src) if is_camera else src, folder, formats, render=args.render,
                                      show=is_camera, progress=not args.no_progress,
                                      resume=todo.action == "resume", record=record)
        except KeyboardInterrupt:
            print(f"interrupted on {src}: the frames processed so far are in {folder}", file=sys.stderr)
            raise
        except Exception as exc:  # one bad video must not stop the batch
            failed.append((src, f"{type(exc).__name__}: {exc}" if not isinstance(exc, FacetrackError) else str(exc)))
            print(f"FAILED {_about(src, failed[-1][1])}", file=sys.stderr)
            continue
        done += 1
        timing = summary["timings_ms"]
        note = f" ({summary['reason']})" if summary.get("reason") else ""
        fps = f"{summary['fps']:.1f}" if summary.get("fps") else "-"
        total = f"{timing['total']:.1f}" if timing.get("total") is not None else "-"
        bad = f", {len(summary['bad_frames'])} undecodable frame(s) skipped" if summary.get("bad_frames") else ""
        resumed = f", resumed at frame {summary['resumed_from']}" if summary.get("resumed_from") else ""
        print(f"{src} -> {folder}: {summary['frames_read']} frames, {summary['frames_with_face']} with a face, "
              f"{summary['tracks']} track(s), {fps} fps ({total} ms/frame){resumed}{bad}{note}")
    if len(sources) > 1:  # a batch recalls its failures at the end; a single one was just printed
        print(f"{done} tracked, {skipped} skipped (complete), {len(failed)} failed")
        for src, message in failed:
            print(f"  failed: {_about(src, message)}", file=sys.stderr)
    return 1 if failed else 0


def _crct_engine(args: argparse.Namespace) -> object:
    """The landmark engine of --model wrapped by CRCT's box tracker (``facetrack.tracking.box_tracker``)."""
    from facetrack.api import resolve_engine
    from facetrack.tracking.box_tracker import crct_engine

    inner = resolve_engine(args.model, refine=args.refine, default="DEFAULT_TRACKER", runtime=args.runtime)
    return crct_engine(inner, args.box_tracker_model)


def run_ray(args: argparse.Namespace, sources: list[str], folders: list[Path], options: dict, formats: tuple) -> int:
    """``--ray``: the videos on a Ray cluster (``facetrack.distributed``), one task each."""
    from facetrack.distributed import MANIFEST, require_ray, track_on_ray
    from facetrack.errors import FacetrackError

    require_ray()
    if str(args.out) == "-" or any(s.isdigit() and not Path(s).exists() for s in sources):
        raise FacetrackError("--ray tracks video files and frame folders into --out DIR (no camera, no --out -)")
    manifest = track_on_ray(sources, folders, options, formats, args.out, render=args.render, force=args.force,
                            address=args.ray or None, progress=not args.no_progress)
    counts = manifest["counts"]
    print(f"{counts['tracked']} tracked, {counts['skipped']} skipped (complete), {counts['failed']} failed on Ray "
          f"({manifest['frames_tracked']} frames in {manifest['wall_s']:.1f} s); {args.out / MANIFEST}")
    for item in manifest["failed"]:
        print(f"  failed: {_about(item['source'], str(item['reason']))}", file=sys.stderr)
    return 1 if manifest["failed"] else 0


def _about(src: str, message: str) -> str:
    """``SRC: message``, without naming the source twice when the message already starts with it."""
    return message if message.startswith(src) else f"{src}: {message}"


def stream_json(tracker: object, sources: list[str]) -> int:
    """``--out -``: one JSON line per frame on standard output, flushed as frames are processed."""
    import json

    from facetrack.io.track_output import _face_json

    for src in sources:
        is_camera = src.isdigit() and not Path(src).exists()
        for result in tracker.track(int(src) if is_camera else src):
            line = {"source": src, "frame": result.index, "time_s": round(result.time_s, 6),
                    "faces": [_face_json(face) for face in result.faces]}
            sys.stdout.write(json.dumps(line, allow_nan=False) + "\n")
            sys.stdout.flush()
    return 0
