"""Scoring a prediction file (PRED.json of ``facetrack detect``, ours or a peer's) against a dataset's ground
truth, with one code path for every method (as SPIGA's benchmark does).

Each ground-truth face is matched to a predicted face of the same image; a face with no prediction is a
*miss*: reported, left out of the mean NME, and counted as a failure (NME = inf) in AUC/FR. Every setting
that changes the numbers (normaliser, threshold, grid, integrator, comparison rule, counts, matching) is
written next to the numbers in RESULT.json.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from facetrack.data.sample import FaceSample
from facetrack.errors import DataError
from facetrack.io.results import ImagePrediction, Prediction, atomic_write_text
from facetrack.metrics.auc import PRESETS, auc_fr, auc_fr_preset
from facetrack.metrics.nme import NMEMetric


def __getattr__(name: str) -> Any:
    """``DATASETS``: the image datasets of the catalogue (``facetrack.data.catalog``), read when asked."""
    if name == "DATASETS":
        from facetrack.data.catalog import list_datasets

        return tuple(list_datasets("image"))
    raise AttributeError(name)


# ------------------------------------------------------------------------------------------ ground truth


def load_ground_truth(dataset: str, root: str | Path, split: str | None = None) -> dict[str, list[FaceSample]]:
    """The annotated faces of ``dataset`` as named subsets, in the order reports list them.

    300W ``full`` yields ``common``, ``challenge`` and ``full`` (AOHR Table 3's rows); WFLW ``test`` yields
    ``full`` then its six attribute subsets, as papers list them. COFW's ``root`` may be the .mat file.
    """
    from facetrack.data import catalog

    return catalog.subsets(dataset, root, split)


def load_shared300w(root: str | Path, split: str = "val") -> list[FaceSample]:
    """The 300-W development crops: ``val`` (10 % of source photographs held out, seed 0: the split every
    shipped recipe validates on), ``train`` (the rest), ``all``, or a training run's ``split.json``."""
    from facetrack.data import catalog

    return catalog.load("shared300w", root, split)


def matching_root(dataset: str, root: str | Path, split: str | None = None) -> Path:
    """The folder (or file) image paths are matched relative to: the dataset root, except COFW, whose
    faces are named ``<file.mat>/<index>`` so predictions for ``0001.png`` match face ``0001``."""
    from facetrack.data import catalog

    return catalog.matching_root(dataset, root, split)


def write_gt_boxes(samples: Sequence[FaceSample], path: str | Path, relative_to: str | Path | None = None) -> Path:
    """Write the ``--boxes`` input of ``facetrack detect`` (image path -> list of boxes) from ground truth,
    for the ground-truth-box protocol. A face without an annotated box gets its landmark extent box.

    Keys are the image paths as the reader gives them, or relative to ``relative_to`` (run ``detect`` from
    that folder so its paths match)."""
    boxes: dict[str, list[list[float]]] = {}
    for s in samples:
        key = str(s.image_path)
        if relative_to is not None:
            key = os.path.relpath(os.path.abspath(s.image_path), os.path.abspath(relative_to))
        box = s.bbox if s.bbox is not None else _extent(np.asarray(s.landmarks))
        boxes.setdefault(key, []).append([round(float(v), 3) for v in np.asarray(box, dtype=np.float64).reshape(4)])
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in boxes.items())
    return atomic_write_text(path, "{\n" + body + "\n}\n")  # one line per image: easy to read and diff


# ------------------------------------------------------------------------------------------ path matching


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


# ------------------------------------------------------------------------------------------ face matching


