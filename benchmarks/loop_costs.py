"""CPU cost of the tracking loop's per-face pieces, as CPU time (``time.process_time``) as well as wall time, so that
the numbers mean something on a machine other jobs share:
``python benchmarks/loop_costs.py [--model 1dformer-68] [--rounds 5] [--out benchmarks/results/loop_costs.md]``.

- the temporal model's step graph: float (``--runtime onnx``) against the card's int8 graph (``--runtime int8``,
  made by ``facetrack quantize``), one face, onnxruntime on ``--threads`` threads;
- the face validator: PyTorch on 2 threads, PyTorch on 1 thread, onnxruntime on 1 thread (what the tracker runs);
- the loop's NumPy/OpenCV pieces per face: the validator's crop, the roll, the shape check, the output filter, the
  head pose (``PYTHONPATH=<old checkout> python benchmarks/loop_costs.py`` measures another version's).

Rounds interleave the contestants; the report gives medians (and minima) over rounds of the per-call means.

``--loop default search_every=3 ...``: instead, the whole tracking loop (``facetrack.Tracker`` with each setting,
frames decoded beforehand) on ``single_face.mp4`` (640x360, one 150 px face) and on the same frames pasted on a
1920x1080 grey canvas (a small face in a large frame): CPU and detector milliseconds per frame
(``--out benchmarks/results/loop_recheck.md``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from collections.abc import Callable

import torch
from report_files import write_report

REPO = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``fn`` over ``calls`` calls, after one warm-up call."""
    fn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return 1000 * (time.process_time() - cpu) / calls, 1000 * (time.perf_counter() - wall) / calls


def python_pieces(validator: object) -> dict[str, Callable[[], object]]:
    """The loop's per-face NumPy/OpenCV pieces on real landmarks (frame 40 of single_face.mp4 as tracked by the
    default Tracker): the validator's crop and score, the roll, the shape check, the output filter with a full
    window, the head pose."""
    from speed_vs_mediapipe import VIDEOS, frames_of

    from facetrack import Tracker
    from facetrack.data.transforms import face_roll
    from facetrack.pose import face_pose
    from facetrack.schemes import IBUG68
    from facetrack.tracking.plausibility import load_shape_check
    from facetrack.tracking.smoothing import AlignedShapeFilter
    from facetrack.tracking.validator import validator_crop

    results = list(Tracker(smoothing=None).track(list(frames_of(VIDEOS / "single_face.mp4"))[:41], with_frames=True))
    image, shapes = results[-1].image, [r.faces[0].landmarks for r in results[-6:]]
    points = shapes[-1]
    smoother = AlignedShapeFilter(5, 0.7)
    for shape in shapes[:-1]:
        smoother(shape)

    def smooth() -> object:  # the newest shape against a full window of four past ones, every call
        history = list(smoother._history)
        out = smoother(points)
        smoother._history = history
        return out

    check = load_shape_check()
    size = image.shape[1], image.shape[0]
    pieces: dict[str, Callable[[], object]] = {
        "validator crop (upright)": lambda: validator_crop(image, points, True),
        "face_roll": lambda: face_roll(points, IBUG68),
        "output filter (aligned 5, 0.7)": smooth,
        "head pose (face_pose)": lambda: face_pose(points, size, None),
    }
    if validator is not None:
        score = getattr(validator, "score")
        pieces["validator score (crop + network)"] = lambda: score(image, [points])
    if check is not None:
        pieces["shape check"] = lambda: check([points])
    return pieces


def parse_setting(text: str) -> dict[str, object]:
    """``default`` -> {}; ``search_every=3,verify_margin=0.5`` -> Tracker keywords (numbers parsed)."""
    out: dict[str, object] = {}
    for item in ([] if text == "default" else text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key] = float(value) if "." in value else int(value)
        except ValueError:
            out[key] = value
    return out


