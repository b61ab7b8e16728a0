"""Scoring: NME, AUC/FR and misses per subset for still images (every setting that changes the numbers recorded
next to them), and NRMSE, FHR stability, NMJ, frames lost and confidence AUROC for videos.

Images: each ground-truth face is matched to a predicted face of the same image; a face with no prediction is a
*miss*: reported, left out of the mean NME, and counted as a failure (NME = inf) in AUC/FR.
Videos (EVALUATION.md sections 4-6): NRMSE averaged per video then over videos (FHR) and frame-pooled (SBR);
FHR's e1-e4 over runs of consecutive tracked frames with the ground truth's own floor; LDEQ's NMJ; lost
frames left out of every term and reported; AUROC of the confidences against occlusion where masks exist.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.data.sample import FaceSample
from facetrack.data.video_truth import VideoTruth
from facetrack.errors import DataError
from facetrack.evaluation.matching import VideoTrack, find_track, gt_key, match_faces, match_images
from facetrack.io.results import Prediction
from facetrack.metrics.auc import PRESETS, auc_fr, auc_fr_preset
from facetrack.metrics.nme import NMEMetric
from facetrack.metrics.stability import fhr_stability, nmj, video_nrmse

log = logging.getLogger(__name__)

STABILITY_TERMS = ("e1_delay", "e2_accuracy", "e3_jitter", "e4_jitter_velocity_invariant")
HEADLINE_S = {"e3": "e3_jitter", "e4": "e4_jitter_velocity_invariant"}
OCULAR = {68: (36, 45), 7: (0, 3)}


# ------------------------------------------------------------------------------------------ images


@dataclass
class EvaluationSettings:
    """Everything that changes the numbers, recorded in RESULT.json."""

    dataset: str
    split: str
    norms: tuple[str, ...]
    threshold: float
    preset: str | None = None  # "star" | "sbr" | "spiga" | None (auc_fr's own settings below)
    step: float = 1e-4
    integrator: str = "trapz"
    inclusive: bool = True
    use_visible: bool = False

    def auc(self, errors: np.ndarray) -> dict[str, Any]:
        if self.preset:
            return auc_fr_preset(errors, self.threshold, self.preset)
        return auc_fr(errors, self.threshold, step=self.step, integrator=self.integrator, inclusive=self.inclusive)


@dataclass
class FaceRecord:
    key: str
    face: int
    subsets: list[str]
    matched: bool
    errors: dict[str, float] = field(default_factory=dict)


def _conversions() -> set[tuple[str, str]]:
    from facetrack.schemes import IBUG68_CORRESPONDENCE

    return {("wflw98", "ibug68"), *(("ibug68", name) for name in IBUG68_CORRESPONDENCE)}


# prediction scheme -> ground-truth scheme scored after conversion: WFLW-98 -> iBUG-68 (``WFLW98_TO_IBUG68``), and
# iBUG-68 -> any scheme with an iBUG-68 correspondence (``IBUG68_CORRESPONDENCE``: ideask21, mtfl5, common7)
CONVERTIBLE = _conversions()


def _check_scheme(pred_scheme: str, gt_scheme: str, where: Path) -> None:
    if pred_scheme != gt_scheme and (pred_scheme, gt_scheme) not in CONVERTIBLE:
        raise DataError(where, f"scheme: predictions are {pred_scheme!r} but the ground truth is {gt_scheme!r}")


def _convert_scheme(points: np.ndarray, pred_scheme: str, gt_scheme: str) -> np.ndarray:
    if pred_scheme == gt_scheme:
        return points
    from facetrack.schemes import ibug68_to, wflw98_to_ibug68

    return wflw98_to_ibug68(points) if pred_scheme == "wflw98" else ibug68_to(points, gt_scheme)


def evaluate(
    pred: Prediction,
    subsets: dict[str, list[FaceSample]],
    root: str | Path,
    settings: EvaluationSettings,
    pred_path: str | Path = "PRED.json",
) -> dict[str, Any]:
    """Score ``pred`` on every subset; returns the RESULT.json object (summaries, misses, per-face errors)."""
    pred_path = Path(pred_path)
    # one record per distinct face; subsets refer to faces by identity
    faces: list[FaceSample] = []
    face_subsets: list[list[str]] = []
    index_of: dict[int, int] = {}
    for name, samples in subsets.items():
        for s in samples:
            if id(s) not in index_of:
                index_of[id(s)] = len(faces)
                faces.append(s)
                face_subsets.append([])
            face_subsets[index_of[id(s)]].append(name)
    if not faces:
        raise DataError(root, f"no ground-truth faces for {settings.dataset} split {settings.split}")
    gt_scheme = faces[0].scheme
    _check_scheme(pred.scheme, gt_scheme, pred_path)
    keys = [gt_key(s.image_path, root) for s in faces]
    images = match_images(keys, pred, root, bases=[str(pred_path.parent)])
    by_image: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_image.setdefault(k, []).append(i)

    metric = NMEMetric(gt_scheme, norms=settings.norms, use_visible=settings.use_visible)
    records: list[FaceRecord] = []
    misses: list[dict[str, Any]] = []
    matched_pred_faces = 0
    assignment: dict[int, np.ndarray | None] = {}
    for k, idxs in by_image.items():
        image = images.get(k)
        match = match_faces([faces[i] for i in idxs], image)
        for i, j in zip(idxs, match):
            if j is None:
                assignment[i] = None
                reason = "image not in predictions" if image is None else "no predicted face matches"
                misses.append({"path": k, "face": idxs.index(i), "reason": reason})
            else:
                pts = _convert_scheme(image.faces[j].landmarks, pred.scheme, gt_scheme)
                assignment[i] = pts
                matched_pred_faces += 1
    predicted_faces = sum(len(images[k].faces) for k in by_image if k in images)
    for i, s in enumerate(faces):  # update in ground-truth order so per-face errors line up
        k = keys[i]
        errs = metric.update(assignment[i], s.landmarks, box=None if s.bbox is None else s.bbox,
                             visible=s.visible, face_id=k)
        records.append(FaceRecord(k, by_image[k].index(i), face_subsets[i], assignment[i] is not None, errs))

    computed = metric.compute()
    summaries: dict[str, Any] = {}
    for name in subsets:
        sel = np.array([name in r.subsets for r in records])
        entry: dict[str, Any] = {
            "faces": int(sel.sum()),
            "misses": int(sum(1 for r, m in zip(records, sel) if m and not r.matched)),
            "nme": {},
        }
        for kind in settings.norms:
            errs = metric.errors(kind)[sel]
            finite = np.isfinite(errs)
            comps = {
                g: float(np.nanmean(v[sel][finite])) if finite.any() else None
                for g, v in metric.component_errors(kind).items()
            }
            entry["nme"][kind] = {
                "normaliser": computed[kind]["normaliser"],
                "nme": float(errs[finite].mean()) if finite.any() else None,
                "scored": int(finite.sum()),
                "auc_fr": settings.auc(errs),
                "components": comps,
            }
        summaries[name] = entry

    return {
        "prediction": str(pred_path),
        "model": pred.model,
        "scheme": pred.scheme,
        "ground_truth_scheme": gt_scheme,
        "dataset": settings.dataset,
        "root": str(root),
        "split": settings.split,
        "settings": {
            "normalisers": {k: computed[k]["normaliser"] for k in settings.norms},
            "threshold": settings.threshold,
            "preset": settings.preset,
            "step": settings.step if not settings.preset else None,
            "integrator": settings.integrator if not settings.preset else None,
            "inclusive": settings.inclusive if not settings.preset else None,
            "visible_only": settings.use_visible,
            "errors": "fractions of the normaliser (x100 for %)",
            "nme_mean": "over matched faces; misses are reported and count as failures (NME = inf) in AUC/FR",
            "matching": "image by path relative to the dataset root; faces by box IoU, then landmark centroid",
        },
        "subsets": summaries,
        "misses": misses,
        "predicted_faces_in_gt_images": predicted_faces,
        "unmatched_predicted_faces": predicted_faces - matched_pred_faces,
        "faces": [
            {"path": r.key, "face": r.face, "subsets": r.subsets, "matched": r.matched, "nme": r.errors}
            for r in records
        ],
    }


def default_settings(
    dataset: str,
    split: str | None = None,
    norm: str | Sequence[str] | None = None,
    threshold: float | None = None,
    preset: str | None = None,
    **auc_options: Any,
) -> EvaluationSettings:
    """Settings with the dataset's defaults for whatever is not given."""
    from facetrack.data.catalog import get_dataset

    dataset = dataset.lower()
    try:
        spec = get_dataset(dataset)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    norms = spec.normalisers if norm is None else ((norm,) if isinstance(norm, str) else tuple(norm))
    if preset is not None and preset not in (*PRESETS, "spiga"):
        raise ValueError(f"unknown AUC preset {preset!r}; known: {', '.join([*PRESETS, 'spiga'])}")
    return EvaluationSettings(
        dataset=dataset,
        split=split or spec.default_split,
        norms=norms,
        threshold=spec.threshold if threshold is None else float(threshold),
        preset=preset,
        **auc_options,
    )


# ------------------------------------------------------------------------------------------ videos


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


def track_clip(model: Any, frames: Any, first_box: np.ndarray, crop_scale: float = 1.25,
               crop_smoothing: Any = None, smoothing: Any = None, runtime: str = "auto"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Track one face through ``frames`` (BGR images) with a landmark model, through the engines of
    ``facetrack track`` (``Landmarker`` + ``engine_for``: same crops, calibration and state handling): frame 0
    is cropped from ``first_box`` (the GT-box protocol of FHR's evaluation, no re-crop passes), every later
    frame around the model's own landmarks of the frame before, smoothed by ``crop_smoothing`` (the tracker's
    crop policy; default ``CropSmoothing()``), and the reported landmarks through the output filter
    ``smoothing`` (as ``Tracker(smoothing=...)``; None: raw); ``runtime`` as ``Landmarker``'s. Returns landmarks (T, N, 2) in frame pixels and
    confidences (T, N)."""
    from facetrack.landmarker import Landmarker
    from facetrack.tracking.smoothing import make_filter, smoothing_params
    from facetrack.tracking.engine import engine_for

    engine = engine_for(Landmarker(model, crop_scale=crop_scale, refine=0, runtime=runtime), crop_smoothing)
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
