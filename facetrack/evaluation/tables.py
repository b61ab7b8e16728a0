"""Reports: the plain-text tables ``facetrack evaluate`` prints for images and videos (1DFormer's Table 2
layout), joining video results, and the names of table rows."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facetrack.errors import DataError, read_json


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
    data = read_json(path, "result file not found", "not a JSON result")
    if not isinstance(data, dict) or data.get("kind") != "video":
        raise DataError(path, "not a video RESULT.json of 'facetrack evaluate --video'")
    return data


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def method_name(path: str | Path) -> str:
    """A table row name for a tracking output folder (its folder name)."""
    p = Path(path)
    name = p.parent.name if p.suffix == ".csv" else p.name
    return _SAFE.sub("_", name) or "method"
