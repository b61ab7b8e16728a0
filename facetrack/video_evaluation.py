"""Scoring tracking output against video ground truth (300VW S1/S2/S3, Talking Face, pseudo-videos).

One code path for every method (as for images): a method is a folder of tracking output, per video either
the ``landmarks.csv`` of ``facetrack track`` or per-frame ``.pts`` files in the 300VW layout. Per video and
frame it measures (EVALUATION.md sections 4-6):

- NRMSE: mean point-to-point error / GT outer-eye-corner distance (68 points: 36-45; the 7 common points of
  Talking Face: 0-3), in %. Averaged **per video, then over videos** (FHR's ``comp_scenarios_68pts.m``: the
  headline "N") and also **frame-pooled** (SBR's image lists); both are reported, labelled.
- FHR stability (Tai et al. AAAI'19 ``loss_stable``): e1 delay (frames), e2 accuracy, e3 jitter about the
  neighbours' midpoint, e4 velocity-invariant jitter, in % of face size; the GT's own e3/e4 as a floor. The
  headline "S" is e3 (``sta1``, configurable), averaged per video then over videos as FHR does.
- LDEQ NMJ (residual jitter, blind to true motion), RMS over frame pairs, averaged over videos.
- Frames lost: annotated frames with no prediction on the annotated face. They are left out of every
  accuracy and jitter term (jitter terms only use consecutive tracked frames) and reported separately.
- Confidence vs occlusion: AUROC of the per-landmark confidence predicting "not occluded", pooled over all
  tracked frames and landmarks, where occlusion masks exist (pseudo-videos) and the output has confidences.

When a frame of ``landmarks.csv`` has several faces, the one whose landmark box overlaps the GT box most is
scored; if none overlaps, the frame counts as lost (the tracker is on another face).
"""
from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.errors import DataError
from facetrack.io.pts import read_pts
from facetrack.metrics.stability import fhr_stability, nmj, video_nrmse

log = logging.getLogger(__name__)

VIDEO_DATASETS = ("300vw", "tf", "pseudo")
STABILITY_TERMS = ("e1_delay", "e2_accuracy", "e3_jitter", "e4_jitter_velocity_invariant")
HEADLINE_S = {"e3": "e3_jitter", "e4": "e4_jitter_velocity_invariant"}
OCULAR = {68: (36, 45), 7: (0, 3)}


# ---------------------------------------------------------------------------------------------- ground truth


@dataclass
class VideoTruth:
    """One annotated video: ``frames`` (T,) 0-based frame indices as ``facetrack track`` numbers them,
    ``keys`` (T,) annotation file stems (to match ``.pts`` output), ``landmarks`` (T, N, 2) in 0-based pixels,
    ``occluded`` (T, N) bool or None."""

    name: str
    column: str
    frames: np.ndarray
    keys: list[str]
    landmarks: np.ndarray
    occluded: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.int64)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64)
        if self.landmarks.ndim != 3 or len(self.landmarks) != len(self.frames) != len(self.keys):
            raise ValueError(f"video {self.name}: frames, keys and landmarks (T, N, 2) disagree in length")
        if self.occluded is not None:
            self.occluded = np.asarray(self.occluded, dtype=bool)
            if self.occluded.shape != self.landmarks.shape[:2]:
                raise ValueError(f"video {self.name}: occluded {self.occluded.shape} is not (T, N)")