def loop_costs(settings: list[str], rounds: int, out: Path) -> int:
    """The whole tracking loop per setting, on single_face.mp4 and on it pasted into 1080p frames."""
    import numpy as np

    from speed_vs_mediapipe import VIDEOS, frames_of

    from facetrack import Tracker

    small = np.stack(list(frames_of(VIDEOS / "single_face.mp4")))
    large = np.full((len(small), 1080, 1920, 3), 110, np.uint8)
    h, w = small.shape[1:3]
    large[:, (1080 - h) // 2:(1080 - h) // 2 + h, (1920 - w) // 2:(1920 - w) // 2 + w] = small
    videos = {f"single_face.mp4 ({w}x{h})": small, "single_face.mp4 on 1920x1080": large}
    try:
        from facetrack.models.onnx_runtime import SESSION_CONFIG
    except ImportError:  # a version from before SESSION_CONFIG (measured with PYTHONPATH): no spin=1 there
        SESSION_CONFIG = {}

    trackers = {}
    threads = torch.get_num_threads()
    for text in settings:  # spin=1, threads=N: how the landmark model's onnxruntime sessions are made
        options = parse_setting(text)
        if options.pop("spin", 0):
            SESSION_CONFIG["session.intra_op.allow_spinning"] = "1"
        torch.set_num_threads(int(options.pop("threads", threads)))  # type: ignore[call-overload]
        trackers[text] = Tracker(**options)
        list(trackers[text].track(small[:10]))  # warm-up: first-use exports, caches, sessions
        SESSION_CONFIG.pop("session.intra_op.allow_spinning", None)
        torch.set_num_threads(threads)
    results: dict[str, list[tuple[float, float, int, float]]] = {}
    for r in range(rounds):
        names = settings[r % len(settings):] + settings[:r % len(settings)]
        for video, array in videos.items():
            for text in names:
                tracker, detection, cpu, wall = trackers[text], 0.0, time.process_time(), time.perf_counter()
                for result in tracker.track(array):
                    detection += result.timings["detection"]
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                results.setdefault(f"{video} | {text}", []).append(
                    (1000 * cpu / len(array), detection / len(array), tracker.stats.detector_runs, len(array) / wall))
    load = os.getloadavg()[0]
    lines = ["# The tracking loop per setting: CPU and detector time per frame", "",
             f"`python benchmarks/loop_costs.py --loop {' '.join(settings)} --rounds {rounds}`; torch threads "
             f"{torch.get_num_threads()}, {rounds} interleaved rounds, medians (min-max); load average at the end "
             f"{load:.1f}. The 1080p rows paste the same frames (one face of about 150 px) on a grey canvas; "
             "frames decoded beforehand (fps excludes decoding). Settings: Tracker keywords, and `spin=1` / "
             "`threads=N` for the landmark model's onnxruntime session.", "",
             "| video | setting | CPU ms / frame | detector ms / frame (wall) | detector runs | fps (wall) |",
             "|---|---|---|---|---|---|"]
    for key, values in results.items():
        cpu, det, fps = [v[0] for v in values], [v[1] for v in values], [v[3] for v in values]
        lines.append(f"| {key.replace(' | ', ' | `', 1)}` | {statistics.median(cpu):.1f} ({min(cpu):.1f}-"
                     f"{max(cpu):.1f}) | {statistics.median(det):.1f} ({min(det):.1f}-{max(det):.1f}) "
                     f"| {values[0][2]} | {statistics.median(fps):.1f} ({min(fps):.1f}-{max(fps):.1f}) |")
    write_report(out, "\n".join(lines) + "\n",
                 {key: {"cpu_ms": [v[0] for v in values], "detector_ms": [v[1] for v in values],
                        "fps": [v[3] for v in values]} for key, values in results.items()})
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="1dformer-68")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--loop", nargs="+", metavar="SETTING", default=None,
                   help="measure the whole loop per setting: default, or KEY=VALUE[,KEY=VALUE] Tracker keywords")
    p.add_argument("--out", type=Path, default=None,
                   help="default benchmarks/results/loop_costs.md (loop_recheck.md with --loop)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.loop:
        return loop_costs(args.loop, args.rounds, args.out or REPO / "benchmarks" / "results" / "loop_recheck.md")
    args.out = args.out or REPO / "benchmarks" / "results" / "loop_costs.md"
    from facetrack.landmarker import Landmarker
    from facetrack.tracking.validator import load_validator

    contestants: dict[str, Callable[[], object]] = {}
    for runtime in ("onnx", "int8"):
        landmarker = Landmarker(args.model, runtime=runtime, calibrate=False)
        model, step = landmarker.model, landmarker.predictor.step
        images = torch.rand(1, 3, model.input_size, model.input_size, generator=torch.Generator().manual_seed(0))
        state = model.init_state(1)
        for _ in range(12):  # a full window of history
            state = step(images, state)[1]
        contestants[f"{args.model} step, {runtime}"] = lambda step=step, images=images, state=state: step(images, state)
    validator = load_validator()
    if validator is not None:
        x = torch.rand(1, 4, 64, 64)

        def net(threads: int) -> Callable[[], object]:
            def run() -> object:
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    return validator.net(x)
            return run

        contestants["validator, PyTorch 2 threads"] = net(2)
        contestants["validator, PyTorch 1 thread"] = net(1)
        validator.forward(x)
        contestants["validator, onnxruntime 1 thread"] = lambda: validator.forward(x)
    contestants.update(python_pieces(validator))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in contestants}
    for r in range(args.rounds):
        names = list(contestants)
        for name in names[r % len(names):] + names[:r % len(names)]:
            results[name].append(timed(contestants[name], args.calls))
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    lines = ["# Per-face costs of the tracking loop", "",
             f"`python benchmarks/loop_costs.py --model {args.model} --threads {args.threads} --rounds {args.rounds}`; "
             f"{args.rounds} interleaved rounds of {args.calls} calls, medians (minima); load average at the end "
             f"{load:.1f} (CPU time is what to compare on a shared machine).", "",
             "| piece | CPU ms / call | wall ms / call |", "|---|---|---|"]
    for name, values in results.items():
        cpu, wall = [v[0] for v in values], [v[1] for v in values]
        lines.append(f"| {name} | {statistics.median(cpu):.2f} ({min(cpu):.2f}) | "
                     f"{statistics.median(wall):.2f} ({min(wall):.2f}) |")
    write_report(args.out, "\n".join(lines) + "\n",
                 {name: {"cpu_ms": [v[0] for v in values], "wall_ms": [v[1] for v in values]}
                  for name, values in results.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
