"""End-to-end tracking speed and memory: ``python benchmarks/track_speed.py [--frames 1800] [--out results.md]``.

Measures, with the model and detector that exist (the report says which):
- ``../shared/data/videos/single_face.mp4`` (640x360): frames per second end to end and milliseconds per frame
  split into decode / detection / landmarks (landmarks include the face validator);
- a long synthetic 640x360 video (a 300W face, or scikit-image's astronaut, moved by a virtual camera; written
  to a temporary file first so decoding is real): the same numbers, plus resident memory sampled every
  ``--sample-every`` frames, which must stay flat (frames are streamed).

Without a trained landmark model the preset ``aohr-lite-128`` runs with random weights and ``keep_threshold=0``
(so the tracking path, not re-detection, is timed); without the detector plug-ins a static centre box stands in
(detection then costs ~0 ms). Both substitutions are printed and written to the report.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc; ru_maxrss elsewhere, which is the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class StaticBox:
    """Stand-in when no detector plug-in is installed: one centred box of 40% of the frame height."""

    name = "static-centre-box (no detector plug-in available)"

    def detect(self, frame: np.ndarray):
        from types import SimpleNamespace

        h, w = frame.shape[:2]
        s = 0.4 * h
        box = np.array([[w / 2 - s / 2, h / 2 - s / 2, w / 2 + s / 2, h / 2 + s / 2]])
        return SimpleNamespace(boxes=box, scores=np.ones(1), points5=None)


def build(model_arg: str | None, detector_arg: str | None) -> tuple[object, dict[str, object], list[str]]:
    """The Tracker and the notes on what was substituted."""
    import facetrack.models as models
    from facetrack.api import Tracker
    from facetrack.errors import ModelError

    notes: list[str] = []
    config: dict[str, object] = {}
    model: object = model_arg or getattr(models, "DEFAULT_TRACKER", None)  # what `facetrack track` uses
    try:
        from facetrack.landmarker import Landmarker

        model = Landmarker(model)  # type: ignore[arg-type]
    except (ModelError, TypeError) as exc:
        notes.append(f"no trained landmark model ({exc}); timing a randomly initialised aohr-lite-128 "
                     "with keep_threshold=0")
        model = models.build_model("aohr-lite-128")
        config["keep_threshold"] = 0.0
    detector: object
    try:
        from facetrack.tracking.detectors import DEFAULT_DETECTOR, build_detector

        detector = build_detector(detector_arg or DEFAULT_DETECTOR)
    except ImportError as exc:
        notes.append(f"no face detector plug-in ({exc}); a static centre box stands in")
        detector = StaticBox()
    return Tracker(model=model, detector=detector, **config), config, notes


def synthetic_video(path: Path, frames: int) -> Path:
    """A 640x360 clip of a face moved by a virtual camera (300W face when present, else the astronaut)."""
    from facetrack.data.synthetic import PseudoVideoConfig, astronaut_still, make_pseudo_video
    from facetrack.io.video import write_video

    cfg = PseudoVideoConfig(num_frames=frames, size=(640, 360), face_fraction=0.45, occluder_rate_hz=0.0)
    w300 = SHARED / "300w"
    if w300.is_dir():
        from facetrack.data.w300 import load_300w

        sample = load_300w(w300, "train")[0]
        video = make_pseudo_video(sample.load_image(), np.asarray(sample.landmarks), cfg, seed=0)
    else:
        # No annotation: a face-sized box of the astronaut as a 4-point "landmark" set moves rigidly.
        still = astronaut_still()
        video = make_pseudo_video(still, np.array([[170, 40], [290, 40], [290, 200], [170, 200.0]]), cfg, seed=0)
    write_video(path, (video.render(i) for i in range(frames)), fps=cfg.fps)
    return path


def measure(tracker, source: str | Path, sample_every: int = 0) -> dict[str, object]:
    sums = {"decode": 0.0, "detection": 0.0, "landmarks": 0.0, "total": 0.0}
    rss: list[tuple[int, float]] = []
    count = 0
    start = time.perf_counter()
    for result in tracker.track(str(source)):
        for key in sums:
            sums[key] += result.timings[key]
        count += 1
        if sample_every and count % sample_every == 0:
            rss.append((count, rss_mb()))
    wall = time.perf_counter() - start
    return {"frames": count, "with_face": tracker.stats.frames_with_face, "fps": count / wall,
            "ms": {k: v / max(count, 1) for k, v in sums.items()}, "rss": rss,
            "detector_runs": tracker.stats.detector_runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--detector", default=None)
    parser.add_argument("--frames", type=int, default=1800, help="length of the synthetic video (1800 = 1 min)")
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "track_speed.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    tracker, config, notes = build(args.model, args.detector)
    for note in notes:
        print("note:", note)
    rows = []
    single = SHARED / "videos" / "single_face.mp4"
    if single.exists():
        rows.append(("single_face.mp4 (640x360)", measure(tracker, single)))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        clip = synthetic_video(Path(tmp) / "synthetic.mp4", args.frames)
        print(f"synthetic video of {args.frames} frames written in {time.perf_counter() - t0:.1f} s")
        rows.append((f"synthetic {args.frames} frames (640x360)", measure(tracker, clip, args.sample_every)))
    lines = [
        "# Tracking speed (benchmarks/track_speed.py)", "",
        f"Command: `python benchmarks/track_speed.py --frames {args.frames} --threads {args.threads}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch threads "
        f"{args.threads}, load average at the end {os.getloadavg()[0]:.1f} (shared machine: other jobs ran), "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}  ",
        f"Model: {tracker.model_name}; detector: {tracker.detector_name}; validator: "
        f"{'face_validator' if tracker.validator is not None else 'none'}; config overrides: {config or 'none'}", "",
    ]
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    lines += ["| video | frames | with face | detector runs | fps end-to-end | decode ms | detection ms | landmarks ms | total ms |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        ms = r["ms"]
        lines.append(f"| {name} | {r['frames']} | {r['with_face']} | {r['detector_runs']} | {r['fps']:.1f} | "
                     f"{ms['decode']:.2f} | {ms['detection']:.2f} | {ms['landmarks']:.2f} | {ms['total']:.2f} |")
    rss = rows[-1][1]["rss"]
    if rss:
        values = [v for _, v in rss]
        lines += ["", f"Resident memory on the synthetic video, sampled every {args.sample_every} frames (MB): "
                  + ", ".join(f"{v:.0f}" for v in values),
                  f"first {values[0]:.1f} MB, last {values[-1]:.1f} MB, max {max(values):.1f} MB "
                  f"(growth {values[-1] - values[0]:+.1f} MB over {rss[-1][0] - rss[0][0]} frames)."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