def load_video_truth(dataset: str, root: str | Path, splits: Sequence[str] = (),
                     skip_frames: str | Path | None = None) -> dict[str, list[VideoTruth]]:
    """Ground-truth videos by table column: 300VW splits (default S1, S2, S3), ``TF`` (7 common points),
    or ``pseudo`` (clip folders written by ``facetrack.data.synthetic.write_clip``)."""
    dataset = dataset.lower()
    if dataset == "300vw":
        from facetrack.data.w300vw import load_300vw

        out: dict[str, list[VideoTruth]] = {}
        for split in splits or ("S1", "S2", "S3"):
            videos = []
            for seq in load_300vw(root, split, skip_frames=skip_frames):
                numbers = np.asarray(seq.frame_numbers, dtype=np.int64)
                videos.append(VideoTruth(seq.video_id, split, numbers - 1, [f"{n:06d}" for n in numbers],
                                         seq.landmarks))
            out[split] = videos
        return out
    if dataset == "tf":
        from facetrack.data.talking_face import load_talking_face

        tf = load_talking_face(root)
        # ``facetrack track`` on the frame folder numbers frames by position in name order.
        return {"TF": [VideoTruth("tf", "TF", np.arange(len(tf)), [p.stem for p in tf.frame_paths], tf.common7())]}
    if dataset == "pseudo":
        return {"pseudo": load_pseudo_truth(root)}
    raise ValueError(f"unknown video dataset {dataset!r}; known: {', '.join(VIDEO_DATASETS)}")


def load_pseudo_truth(root: str | Path) -> list[VideoTruth]:
    """Pseudo-video clips in the 300VW layout: ``root`` is one clip (``annot/``) or a folder of clips.

    Occlusion masks come from each clip's ``pseudo_video.json`` when present."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "pseudo-video folder not found")
    clips = [root] if (root / "annot").is_dir() else sorted(p for p in root.iterdir() if (p / "annot").is_dir())
    if not clips:
        raise DataError(root, "no clip folders with annot/*.pts here")
    videos = []
    for clip in clips:
        files = sorted((p for p in (clip / "annot").iterdir() if p.suffix.lower() == ".pts"), key=lambda p: p.stem)
        bad = next((p for p in files if not p.stem.isdigit()), None)
        if bad is not None:
            raise DataError(bad, "annotation name is not a frame number (000001.pts ...)")
        if not files:
            raise DataError(clip / "annot", "no .pts annotations")
        numbers = np.array([int(p.stem) for p in files], dtype=np.int64)
        landmarks = np.stack([read_pts(p) for p in files])
        occluded = None
        meta_path = clip / "pseudo_video.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                occ = np.asarray(meta["occluded"], dtype=bool)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(meta_path, f"cannot read the occlusion masks ({exc})") from None
            if occ.shape[0] < numbers.max() or occ.shape[1:] != landmarks.shape[1:2]:
                raise DataError(meta_path, f"occlusion masks {occ.shape} do not match {len(files)} annotations")
            occluded = occ[numbers - 1]
        videos.append(VideoTruth(clip.name, "pseudo", numbers - 1, [p.stem for p in files], landmarks, occluded))
    return videos


# ---------------------------------------------------------------------------------------------- predictions


@dataclass
class VideoTrack:
    """Predictions aligned to a video's annotated frames: (T, N, 2) with NaN where lost; conf (T, N) or None."""

    landmarks: np.ndarray
    conf: np.ndarray | None
    source: str


