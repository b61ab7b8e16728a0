"""Throughput of ``facetrack track --ray`` against the single-process loop on the same clips (videos/s, frames/s).

Cuts ``--clips`` clips of ``--frames`` frames from ../shared/data/videos (single_face.mp4, face_noface.mov, at
spread offsets; MJPG .avi so decoding is cheap and equal for both), then alternates, ``--repeats`` times:

- single: ``facetrack track CLIPS --out A --no-progress`` (one process, torch's default threads);
- ray:    ``facetrack track CLIPS --out B --no-progress --ray`` (a new local Ray instance, one task per video).

Both are timed end to end as a user runs them (interpreter start, model loads, Ray start-up included), and also
without the fixed costs: the single loop's tracking time (sum of the summaries' ``wall_s``) and the Ray run's
``wall_s`` in manifest.json (first submission to last result; worker start-up and model loads included).

    python benchmarks/ray_throughput.py --out benchmarks/results/ray_throughput.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"


def make_clips(folder: Path, count: int, frames: int) -> list[Path]:
    sources = [VIDEOS / "single_face.mp4", VIDEOS / "face_noface.mov"]
    missing = [s for s in sources if not s.is_file()]
    if missing:
        sys.exit(f"missing {', '.join(map(str, missing))} (../shared/data/videos)")
    from facetrack.io.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for k in range(count):
        src = sources[k % len(sources)]
        cap = cv2.VideoCapture(str(src))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        start = (k // len(sources)) * max(0, total - frames) // max(1, (count + 1) // len(sources))
        cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        images = []
        while len(images) < frames:
            ok, image = cap.read()
            if not ok:
                break
            images.append(image)
        cap.release()
        clips.append(folder / f"clip{k:02d}_{src.stem}.avi")
        write_video(clips[-1], images, fps=30, fourcc="MJPG")
    return clips


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def frames_and_tracking_s(out: Path) -> tuple[int, float]:
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))]
    return sum(s["frames_read"] for s in summaries), sum(s["wall_s"] for s in summaries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ray_throughput_"))
    try:
        clips = make_clips(work / "clips", args.clips, args.frames)
        runs = []
        for r in range(args.repeats):
            for mode in ("single", "ray"):
                out = work / f"{mode}{r}"
                cmd = ["facetrack", "track", str(work / "clips"), "--out", str(out), "--no-progress"]
                wall, _ = timed(cmd + (["--ray"] if mode == "ray" else []))
                frames, tracking = frames_and_tracking_s(out)
                inner = json.loads((out / "manifest.json").read_text())["wall_s"] if mode == "ray" else tracking
                load = os.getloadavg()[0]
                runs.append({"mode": mode, "repeat": r, "videos": len(clips), "frames": frames, "wall_s": wall,
                             "videos_per_s": len(clips) / wall, "frames_per_s": frames / wall,
                             "work_s": inner, "work_frames_per_s": frames / inner, "loadavg_1min": load})
                print(f"{mode:6s} #{r}: {len(clips)} videos, {frames} frames; end to end {wall:6.1f} s = "
                      f"{len(clips) / wall:.3f} videos/s, {frames / wall:5.1f} frames/s; without start-up "
                      f"{inner:6.1f} s = {frames / inner:5.1f} frames/s (load {load:.1f})", flush=True)
                shutil.rmtree(out)
        result = {"command": " ".join(sys.argv), "cpus": os.cpu_count(), "clips": args.clips,
                  "frames_per_clip": args.frames, "runs": runs}
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1))
            print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
