"""CRCT's recurrent box tracker (BT) against tracking-by-detection and today's landmark-box policy.

As Aspandi et al. (FG 2019, IV-B/C), on the held-out pseudo-videos of the 1DFormer tables (24 x 75 frames,
identities never trained on) and on the multi-face clips (``benchmarks/multi_face.py``'s scenarios, held-out
faces):

- OPE (one-pass evaluation from the first frame's GT box, no restart by the evaluator): success rate against the
  IoU threshold of the tracked box with the GT box (both the landmark extent), its AUC (mean success over the 21
  thresholds 0, 0.05, ..., 1), and precision (centre error <= 20 px); a missed face has IoU 0;
- detector runs per 1,000 frames, frames per second (wall time, shared CPU), and the landmark NRMSE (inter-ocular,
  per video then over videos) of each row's final landmarks.

Rows: ``detection every frame`` (the default face detector's box on every frame, the best-overlapping one:
tracking-by-detection; its landmarks from the landmark model started on that box every frame, no state);
``landmark-box policy`` (``facetrack track``: crops around the previous landmarks, detector only when needed);
``CRCT (BT + FLL)`` (``track --box-tracker crct``: Algorithm 1, BT gives each tracked frame's box); ``BT alone``
(the paper's rigid box experiment: b_t = b_t^BT, no landmark model, no detector). Both tracker rows run the full
``facetrack.Tracker`` (validator, re-detection with T_B) with raw output and the first frame's faces given.

    python benchmarks/box_tracker.py --bt runs/crct_bt4/last.safetensors
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

log = logging.getLogger("box_tracker")
THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_PX = 20.0


class CountingDetector:
    """The face detector, counting its runs."""

    def __init__(self, detector: Any) -> None:
        self.detector, self.calls = detector, 0
        self.name = getattr(detector, "name", type(detector).__name__)

    def detect(self, frame: np.ndarray) -> Any:
        self.calls += 1
        return self.detector.detect(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.detector, name)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    from facetrack.tracking.association import box_iou

    if not np.isfinite(a).all():
        return 0.0
    return float(box_iou(a[None], b[None])[0, 0])


def _centre_error(a: np.ndarray, b: np.ndarray) -> float:
    if not np.isfinite(a).all():
        return math.inf
    return float(np.linalg.norm(0.5 * (a[:2] + a[2:]) - 0.5 * (b[:2] + b[2:])))


def _boxes_of(faces: Any, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per GT face: the best-overlapping output face's box and landmarks (NaN when none overlaps)."""
    from facetrack.data.transforms import box_from_landmarks

    n = len(gt_boxes)
    boxes, points = np.full((n, 4), np.nan), np.full((n, 68, 2), np.nan)
    for k, gt in enumerate(gt_boxes):
        best, score = None, 0.0
        for face in faces:
            iou = _iou(box_from_landmarks(face.landmarks), gt)
            if iou > score:
                best, score = face, iou
        if best is not None:
            boxes[k], points[k] = box_from_landmarks(best.landmarks), best.landmarks
    return boxes, points


