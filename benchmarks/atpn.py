"""ATPN (thesis ch. 3) against aohr-68, and what the PnP pose labels are worth.

    python benchmarks/atpn.py --atpn runs/atpn68_pose/best.safetensors --out benchmarks/results/atpn

Sections (``--only`` picks some):
- ``accuracy``: held-out 300-W NME / AUC@0.08 / FR@0.08 of both models, ground-truth boxes and the face detector
  (``benchmarks/default_model.py``'s protocol, ``facetrack detect`` + ``facetrack evaluate``);
- ``size``: parameters (all, and backbone + landmark branch) and FLOPs (torch's FlopCounterMode, 1 multiply-add =
  2 FLOPs; the thesis's "FLOPs" count multiply-adds) at batch 1;
- ``speed``: ms per face on 2 threads as ``facetrack`` runs it (``benchmarks/model_speed.time_model``: crop, forward,
  decode), the two models interleaved in rounds so both see the same load of the shared CPU;
- ``labels``: the PnP labels on the held-out faces: fit residual, change with the focal assumption (0.5x and 2x)
  and with annotation-sized noise on the landmarks (1 % of the inter-ocular distance per coordinate);
- ``pose``: per held-out face (ground-truth box), ATPN's pose head vs the PnP label of the ground truth, and the PnP
  fit of each model's own landmarks vs the same label (MAE per angle, FR@10 degrees);
- ``check``: face / non-face accuracy on held-out crops (each held-out face's tracker crop; 10 crops per face with
  IoU < 0.3 from its photograph and the face-free video's last frames): ATPN's tracking head vs the face validator
  scoring ATPN's landmarks on the same crops;
- ``track``: ``Tracker`` with ATPN's head (``face_check="atpn"``) vs the face validator, same model, on pseudo-videos
  of held-out faces (frames with the face found, re-detections per 1,000 frames, NME of the found faces) and on the
  face-free video (frames with a false face), and frames per second.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
ROOT = Path("../shared/data/300w")
NO_FACE = Path("../shared/data/videos/no_face.mp4")


def held_out() -> list:
    from facetrack.data import catalog

    return catalog.train_val("shared300w", ROOT)[1]


def accuracy(models: dict[str, str], out: Path) -> dict:
    from default_model import run

    rows = {}
    for label, model in models.items():
        results = run(model, ROOT, out / label, Path("runs/atpn_bench") / label)
        rows[label] = {}
        for protocol, result in results.items():
            (subset,) = result["subsets"].values()
            ocular = subset["nme"]["ocular"]
            rows[label][protocol] = {"faces": subset["faces"], "misses": subset["misses"],
                                     "nme": 100 * ocular["nme"], "auc": 100 * ocular["auc_fr"]["auc"],
                                     "fr": 100 * ocular["auc_fr"]["fr"]}
    return rows


def size(models: dict[str, str]) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from facetrack.models.hub import load_model

    rows = {}
    for label, name in models.items():
        model = load_model(name).eval()
        total = sum(p.numel() for p in model.parameters())
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.rand(1, 3, model.input_size, model.input_size))
        flops = counter.get_flop_counts()
        row = {"parameters": int(total), "gflops": counter.get_total_flops() / 1e9, "input": model.input_size}
        if hasattr(model, "track_branch"):
            heads = {k: sum(p.numel() for p in getattr(model, k).parameters()) for k in ("pose_branch", "track_branch")}
            row.update({"backbone_landmarks_parameters": int(total - sum(heads.values())),
                        **{f"{k}_parameters": int(v) for k, v in heads.items()}})
            cls = type(model).__name__
            for key in ("pose_branch", "track_branch"):
                row[f"{key}_gflops"] = sum(flops.get(f"{cls}.{key}", {}).values()) / 1e9
            row["backbone_landmarks_gflops"] = row["gflops"] - row["pose_branch_gflops"] - row["track_branch_gflops"]
        rows[label] = row
    return rows


def speed(models: dict[str, str], rounds: int = 5, runs: int = 100) -> dict:
    from model_speed import time_model

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    box = np.array([[250.0, 100.0, 390.0, 260.0]])
    medians: dict[str, list[float]] = {k: [] for k in models}
    mins: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for label, name in models.items():
            row = time_model(name, runs, image, box)
            medians[label].append(row["ms_median"])
            mins[label].append(row["ms_min"])
    return {label: {"ms_median": statistics.median(medians[label]), "ms_min": min(mins[label]),
                    "rounds": rounds, "runs": runs} for label in models} | {"load": os.getloadavg()[0]}


def labels(faces: list) -> dict:
    from facetrack.pose import head_pose

    rng = np.random.default_rng(0)
    base, residuals, focal, noise = [], [], {0.5: [], 2.0: []}, []
    from facetrack.pose import Camera, fit_pose

    for sample in faces:
        h, w = sample.load_image().shape[:2]
        points = np.asarray(sample.landmarks, dtype=np.float64)
        fit = fit_pose(points, Camera.for_image(w, h))
        iod = float(np.linalg.norm(points[36] - points[45]))
        base.append(fit.pose)
        residuals.append(fit.residual / iod)
        for scale in focal:
            focal[scale].append(np.abs(head_pose(points, (w, h), scale) - fit.pose))
        jitter = points + rng.normal(0, 0.01 * iod, points.shape)
        noise.append(np.abs(head_pose(jitter, (w, h)) - fit.pose))
    base = np.array(base)
    summary = {"faces": len(faces), "residual_iod_median": float(np.median(residuals)),
               "residual_iod_p90": float(np.percentile(residuals, 90)),
               "label_abs_mean": np.abs(base).mean(axis=0).tolist(), "label_mean": base.mean(axis=0).tolist(),
               "label_abs_max": np.abs(base).max(axis=0).tolist()}
    for scale, diffs in focal.items():
        d = np.array(diffs)
        summary[f"focal_x{scale}"] = {"mae": d.mean(axis=0).tolist(), "p90_mean": float(np.percentile(d.mean(1), 90))}
    d = np.array(noise)
    summary["noise_1pct_iod"] = {"mae": d.mean(axis=0).tolist(), "p90_mean": float(np.percentile(d.mean(1), 90))}
    return summary


def _pose_errors(pred: np.ndarray, truth: np.ndarray) -> dict:
    err = np.abs((pred - truth + 180.0) % 360.0 - 180.0)
    mean = err.mean(axis=1)
    return {"yaw": float(err[:, 0].mean()), "pitch": float(err[:, 1].mean()), "roll": float(err[:, 2].mean()),
            "mae": float(mean.mean()), "fr10": 100.0 * float((mean > 10).mean()), "faces": int(len(err))}


def pose(models: dict[str, str], faces: list) -> dict:
    from facetrack.api import Detector
    from facetrack.data.transforms import box_from_landmarks
    from facetrack.pose import face_pose, head_pose

    truth, preds = [], {label: [] for label in models}
    pnp_of_atpn = []
    detectors = {label: Detector(model=name, validator=None) for label, name in models.items()}
    for sample in faces:
        image = sample.load_image()
        points = np.asarray(sample.landmarks, dtype=np.float64)
        size_wh = (image.shape[1], image.shape[0])
        truth.append(head_pose(points, size_wh))
        box = box_from_landmarks(points)
        for label, det in detectors.items():
            (face,) = det(image, boxes=[box])
            preds[label].append(face.pose)
            if label == "atpn-68":
                pnp_of_atpn.append(face_pose(face.landmarks, size_wh))
    truth = np.array(truth)
    rows = {f"{label} ({'pose head' if label == 'atpn-68' else 'PnP of its landmarks'})":
            _pose_errors(np.array(p), truth) for label, p in preds.items()}
    rows["atpn-68 (PnP of its landmarks)"] = _pose_errors(np.array(pnp_of_atpn), truth)
    return rows


def check(atpn: str, faces: list) -> dict:
    from facetrack.landmarker import Landmarker
    from facetrack.train.atpn import face_crop, negative_crops, to_tensor, video_frames
    from facetrack.tracking.validator import load_validator

    rng = np.random.default_rng(1)
    frames = video_frames([str(NO_FACE)], 60)
    frames = frames[-len(frames) // 4:]  # the frames stage 2 kept for validation
    crops, labels_ = [], []
    for sample in faces:
        image = sample.load_image()
        points = np.asarray(sample.landmarks, dtype=np.float64)
        crops.append(face_crop(image, points, 112, None)[0])
        labels_.append(1)
        negatives = negative_crops(image, [points], 7, 112, 0.3, rng)
        for _ in range(3):
            negatives += negative_crops(frames[int(rng.integers(len(frames)))], [], 1, 112, 0.3, rng)
        crops += negatives
        labels_ += [0] * len(negatives)
    marker = Landmarker(atpn, runtime="torch")
    validator = load_validator()
    y = np.array(labels_)
    p_atpn, p_val = [], []
    for i in range(0, len(crops), 64):
        batch = crops[i:i + 64]
        coords, _ = marker.predict_crops(to_tensor(batch))
        p_atpn.append(marker.aux["face"])
        p_val.append(validator.score_crops(batch, coords.numpy()) if hasattr(validator, "score_crops") else
                     np.array([validator.score(c, [pts])[0] for c, pts in zip(batch, coords.numpy())]))
    rows = {}
    from facetrack.train.atpn import average_precision

    for label, p, t in (("ATPN tracking head", np.concatenate(p_atpn), 0.7),
                        ("face validator on ATPN's landmarks", np.concatenate(p_val), 0.5)):
        rows[label] = {"threshold": t, "accuracy": 100 * float(((p > t) == (y == 1)).mean()),
                       "faces_kept": 100 * float((p[y == 1] > t).mean()),
                       "non_faces_rejected": 100 * float((p[y == 0] <= t).mean()),
                       "ap": 100 * average_precision(p, y), "faces": int((y == 1).sum()),
                       "non_faces": int((y == 0).sum())}
    return rows


def track(atpn: str, faces: list, clips: int = 8) -> dict:
    from facetrack.api import Tracker
    from facetrack.data.synthetic import PseudoVideoConfig, make_pseudo_video
    from facetrack.io.video import open_source
    from facetrack.metrics.nme import nme, normaliser

    torch.set_num_threads(2)
    videos = []
    for k, sample in enumerate(faces[::max(1, len(faces) // clips)][:clips]):
        video = make_pseudo_video(sample.load_image(), np.asarray(sample.landmarks), PseudoVideoConfig(
            num_frames=90, size=(320, 320)), seed=k)
        videos.append(([video.render(i) for i in range(len(video))], video.landmarks))
    with open_source(str(NO_FACE)) as source:
        empty = [frame for _, _, frame in source]
    rows: dict = {}
    trackers = {name: Tracker(model=atpn, face_check=name, max_faces=1) for name in ("validator", "atpn")}
    list(trackers["validator"].track(videos[0][0][:10]))  # warm-up: onnxruntime sessions, detector
    list(trackers["atpn"].track(videos[0][0][:10]))
    for round_, check_name in enumerate(("atpn", "validator", "validator", "atpn")):  # ABBA: the same load for both
        tracker = trackers[check_name]
        found, frames, detections, lost, errors, wall = 0, 0, 0, 0, [], 0.0
        for images, truth in videos:
            t0 = time.perf_counter()
            results = list(tracker.track(images))
            wall += time.perf_counter() - t0
            frames += len(results)
            detections += tracker.stats.detector_runs
            lost += tracker.stats.tracks_lost
            for result, gt in zip(results, truth):
                if result.faces:
                    found += 1
                    pred = result.faces[0].landmarks[None]
                    errors.append(float(nme(pred, gt[None], normaliser(gt[None], "ibug68", "ocular"))[0]))
        t0 = time.perf_counter()
        false = sum(bool(r.faces) for r in tracker.track(empty))
        empty_wall = time.perf_counter() - t0
        rows[f"{check_name} (round {round_ + 1})"] = {
            "face_frames": frames, "found": 100 * found / frames, "detector_runs_per_1000": 1000 * detections / frames,
            "tracks_lost_per_1000": 1000 * lost / frames,
            "nme_found": 100 * float(np.mean(errors)) if errors else float("nan"), "fps_face_clips": frames / wall,
            "no_face_frames": len(empty), "false_face_frames": int(false), "fps_no_face": len(empty) / empty_wall}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atpn", required=True, help="ATPN weights (stage 3 output)")
    parser.add_argument("--reference", default="aohr-68")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/atpn"))
    parser.add_argument("--only", nargs="*", default=["accuracy", "size", "speed", "labels", "pose", "check", "track"])
    args = parser.parse_args()
    models = {"atpn-68": args.atpn, args.reference: args.reference}
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "atpn.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    faces = held_out()
    for name in args.only:
        t0 = time.perf_counter()
        if name == "accuracy":
            report[name] = accuracy(models, args.out)
        elif name == "size":
            report[name] = size(models)
        elif name == "speed":
            report[name] = speed(models)
        elif name == "labels":
            report[name] = labels(faces)
        elif name == "pose":
            report[name] = pose(models, faces)
        elif name == "check":
            report[name] = check(args.atpn, faces)
        elif name == "track":
            report[name] = track(args.atpn, faces)
        report.setdefault("commands", {})[name] = (f"python benchmarks/atpn.py --atpn {args.atpn} --only {name}"
                                                   f" (load average {os.getloadavg()[0]:.1f})")
        print(name, f"{time.perf_counter() - t0:.0f} s", json.dumps(report[name], indent=1), flush=True)
        report_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