def _box(points: np.ndarray) -> np.ndarray:
    finite = points[np.isfinite(points).all(axis=-1)]
    if len(finite) == 0:
        return np.full(4, np.nan)
    return np.concatenate([finite.min(axis=0), finite.max(axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 0.0
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _to_gt_points(points: np.ndarray, n_gt: int, where: Path) -> np.ndarray:
    """Predictions in the GT's scheme: 68 -> 7 common points for Talking Face; otherwise the counts must match."""
    n = points.shape[-2]
    if n == n_gt:
        return points
    if n == 68 and n_gt == 7:
        from facetrack.schemes import COMMON7_FROM_68

        return points[..., list(COMMON7_FROM_68), :]
    raise DataError(where, f"predictions have {n} points, the ground truth {n_gt} (68 -> 7 is the only mapping)")


def track_from_csv(path: str | Path, truth: VideoTruth) -> VideoTrack:
    """Align a ``landmarks.csv`` to ``truth``: per annotated frame the face overlapping the GT box most."""
    from facetrack.io.results import read_landmarks_csv

    path = Path(path)
    table = read_landmarks_csv(path)
    t_len, n_gt = truth.landmarks.shape[:2]
    pred = np.full((t_len, n_gt, 2), np.nan)
    conf = np.full((t_len, n_gt), np.nan)
    rows_by_frame: dict[int, list[int]] = {}
    for row, frame in enumerate(table.frame):
        rows_by_frame.setdefault(int(frame), []).append(row)
    points = _to_gt_points(table.landmarks, n_gt, path)
    confs = _to_gt_points(np.stack([table.conf, table.conf], -1), n_gt, path)[..., 0] if table.conf.size else None
    for t, frame in enumerate(truth.frames):
        rows = rows_by_frame.get(int(frame), [])
        if not rows:
            continue
        gt_box = _box(truth.landmarks[t])
        overlaps = [_iou(_box(points[r]), gt_box) for r in rows]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= 0.0:
            continue
        pred[t] = points[rows[best]]
        if confs is not None:
            conf[t] = confs[rows[best]]
    has_conf = confs is not None and bool(np.isfinite(conf).any())
    return VideoTrack(pred, conf if has_conf else None, str(path))


def track_from_pts(folder: str | Path, truth: VideoTruth) -> VideoTrack:
    """Align per-frame ``.pts`` files (``annot/000001.pts`` or ``000001.pts``; TF: ``franck_00000.pts``)."""
    folder = Path(folder)
    if (folder / "annot").is_dir():
        folder = folder / "annot"
    files = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".pts"}
    by_number = {int(s): p for s, p in files.items() if s.isdigit()}
    t_len, n_gt = truth.landmarks.shape[:2]
    pred = np.full((t_len, n_gt, 2), np.nan)
    for t, key in enumerate(truth.keys):
        path = files.get(key)
        if path is None and key.isdigit():
            path = by_number.get(int(key))
        if path is not None:
            pred[t] = _to_gt_points(read_pts(path), n_gt, path)
    return VideoTrack(pred, None, str(folder))


def find_track(method_dir: str | Path, truth: VideoTruth, single: bool) -> VideoTrack | None:
    """The output of one method for one video: ``DIR/<video>/landmarks.csv`` or ``DIR/<video>/[annot/]*.pts``;
    when the evaluation has a single video, ``DIR`` itself may hold it. None when there is none."""
    method_dir = Path(method_dir)
    if method_dir.is_file() and method_dir.suffix == ".csv":
        return track_from_csv(method_dir, truth) if single else None
    candidates = [method_dir / truth.name]
    if single:
        candidates.append(method_dir)
    for folder in candidates:
        if (folder / "landmarks.csv").is_file():
            return track_from_csv(folder / "landmarks.csv", truth)
        pts_dir = folder / "annot" if (folder / "annot").is_dir() else folder
        if pts_dir.is_dir() and any(p.suffix.lower() == ".pts" for p in pts_dir.iterdir()):
            return track_from_pts(folder, truth)
    return None


# ---------------------------------------------------------------------------------------------- metrics


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the maximal runs of True."""
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def _stability_over_runs(pred: np.ndarray, gt: np.ndarray, tracked: np.ndarray) -> dict[str, float]:
    """FHR terms and NMJ over the runs of consecutive tracked frames, weighted by their term counts, so a
    lost frame never creates a fake jump."""
    sums = {k: 0.0 for k in STABILITY_TERMS}
    counts = {k: 0 for k in STABILITY_TERMS}
    nmj_sq, nmj_pairs = 0.0, 0
    for a, b in _runs(tracked):
        length = b - a
        terms = fhr_stability(pred[a:b], gt[a:b])
        weight = {"e1_delay": length - 1, "e2_accuracy": length, "e3_jitter": length - 2,
                  "e4_jitter_velocity_invariant": length - 2}
        for k in STABILITY_TERMS:
            if weight[k] > 0 and math.isfinite(terms[k]):
                sums[k] += terms[k] * weight[k]
                counts[k] += weight[k]
        if length >= 2:
            nmj_sq += nmj(pred[a:b], gt[a:b]) ** 2 * (length - 1)
            nmj_pairs += length - 1
    out = {k: (sums[k] / counts[k] if counts[k] else math.nan) for k in STABILITY_TERMS}
    out["nmj"] = math.sqrt(nmj_sq / nmj_pairs) if nmj_pairs else math.nan
    return out


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` predicting ``labels`` (ties count half); NaN with one class."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    keep = np.isfinite(scores)
    scores, labels = scores[keep], labels[keep]
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def score_video(pred: np.ndarray, gt: np.ndarray, conf: np.ndarray | None = None,
                occluded: np.ndarray | None = None, name: str = "") -> dict[str, Any]:
    """Every per-video number for predictions (T, N, 2) (NaN rows = lost frames) against GT (T, N, 2).

    Errors are fractions internally; the returned NRMSE and stability terms are in %.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or gt.ndim != 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be (T, N, 2)")
    n = gt.shape[1]
    if n not in OCULAR:
        raise ValueError(f"NRMSE needs 68 or 7 points (outer eye corners), got {n}")
    i, j = OCULAR[n]
    tracked = np.isfinite(pred).all(axis=(1, 2))
    iod = np.linalg.norm(gt[:, i] - gt[:, j], axis=-1)
    errors = np.full(len(gt), np.nan)
    errors[tracked] = np.linalg.norm(pred[tracked] - gt[tracked], axis=-1).mean(axis=1) / iod[tracked]
    record: dict[str, Any] = {
        "name": name, "frames": int(len(gt)), "frames_lost": int((~tracked).sum()),
        "nrmse": float(100 * errors[tracked].mean()) if tracked.any() else math.nan,
        "frame_errors": errors,
    }
    stab = _stability_over_runs(pred, gt, tracked)
    record.update({k: stab[k] for k in STABILITY_TERMS})
    record["nmj"] = stab["nmj"]
    floor = fhr_stability(gt, gt) if len(gt) >= 3 else {k: math.nan for k in STABILITY_TERMS}
    record["gt_e3_jitter"] = floor["e3_jitter"]
    record["gt_e4_jitter_velocity_invariant"] = floor["e4_jitter_velocity_invariant"]
    if conf is not None and occluded is not None:
        record["conf_scores"] = np.asarray(conf, np.float64)[tracked]
        record["conf_visible"] = ~np.asarray(occluded, bool)[tracked]
        record["auroc_visible"] = auroc(record["conf_scores"], record["conf_visible"])
    return record


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(videos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A column of the table from per-video records of :func:`score_video` (all in %)."""
    errors = {v["name"]: v["frame_errors"][np.isfinite(v["frame_errors"])] for v in videos}
    scored = {k: e for k, e in errors.items() if e.size}
    frames = sum(v["frames"] for v in videos)
    lost = sum(v["frames_lost"] for v in videos)
    out: dict[str, Any] = {"videos": len(videos), "frames": frames, "frames_lost": lost,
                           "lost_fraction": lost / frames if frames else math.nan}
    if scored:
        nr = video_nrmse(scored)
        out["nrmse_per_video_mean"] = 100 * nr["per_video_mean"]
        out["nrmse_frame_pooled"] = 100 * nr["frame_pooled_mean"]
    else:
        out["nrmse_per_video_mean"] = out["nrmse_frame_pooled"] = math.nan
    for k in (*STABILITY_TERMS, "nmj", "gt_e3_jitter", "gt_e4_jitter_velocity_invariant"):
        out[k] = _mean([v[k] for v in videos])  # per video, then over videos (FHR)
    with_conf = [v for v in videos if "conf_scores" in v]
    if with_conf:
        scores = np.concatenate([v["conf_scores"].ravel() for v in with_conf])
        labels = np.concatenate([v["conf_visible"].ravel() for v in with_conf])
        out["auroc_visible"] = auroc(scores, labels)
        out["occluded_fraction"] = float(1 - labels.mean()) if labels.size else math.nan
    out["per_video"] = [{k: v[k] for k in v if k not in ("frame_errors", "conf_scores", "conf_visible")}
                        for v in videos]
    return out


# ---------------------------------------------------------------------------------------------- evaluation


@dataclass
class VideoSettings:
    """Everything that changes the numbers; written with them."""

    dataset: str
    root: str
    splits: list[str] = field(default_factory=list)
    skip_frames: str | None = None
    stability: str = "e3"  # which FHR term is the headline "S"

    def describe(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "nrmse": "mean point-to-point error / GT outer-eye-corner distance (68 pts: 36,45; 7 common pts: 0,3), %",
            "nrmse_headline": "per video (mean over its tracked frames), then mean over videos (FHR); "
                              "nrmse_frame_pooled: mean over all tracked frames of all videos",
            "points": "68 (300VW, pseudo); the 7 common points for TF (68-point predictions subset)",
            "stability": "FHR loss_stable e1..e4 in % of max GT landmark range (e1 in frames), per video over "
                         "runs of consecutive tracked frames, then mean over videos; gt_e3/gt_e4 = loss_stable(gt, gt)",
            "stability_headline": HEADLINE_S[self.stability],
            "nmj": "LDEQ NMJ per video (RMS over consecutive tracked frame pairs), then mean over videos",
            "frames_lost": "annotated frames without a prediction overlapping the GT face; excluded from all terms",
            "face_matching": "per frame, the landmarks.csv face whose landmark box has the largest IoU with the GT "
                             "box; IoU 0 = lost",
            "auroc": "confidence predicting not-occluded, pooled over tracked frames and landmarks",
        }


def evaluate_videos(methods: dict[str, str | Path], truth: dict[str, list[VideoTruth]],
                    settings: VideoSettings) -> dict[str, Any]:
    """Score every method folder on every column of ground-truth videos."""
    if settings.stability not in HEADLINE_S:
        raise ValueError(f"stability headline must be one of {sorted(HEADLINE_S)}, got {settings.stability!r}")
    result: dict[str, Any] = {"kind": "video", "settings": settings.describe(), "columns": list(truth), "methods": {}}
    total = sum(len(v) for v in truth.values())
    for method, folder in methods.items():
        folder = Path(folder)
        if not folder.exists():
            raise DataError(folder, f"tracking output of {method!r} not found")
        columns: dict[str, Any] = {}
        for column, videos in truth.items():
            records, missing = [], []
            for video in videos:
                track = find_track(folder, video, single=total == 1)
                if track is None:
                    missing.append(video.name)
                    track = VideoTrack(np.full_like(video.landmarks, np.nan), None, "")
                records.append(score_video(track.landmarks, video.landmarks, track.conf, video.occluded, video.name))
            summary = summarise(records)
            summary["missing_videos"] = missing
            if missing:
                log.warning("%s: no output for %d of %d %s videos (all their frames count as lost)",
                            method, len(missing), len(videos), column)
            columns[column] = summary
        result["methods"][method] = {"path": str(folder), "columns": columns}
    return result


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def format_video_table(result: dict[str, Any]) -> str:
    """1DFormer Table 2 layout (rows = methods, N and S per column) and a detail table per column."""
    stab_key = result["settings"].get("stability_headline", "e3_jitter")
    columns: list[str] = []
    for method in result["methods"].values():
        columns += [c for c in method["columns"] if c not in columns]
    names = list(result["methods"])
    width = max([len(n) for n in names] + [6])
    lines = [f"N = NRMSE % (per video, then over videos); S = {stab_key} % (FHR stability)"]
    lines.append(f"{'method':<{width}} " + " ".join(f"{c + ' N':>9} {c + ' S':>9}" for c in columns))
    for name in names:
        cols = result["methods"][name]["columns"]
        cells = []
        for c in columns:
            col = cols.get(c, {})
            cells.append(f"{_fmt(col.get('nrmse_per_video_mean')):>9} {_fmt(col.get(stab_key)):>9}")
        lines.append(f"{name:<{width}} " + " ".join(cells))
    detail = ("N/video", "N/frame", "e1", "e2", "e3", "e4", "NMJ", "GT e3", "GT e4", "lost%", "AUROC")
    keys = ("nrmse_per_video_mean", "nrmse_frame_pooled", "e1_delay", "e2_accuracy", "e3_jitter",
            "e4_jitter_velocity_invariant", "nmj", "gt_e3_jitter", "gt_e4_jitter_velocity_invariant",
            "lost_fraction", "auroc_visible")
    for c in columns:
        lines.append("")
        lines.append(f"[{c}] " + " ".join(f"{h:>8}" for h in detail))
        for name in names:
            col = result["methods"][name]["columns"].get(c)
            if col is None:
                continue
            values = [100 * col[k] if k == "lost_fraction" and col.get(k) is not None else col.get(k) for k in keys]
            digits = [2, 2, 3, 2, 3, 3, 3, 3, 3, 1, 3]
            lines.append(f"{name:<{len(c) + 2}} " + " ".join(f"{_fmt(v, d):>8}" for v, d in zip(values, digits)))
    return "\n".join(lines)


def merge_results(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several video RESULT.json (e.g. 300VW and TF) as one table: methods matched by name, columns joined."""
    if not results:
        raise ValueError("nothing to merge")
    merged: dict[str, Any] = {"kind": "video", "settings": dict(results[0]["settings"]), "columns": [],
                              "methods": {}, "merged_settings": [r["settings"] for r in results]}
    for r in results:
        merged["columns"] += [c for c in r["columns"] if c not in merged["columns"]]
        for name, method in r["methods"].items():
            entry = merged["methods"].setdefault(name, {"path": method["path"], "columns": {}})
            entry["columns"].update(method["columns"])
    return merged


def read_video_result(path: str | Path) -> dict[str, Any]:
    """A RESULT.json written by ``facetrack evaluate --video``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "result file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"not a JSON result ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "video":
        raise DataError(path, "not a video RESULT.json of 'facetrack evaluate --video'")
    return data


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def method_name(path: str | Path) -> str:
    """A table row name for a tracking output folder (its folder name)."""
    p = Path(path)
    name = p.parent.name if p.suffix == ".csv" else p.name
    return _SAFE.sub("_", name) or "method"


# ---------------------------------------------------------------------------------------------- GT-initialised tracking


def track_clip(model: Any, frames: Any, first_box: np.ndarray, crop_scale: float = 1.25,
               crop_smoothing: Any = None, smoothing: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Track one face through ``frames`` (BGR images) with a landmark model, through the engines of
    ``facetrack track`` (``Landmarker`` + ``engine_for``: same crops, calibration and state handling): frame 0
    is cropped from ``first_box`` (the GT-box protocol of FHR's evaluation, no re-crop passes), every later
    frame around the model's own landmarks of the frame before, smoothed by ``crop_smoothing`` (the tracker's
    crop policy; default ``CropSmoothing()``), and the reported landmarks through the output filter
    ``smoothing`` (as ``Tracker(smoothing=...)``; None: raw). Returns landmarks (T, N, 2) in frame pixels and
    confidences (T, N)."""
    from facetrack.landmarker import Landmarker
    from facetrack.tracking.smoothing import make_filter, smoothing_params
    from facetrack.tracking.temporal_engine import engine_for

    engine = engine_for(Landmarker(model, crop_scale=crop_scale, refine=0), crop_smoothing)
    spec = smoothing_params(smoothing)
    output = make_filter(spec) if spec is not None else None
    estimates: list[Any] = []
    points, confs = [], []
    for t, image in enumerate(frames):
        estimates = engine.step(image, estimates) if estimates else engine.start(image, [first_box])
        raw = estimates[0].landmarks
        points.append(output(raw, t / 30.0) if output is not None else raw)
        confs.append(estimates[0].confidences)
    return np.stack(points), np.stack(confs)
