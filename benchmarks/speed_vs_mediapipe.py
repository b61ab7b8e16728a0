"""End-to-end tracking speed of facetrack against MediaPipe's FaceMesh, measured in the same run, round by round:
``.venv-peers/bin/python benchmarks/speed_vs_mediapipe.py [--rounds 5] [--configs default,int8] [--out results.md]``.

Each round times every contestant once on each video (``../shared/data/videos``: ``single_face.mp4``,
``no_face.mp4``, ``face_noface.mov``), in an order that rotates between rounds, so that what the rest of the
machine does lands on all of them alike; the report gives, per video and contestant, the median over rounds of
frames per second end to end (decoding with OpenCV included, models loaded before the clock starts, no output
files written by either), the ratio to MediaPipe in the same round, and the process's CPU time per frame (all its
threads; what to compare when other jobs share the machine). facetrack configurations:
``default`` (what ``facetrack track`` runs), ``int8`` (``--runtime int8``), ``onnx`` (``--runtime onnx``) and
``noverify`` (``--verify-every 0``), ``search3`` (``--search-every 3``), ``model:NAME`` (another tracker model), and
combinations joined with ``+``. MediaPipe runs from the peers venv (see benchmarks/README.md); without it the
facetrack rows are still measured and the report says MediaPipe was missing.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

from report_files import write_report

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"
NAMES = ("single_face.mp4", "no_face.mp4", "face_noface.mov")
CONFIGS: dict[str, dict[str, Any]] = {"default": {}, "int8": {"runtime": "int8"}, "onnx": {"runtime": "onnx"},
                                      "noverify": {"verify_every": 0}, "search3": {"search_every": 3}}


def config_options(name: str) -> dict[str, Any]:
    """``Tracker`` keywords of a ``--configs`` entry: a name of ``CONFIGS``, or ``model:NAME`` (another tracker model,
    e.g. ``model:1dformer-68-lean``), optionally joined with ``+`` (``model:1dformer-68-lean+noverify``)."""
    options: dict[str, Any] = {}
    for part in name.split("+"):
        if part.startswith("model:"):
            options["model"] = part[len("model:"):]
        elif part in CONFIGS:
            options.update(CONFIGS[part])
        else:
            raise SystemExit(f"unknown config {part!r}: use {', '.join(CONFIGS)} or model:NAME")
    return options


def frames_of(path: Path) -> Any:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def facetrack_runner(options: dict[str, Any]) -> Callable[[Path], int]:
    import facetrack

    tracker = facetrack.Tracker(**options)

    def run(path: Path) -> int:
        return sum(1 for _ in tracker.track(str(path)))

    return run


def mediapipe_runner() -> Callable[[Path], int] | None:
    try:
        from facetrack.peers.mediapipe_peer import MediaPipePeer

        peer = MediaPipePeer(max_faces=5)
    except Exception as exc:  # not installed in this environment, or no point map
        print(f"MediaPipe unavailable: {exc}", file=sys.stderr)
        return None

    def run(path: Path) -> int:
        video = peer.video()
        try:
            return sum(1 for frame in frames_of(path) if video.process(frame) is not None)
        finally:
            video.close()

    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--configs", default="default,int8,noverify")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "speed_vs_mediapipe.md")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    videos = [VIDEOS / n for n in NAMES if (VIDEOS / n).is_file()]
    if not videos:
        print(f"no videos in {VIDEOS}", file=sys.stderr)
        return 2
    runners: dict[str, Callable[[Path], int]] = {}
    for name in args.configs.split(","):
        runners[f"facetrack {name}"] = facetrack_runner(config_options(name))
    mediapipe = mediapipe_runner()
    if mediapipe is not None:
        runners["mediapipe"] = mediapipe
    for run in runners.values():  # warm-up: first-use exports, caches, thread pools
        run(videos[0])
    fps: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    ratio: dict[tuple[str, str], list[float]] = {}
    names = list(runners)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for video in videos:
            got = {}
            for name in order:
                t0, c0 = time.perf_counter(), time.process_time()
                frames = runners[name](video)
                got[name] = frames / (time.perf_counter() - t0)
                fps.setdefault((video.name, name), []).append(got[name])
                cpu.setdefault((video.name, name), []).append(1000 * (time.process_time() - c0) / max(frames, 1))
            for name in names:
                if "mediapipe" in got:
                    ratio.setdefault((video.name, name), []).append(got[name] / got["mediapipe"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["# End-to-end fps: facetrack vs MediaPipe, same run", "",
             f"`{' '.join(['python', *sys.argv])}`; {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs, torch threads {args.threads}, {args.rounds} rounds (median), "
             f"load average at the end {load:.1f} (other jobs were running: compare within a round, not across runs).",
             "", "| video | method | fps (median) | fps (min-max) | x MediaPipe (median of per-round ratios) "
             "| CPU ms / frame (median) |", "|---|---|---|---|---|---|"]
    for video in videos:
        for name in names:
            values = fps[(video.name, name)]
            rel = ratio.get((video.name, name))
            lines.append(f"| {video.name} | {name} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f}"
                         f" | {'—' if not rel else f'{statistics.median(rel):.2f}'} "
                         f"| {statistics.median(cpu[(video.name, name)]):.2f} |")
    write_report(args.out, "\n".join(lines) + "\n",
                 {"fps": {f"{v} | {n}": x for (v, n), x in fps.items()},
                  "cpu_ms_per_frame": {f"{v} | {n}": x for (v, n), x in cpu.items()},
                  "ratio_to_mediapipe": {f"{v} | {n}": x for (v, n), x in ratio.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
