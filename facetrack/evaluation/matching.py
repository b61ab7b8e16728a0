"""Matching predictions to ground truth: images by path, faces by box overlap (greedy, then landmark centroid),
and a tracking output's faces to a video's annotated frames.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from facetrack.data.sample import FaceSample
from facetrack.data.video_truth import VideoTruth
from facetrack.errors import DataError
from facetrack.geometry import box_from_points, box_iou, box_or_nan, greedy_match
from facetrack.io.pts import read_pts
from facetrack.io.results import ImagePrediction, Prediction


# ------------------------------------------------------------------------------------------ images by path


def _norm(path: str) -> str:
    p = os.path.normpath(path.replace("\\", "/")).replace("\\", "/")
    return p[2:] if p.startswith("./") else p


def _key_under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (both absolute, symlinks resolved) or None when outside it."""
    rel = os.path.relpath(os.path.realpath(path), root)
    return None if rel.startswith("..") else _norm(rel)


def gt_key(image_path: str | Path, root: str | Path) -> str:
    """The matching key of a ground-truth image: its path relative to the dataset root."""
    key = _key_under(os.path.abspath(image_path), os.path.realpath(root))
    return key if key is not None else _norm(str(image_path))


def _pred_keys(path: str, root: str, bases: Sequence[str]) -> list[str]:
    keys: list[str] = []
    if os.path.isabs(path):
        key = _key_under(path, root)
        if key is not None:
            keys.append(key)
    else:
        keys.append(_norm(path))  # relative to the dataset root
        for base in bases:  # or to the working directory / the prediction file's folder
            key = _key_under(os.path.join(base, path), root)
            if key is not None:
                keys.append(key)
    return keys


def match_images(
    gt_keys: Sequence[str], pred: Prediction, root: str | Path, bases: Sequence[str | Path] = ()
) -> dict[str, ImagePrediction]:
    """Map each ground-truth image key to its predicted image.

    Prediction paths may be absolute, relative to the dataset root, to the working directory or to
    ``bases``, with or without ``./``. Failing that, one path that is a whole-component suffix of the other
    (``WFLW_images/a/b.jpg`` vs ``a/b.jpg``) matches when the pairing is unique both ways.
    """
    root_real = os.path.realpath(root)
    base_list = [os.path.abspath(b) for b in (*bases, os.getcwd())]
    by_key: dict[str, ImagePrediction] = {}
    for img in pred.images:
        for key in _pred_keys(img.path, root_real, base_list):
            by_key.setdefault(key, img)
    out: dict[str, ImagePrediction] = {}
    unmatched = [k for k in dict.fromkeys(gt_keys) if k not in by_key]
    for k in gt_keys:
        if k in by_key:
            out[k] = by_key[k]
    if unmatched:
        used = {id(img) for img in out.values()}
        _match_by_suffix(unmatched, [img for img in pred.images if id(img) not in used], out)
    return out


def _parts(path: str, bare: bool = False) -> tuple[str, ...]:
    parts = PurePosixPath(_norm(path)).parts
    return (*parts[:-1], PurePosixPath(parts[-1]).stem) if bare and parts else parts


def _is_suffix_pair(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    n = min(len(a), len(b))
    return n > 0 and a[-n:] == b[-n:]


def _match_by_suffix(gt_keys: Sequence[str], pool: Sequence[ImagePrediction], out: dict[str, ImagePrediction]) -> None:
    """Pair ground-truth keys and predicted paths where one is a whole-component suffix of the other, only
    when the pairing is unique both ways. A key without extension (a virtual name such as COFW's
    ``<file.mat>/0001``) is compared with the predicted file's stem (``export/0001.png``)."""
    by_name: dict[str, list[ImagePrediction]] = {}
    by_stem: dict[str, list[ImagePrediction]] = {}
    for img in pool:
        parts = _parts(img.path)
        if parts:
            by_name.setdefault(parts[-1], []).append(img)
            by_stem.setdefault(PurePosixPath(parts[-1]).stem, []).append(img)
    gt_by_last: dict[str, list[tuple[str, ...]]] = {}
    for k in gt_keys:
        gt_by_last.setdefault(_parts(k)[-1], []).append(_parts(k))
    for k in gt_keys:
        gparts = _parts(k)
        bare = "." not in gparts[-1]
        cands = [img for img in (by_stem if bare else by_name).get(gparts[-1], [])
                 if _is_suffix_pair(_parts(img.path, bare), gparts)]
        if len(cands) != 1:
            continue
        name = _parts(cands[0].path)[-1]
        rivals = [g for g in gt_by_last.get(name, []) if _is_suffix_pair(g, _parts(cands[0].path))]
        rivals += [g for g in gt_by_last.get(PurePosixPath(name).stem, [])
                   if _is_suffix_pair(g, _parts(cands[0].path, True))]
        if len(rivals) == 1:
            out[k] = cands[0]


# ------------------------------------------------------------------------------------------ faces of one image


def match_faces(gt_faces: Sequence[FaceSample], image: ImagePrediction | None) -> list[int | None]:
    """For each ground-truth face of one image, the index of its predicted face (None = miss).

    Greedy one-to-one: pairs by descending box IoU (GT box, or landmark extent, against the predicted
    box); faces left over pair by nearest landmark centroid when it lies within half the GT face size.
    """
    result: list[int | None] = [None] * len(gt_faces)
    if image is None or not image.faces:
        return result
    gboxes = [np.asarray(g.bbox, float) if g.bbox is not None else box_from_points(g.landmarks) for g in gt_faces]
    iou = box_iou(np.stack(gboxes), np.stack([np.asarray(pf.bbox, float) for pf in image.faces]))
    used: set[int] = set()
    for i, j in greedy_match(iou, 0.0, inclusive=False):
        result[i] = j
        used.add(j)
    for i, g in enumerate(gt_faces):
        if result[i] is not None:
            continue
        gl = np.asarray(g.landmarks, float)
        centre = np.nanmean(gl, axis=0)
        size = float(np.max(np.ptp(gl, axis=0)))
        best, best_d = None, 0.5 * size
        for j, pf in enumerate(image.faces):
            if j in used:
                continue
            d = float(np.linalg.norm(np.mean(pf.landmarks, axis=0) - centre))
            if d <= best_d:
                best, best_d = j, d
        if best is not None:
            result[i] = best
            used.add(best)
    return result


# ------------------------------------------------------------------------------------------ tracks of one video


@dataclass
class VideoTrack:
    """Predictions aligned to a video's annotated frames: (T, N, 2) with NaN where lost; conf (T, N) or None."""

    landmarks: np.ndarray
    conf: np.ndarray | None
    source: str


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
        overlaps = box_iou(np.stack([box_or_nan(points[r]) for r in rows]), box_or_nan(truth.landmarks[t]))[:, 0]
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