def run_tracker(engine: Any, detector: Any, frames: list[np.ndarray], first_boxes: np.ndarray,
                gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The full tracker (raw output, first faces given): boxes (T, F, 4), landmarks (T, F, N, 2), seconds."""
    from facetrack.api import Tracker

    tracker = Tracker(model=engine, detector=detector, smoothing=None, max_faces=len(first_boxes))
    boxes, points = [], []
    start = time.perf_counter()
    for t, result in enumerate(tracker.track(frames, boxes=first_boxes)):
        b, p = _boxes_of(result.faces, gt_boxes[t])
        boxes.append(b)
        points.append(p)
    return np.stack(boxes), np.stack(points), time.perf_counter() - start


def run_detection(engine: Any, detector: Any, frames: list[np.ndarray],
                  gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Tracking-by-detection: detector boxes (T, F, 4), landmarks of a fresh start on them, extents, seconds."""
    from facetrack.data.transforms import box_from_landmarks

    det_boxes, points, extents = [], [], []
    start = time.perf_counter()
    for t, image in enumerate(frames):
        found = detector.detect(image)
        boxes, p5 = found.boxes, found.points5
        n = len(gt_boxes[t])
        db, pts, ext = np.full((n, 4), np.nan), np.full((n, 68, 2), np.nan), np.full((n, 4), np.nan)
        for k, gt in enumerate(gt_boxes[t]):
            if not len(boxes):
                continue
            overlaps = [_iou(b, gt) for b in boxes]
            j = int(np.argmax(overlaps))
            if overlaps[j] <= 0:
                continue
            db[k] = boxes[j]
            est = engine.start(image, [boxes[j]], None if p5 is None else np.asarray(p5)[j:j + 1])
            pts[k], ext[k] = est[0].landmarks, box_from_landmarks(est[0].landmarks)
        det_boxes.append(db)
        points.append(pts)
        extents.append(ext)
    return np.stack(det_boxes), np.stack(points), np.stack(extents), time.perf_counter() - start


def ope(boxes: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, Any]:
    """Success curve, its AUC and precision@20 px over every (frame, GT face) of every clip."""
    ious, errs = [], []
    for b, g in zip(boxes, gts):
        for bt, gt in zip(b.reshape(-1, 4), g.reshape(-1, 4)):
            ious.append(_iou(bt, gt))
            errs.append(_centre_error(bt, gt))
    ious_np, errs_np = np.array(ious), np.array(errs)
    success = [(ious_np > t).mean() if t > 0 else (ious_np >= 0).mean() for t in THRESHOLDS]
    return {"success": [float(s) for s in success], "auc": float(np.mean(success)),
            "precision20": float((errs_np <= PRECISION_PX).mean()), "mean_iou": float(ious_np.mean()),
            "count": int(len(ious_np))}


def nrmse(points: list[np.ndarray], gts: list[np.ndarray]) -> float:
    """Inter-ocular NRMSE (%) per (clip, face) over its found frames, then mean (a lost frame is left out)."""
    per = []
    for p, g in zip(points, gts):
        for k in range(g.shape[1]):
            pk, gk = p[:, k], g[:, k]
            ok = np.isfinite(pk).all(axis=(1, 2)) & np.isfinite(gk).all(axis=(1, 2))
            if ok.any():
                iod = np.linalg.norm(gk[ok, 36] - gk[ok, 45], axis=-1)
                per.append(float((np.linalg.norm(pk[ok] - gk[ok], axis=-1).mean(-1) / iod).mean()))
    return 100 * float(np.mean(per)) if per else math.nan


def clip_sets(args: argparse.Namespace) -> dict[str, list[tuple[str, list[np.ndarray], np.ndarray]]]:
    """{set: [(name, BGR frames, GT landmarks (T, F, N, 2))]} for the held-out pseudo-videos and multi-face clips."""
    from facetrack.data.sample import read_image
    from facetrack.evaluation import load_pseudo_truth
    from temporal_bench import StudySettings, write_heldout_clips

    out: dict[str, list[tuple[str, list[np.ndarray], np.ndarray]]] = {"pseudo": [], "multi-face": []}
    folder = write_heldout_clips(StudySettings(encoder="", root=args.root, cache=args.cache))
    for truth in load_pseudo_truth(folder)[: args.pseudo_clips]:
        frames = [read_image(p) for p in sorted((folder / truth.name / "imgs").iterdir())]
        out["pseudo"].append((truth.name, frames, truth.landmarks[:, None]))
    if args.multi_frames > 0:
        from multi_face import held_out_faces, make_clips

        for clip in make_clips(held_out_faces(Path(args.root)), 1, args.multi_frames, 0):
            gt = np.where(clip.present[..., None, None], clip.landmarks, np.nan)
            out["multi-face"].append((clip.name, [clip.render(i) for i in range(len(clip))], gt))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bt", default="runs/crct_bt4/last.safetensors", help="BT weights")
    parser.add_argument("--model", default="1dformer-68", help="landmark model (FLL), as track --model")
    parser.add_argument("--root", default="../shared/data/300w")
    parser.add_argument("--cache", default="runs/temporal_cache")
    parser.add_argument("--pseudo-clips", type=int, default=24)
    parser.add_argument("--multi-frames", type=int, default=60, help="frames per multi-face clip (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/box_tracker.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    from facetrack.api import resolve_detector, resolve_engine
    from facetrack.data.transforms import box_from_landmarks
    from facetrack.tracking.box_tracker import CRCTEngine, load_box_tracker, track_boxes

    torch.set_num_threads(args.threads)
    bt = load_box_tracker(args.bt)
    detector = CountingDetector(resolve_detector(None))
    results: dict[str, Any] = {"bt": args.bt, "model": args.model, "sets": {}}
    for set_name, clips in clip_sets(args).items():
        if not clips:
            continue
        rows: dict[str, dict[str, Any]] = {}
        acc: dict[str, dict[str, list]] = {}
        frames_total = sum(len(f) for _, f, _ in clips)

        def add(row: str, boxes: np.ndarray, gt_boxes: np.ndarray, points: np.ndarray | None, gt: np.ndarray,
                seconds: float, calls: int) -> None:
            a = acc.setdefault(row, {"boxes": [], "gt_boxes": [], "points": [], "gt": [], "s": [], "calls": []})
            a["boxes"].append(boxes)
            a["gt_boxes"].append(gt_boxes)
            if points is not None:
                a["points"].append(points)
                a["gt"].append(gt)
            a["s"].append(seconds)
            a["calls"].append(calls)

        for name, frames, gt in clips:
            gt_boxes = np.array([[box_from_landmarks(f) if np.isfinite(f).all() else np.full(4, np.nan) for f in ff]
                                 for ff in gt])
            first = gt_boxes[0][np.isfinite(gt_boxes[0]).all(axis=1)]
            log.info("%s %s: %d frames, %d faces", set_name, name, len(frames), gt.shape[1])
            engine = resolve_engine(args.model, default="DEFAULT_TRACKER")
            detector.calls = 0
            det, pts, ext, s = run_detection(engine, detector, frames, gt_boxes)
            add("detection every frame: detector box", det, gt_boxes, None, gt, s, detector.calls)
            add(f"detection every frame: {args.model} landmarks (tracking-by-detection)", ext, gt_boxes, pts, gt, s,
                detector.calls)
            for row, eng in ((f"landmark-box policy ({args.model}, track)", resolve_engine(args.model, default="DEFAULT_TRACKER")),
                             (f"CRCT: BT + {args.model} (track --box-tracker crct)",
                              CRCTEngine(resolve_engine(args.model, default="DEFAULT_TRACKER"), bt))):
                detector.calls = 0
                boxes, points, s = run_tracker(eng, detector, frames, first, gt_boxes)
                add(row, boxes, gt_boxes, points, gt, s, detector.calls)
            if gt.shape[1] == 1:  # BT alone follows one face from its first box
                start = time.perf_counter()
                only = track_boxes(bt, frames, first[0])[:, None]
                add("BT alone (b_t = b_t^BT, OPE)", only, gt_boxes, None, gt, time.perf_counter() - start, 0)
        for row, a in acc.items():
            rows[row] = {**ope(a["boxes"], a["gt_boxes"]),
                         "nrmse": nrmse(a["points"], a["gt"]) if a["points"] else math.nan,
                         "detector_per_1000": 1000 * sum(a["calls"]) / frames_total,
                         "fps": frames_total / max(sum(a["s"]), 1e-9)}
        results["sets"][set_name] = {"clips": len(clips), "frames": frames_total, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    plot(results, out.with_suffix(".png"))
    print(write_table(results, out))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = results["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), dpi=110, squeeze=False)
    for ax, (name, s) in zip(axes[0], sets.items()):
        for row, r in s["rows"].items():
            ax.plot(THRESHOLDS, r["success"], label=f"{row} [{r['auc']:.3f}]")
        ax.set(title=f"OPE success, {name} ({s['clips']} clips)", xlabel="overlap threshold (IoU)",
               ylabel="success rate", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=6, loc="lower left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_table(results: dict[str, Any], path: Path) -> str:
    lines = ["# CRCT's box tracker vs tracking-by-detection vs the landmark-box policy", "",
             f"BT `{results['bt']}`, landmark model `{results['model']}`. OPE from the first frame's GT box; boxes "
             "and GT boxes are landmark extents (the detector's own box is a different, larger convention, shown "
             "for reference). AUC: mean success over IoU thresholds 0..1 (step 0.05); precision: centre error <= "
             "20 px; NRMSE: inter-ocular %, per face track then mean; fps: wall time on a shared CPU, 1 thread. "
             "Success plot: box_tracker.png.", ""]
    for name, s in results["sets"].items():
        lines += [f"## {name}: {s['clips']} clips, {s['frames']} frames", "",
                  "| row | success AUC | precision@20px | mean IoU | NRMSE % | detector runs / 1000 frames | fps |",
                  "|---|---|---|---|---|---|---|"]
        for row, r in s["rows"].items():
            nr = "-" if not math.isfinite(r["nrmse"]) else f"{r['nrmse']:.3f}"
            lines.append(f"| {row} | {r['auc']:.3f} | {r['precision20']:.3f} | {r['mean_iou']:.3f} | {nr} "
                         f"| {r['detector_per_1000']:.0f} | {r['fps']:.1f} |")
        lines.append("")
    text = "\n".join(lines)
    path.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