def _extent(points: np.ndarray) -> np.ndarray:
    return np.concatenate([np.nanmin(points, axis=0), np.nanmax(points, axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_faces(gt_faces: Sequence[FaceSample], image: ImagePrediction | None) -> list[int | None]:
    """For each ground-truth face of one image, the index of its predicted face (None = miss).

    Greedy one-to-one: pairs by descending box IoU (GT box, or landmark extent, against the predicted
    box); faces left over pair by nearest landmark centroid when it lies within half the GT face size.
    """
    result: list[int | None] = [None] * len(gt_faces)
    if image is None or not image.faces:
        return result
    gboxes = [np.asarray(g.bbox, float) if g.bbox is not None else _extent(np.asarray(g.landmarks)) for g in gt_faces]
    pairs = [
        (_iou(gb, np.asarray(pf.bbox, float)), i, j)
        for i, gb in enumerate(gboxes)
        for j, pf in enumerate(image.faces)
    ]
    used: set[int] = set()
    for iou, i, j in sorted(pairs, key=lambda t: -t[0]):
        if iou <= 0:
            break
        if result[i] is None and j not in used:
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


# ------------------------------------------------------------------------------------------ scoring


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


CONVERTIBLE = {("wflw98", "ibug68")}  # prediction scheme -> ground-truth scheme scored after conversion


def _check_scheme(pred_scheme: str, gt_scheme: str, where: Path) -> None:
    if pred_scheme != gt_scheme and (pred_scheme, gt_scheme) not in CONVERTIBLE:
        raise DataError(where, f"scheme: predictions are {pred_scheme!r} but the ground truth is {gt_scheme!r}")


def _convert_scheme(points: np.ndarray, pred_scheme: str, gt_scheme: str) -> np.ndarray:
    if pred_scheme == gt_scheme:
        return points
    from facetrack.schemes import wflw98_to_ibug68

    return wflw98_to_ibug68(points)


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


def format_table(result: dict[str, Any]) -> str:
    """A plain-text report: NME %, AUC@a, FR@a and misses per subset and normaliser, then component NMEs."""
    lines: list[str] = []
    thr = result["settings"]["threshold"] * 100
    head = f"{'subset':<14}{'norm':<10}{'faces':>7}{'misses':>8}{'NME %':>9}{f'AUC@{thr:g}':>10}{f'FR@{thr:g} %':>10}"
    lines.append(head)
    lines.append("-" * len(head))
    comp_rows: list[tuple[str, str, dict[str, Any]]] = []
    for name, entry in result["subsets"].items():
        for kind, m in entry["nme"].items():
            nme_txt = "-" if m["nme"] is None else f"{m['nme'] * 100:.3f}"
            lines.append(
                f"{name:<14}{kind:<10}{entry['faces']:>7}{entry['misses']:>8}{nme_txt:>9}"
                f"{m['auc_fr']['auc'] * 100:>10.2f}{m['auc_fr']['fr'] * 100:>10.2f}"
            )
            comp_rows.append((name, kind, m["components"]))
    groups = list(comp_rows[0][2]) if comp_rows and comp_rows[0][2] else []
    if groups:
        lines.append("")
        head2 = f"{'NME % by component':<24}" + "".join(f"{g[:11]:>12}" for g in groups)
        lines.append(head2)
        lines.append("-" * len(head2))
        for name, kind, comps in comp_rows:
            cells = "".join(f"{'-' if comps[g] is None else format(comps[g] * 100, '.3f'):>12}" for g in groups)
            lines.append(f"{name + ' ' + kind:<24}{cells}")
    s = result["settings"]
    if s["preset"]:
        rule = f"preset {s['preset']}"
    else:
        rule = f"step {s['step']:g}, {s['integrator']}, {'<=' if s['inclusive'] else '<'}"
    lines.append("")
    lines.append(f"normalisers: {', '.join(s['normalisers'].values())}; AUC/FR at {thr:g}% ({rule})")
    if result["misses"]:
        n = len(result["misses"])
        lines.append(f"{n} ground-truth face(s) without a prediction (see 'misses' in the result file)")
    if result["unmatched_predicted_faces"]:
        lines.append(f"{result['unmatched_predicted_faces']} predicted face(s) matched no ground-truth face")
    return "\n".join(lines)


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
