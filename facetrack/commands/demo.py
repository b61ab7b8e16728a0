"""``facetrack demo``: the main job on an embedded default, with no input and no download.

A virtual camera moves over the public-domain astronaut photograph (NASA; scikit-image's "astronaut",
shipped in the package) with rotation, zoom, pan, an
occluder, blur and lighting changes; the default detector and landmark model track the face through the clip,
and the usual ``track`` outputs (landmarks.csv, summary.json, overlay.mp4) are written. The still has no
annotation, so the clip's ground truth is the default model's own landmarks on the still, carried through
the exact camera motion: the printed error measures how well tracking holds those landmarks under motion,
occlusion and blur, not absolute accuracy (that is `facetrack evaluate`'s job on annotated data).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from facetrack.commands import DEFAULT_DETECTOR_HELP, DEFAULT_TRACKER

STILL = Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="track a built-in clip (no input, no download) and write the outputs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("facetrack_demo"), help="output folder (default: facetrack_demo)")
    p.add_argument("--model", default=None,
                   help=f"landmark model: a packaged name (facetrack models) or a weights path (default: {DEFAULT_TRACKER})")
    p.add_argument("--detector", default=None, help=f"face detector name ({DEFAULT_DETECTOR_HELP})")
    p.add_argument("--frames", type=int, default=120, help="clip length in frames (default 120, 4 s at 30 fps)")
    p.add_argument("--seed", type=int, default=0, help="seed of the camera path and effects")
    p.add_argument("--no-render", action="store_true", help="skip overlay.mp4")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from facetrack.api import Detector, Tracker
    from facetrack.data.sample import read_image
    from facetrack.data.synthetic import PseudoVideoConfig, astronaut_still, demo_clip, write_clip
    from facetrack.errors import FacetrackError
    from facetrack.io.results import read_landmarks_csv
    from facetrack.metrics.stability import fhr_stability
    from facetrack.schemes import get_scheme
    from facetrack.tracking.session import track_to_folder

    if args.frames < 2:
        raise FacetrackError("--frames must be at least 2")
    out: Path = args.out
    still = read_image(STILL) if STILL.is_file() else astronaut_still()  # the same pixels
    faces = Detector(model=args.model, detector=args.detector)(still)
    if not faces:
        raise FacetrackError("the default detector found no face on the demo still (the installation looks broken)")
    truth = np.asarray(faces[0].landmarks, dtype=np.float64)
    config = PseudoVideoConfig(num_frames=args.frames, size=(640, 360), face_fraction=0.5)
    clip = demo_clip(truth, config, seed=args.seed, image=still)
    clip_dir = write_clip(clip, out / "clip")
    print(f"demo clip: {len(clip)} frames of {config.size[0]}x{config.size[1]} in {clip_dir} "
          "(camera motion, occluders, blur and lighting over scikit-image's astronaut photo)")

    tracker = Tracker(model=args.model, detector=args.detector)
    summary = track_to_folder(tracker, clip_dir / "imgs", out, formats=("csv",), render=not args.no_render)
    table = read_landmarks_csv(out / "landmarks.csv", tracker.num_points)
    gt = clip.landmarks
    pred = np.full_like(gt, np.nan)
    for row in table.rows():
        frame = int(table.frame[row])
        if np.isnan(pred[frame]).all():  # first (lowest id) face of the frame
            pred[frame] = table.landmarks[row]
    tracked = ~np.isnan(pred).any(axis=(1, 2))
    scheme = get_scheme(tracker.engine.scheme)
    i, j = scheme.ocular
    iod = np.linalg.norm(gt[:, i] - gt[:, j], axis=-1)
    nme = np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) / iod
    fps = summary.get("fps")
    print(f"outputs in {out}: landmarks.csv, summary.json" + ("" if args.no_render else ", overlay.mp4"))
    print(f"tracked {int(tracked.sum())}/{len(gt)} frames at {fps:.1f} fps end to end" if fps else
          f"tracked {int(tracked.sum())}/{len(gt)} frames")
    if tracked.any():
        print(f"error against the clip's ground truth (the model's landmarks on the still, moved with the camera): "
              f"mean NME {100 * np.nanmean(nme[tracked]):.2f} % of the inter-ocular distance, "
              f"median {100 * np.nanmedian(nme[tracked]):.2f} %")
    if tracked.all():
        stab = fhr_stability(pred, gt)
        floor = fhr_stability(gt, gt)
        print(f"jitter (FHR e3, % of face size): {stab['e3_jitter']:.3f} (ground truth itself: "
              f"{floor['e3_jitter']:.3f})")
    return 0
