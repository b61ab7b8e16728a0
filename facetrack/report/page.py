"""``report.html`` of a ``facetrack track`` output folder: one self-contained page (inline SVG plots, base64 JPEG
thumbnails, inline CSS; no script, no server, no network) that shows per video where tracking held and where it
failed.

Per video: the summary table (summary.json), overlay thumbnails cut from the source video with the landmarks
drawn (``facetrack.drawing.draw``), and over time: the face confidence (``score``), the mean landmark confidence
and the jitter (FHR's e3 on the prediction itself: the distance of each frame's landmarks from the midpoint of
its neighbours', in % of the face's size), with every frame where a track (re)started from a detection marked
(summary.json's ``track_starts``). With ground truth (the forms ``facetrack evaluate --video`` reads): the error
over time (NME, % of the GT outer-eye-corner distance) and its CED.
"""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from facetrack.drawing import COLOURS as BGR_COLOURS
from facetrack.errors import DataError
from facetrack.report.svg import Marker, Plot, Series, line_plot

# each track id in its overlay colour, darkened to read as a thin line on white
COLOURS = ["#%02x%02x%02x" % (int(0.7 * r), int(0.7 * g), int(0.7 * b)) for b, g, r in BGR_COLOURS]
CED_MAX = 0.10  # CED plotted to 10 % NME; AUC/FR at 8 % (300-W's threshold)
AUC_AT = 0.08
THUMB_WIDTH = 270
SUMMARY_ROWS = (
    ("source", "source"), ("completed", "completed"), ("reason", "reason"), ("frames_read", "frames read"),
    ("frames_with_face", "frames with a face"), ("tracks", "tracks"), ("detections", "(re)detections"),
    ("model", "model"), ("detector", "detector"), ("size", "frame size"), ("source_fps", "source fps"),
    ("fps", "tracking fps"), ("ms_per_frame", "ms per frame (decode / detection / landmarks / total)"),
    ("detector_runs", "detector runs"), ("tracks_lost", "tracks lost"), ("reidentified", "re-identified"),
    ("bad_frames", "undecodable frames"), ("truncated", "truncated"),
)


@dataclass
class VideoReport:
    """What the page shows of one output folder."""

    name: str
    folder: Path
    summary: dict[str, Any]
    plots: list[str] = field(default_factory=list)
    thumbnails: list[tuple[str, str]] = field(default_factory=list)  # (caption, data URL)
    notes: list[str] = field(default_factory=list)
    truth: dict[str, Any] | None = None


def output_folders(run_dir: str | Path) -> list[Path]:
    """The video folders of a run: ``RUN_DIR`` itself (one source) or its sub-folders holding summary.json."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(run, "not a folder (give the --out folder of facetrack track)")
    if (run / "summary.json").is_file():
        return [run]
    found = sorted(p for p in run.iterdir() if (p / "summary.json").is_file())
    if not found:
        raise DataError(run, "no summary.json here or in its sub-folders: not a facetrack track output")
    return found


def frame_jitter(points: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Per row of one track, FHR's e3 on the prediction alone: ``RMS_i |p_t - (p_{t-1} + p_{t+1}) / 2|`` over
    the landmarks, in % of ``max(range_x, range_y)(p_t)``; NaN unless frames t-1 and t+1 are in the track."""
    out = np.full(len(frames), np.nan)
    if len(frames) < 3:
        return out
    inner = (frames[1:-1] - frames[:-2] == 1) & (frames[2:] - frames[1:-1] == 1)
    mid = points[1:-1] - 0.5 * (points[:-2] + points[2:])
    width = np.max(np.ptp(points[1:-1], axis=1), axis=1) / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        e3 = np.sqrt(np.nanmean(np.sum(mid ** 2, axis=-1), axis=-1)) / width
    out[1:-1] = np.where(inner & (width > 0), e3, np.nan)
    return out


def _source_path(summary: dict[str, Any], folder: Path) -> Path | None:
    prov = summary.get("provenance") if isinstance(summary.get("provenance"), dict) else {}
    source = prov.get("source") if isinstance(prov.get("source"), dict) else {}
    for candidate in (source.get("path"), summary.get("source")):
        if isinstance(candidate, str):
            path = Path(candidate)
            for p in (path, folder / path):
                if p.exists():
                    return p
    return None


def _thumbnails(video: VideoReport, table: Any, count: int) -> None:
    """Up to ``count`` frames with the landmarks drawn: evenly spread, and the frame of lowest face confidence."""
    from facetrack.drawing import draw
    from facetrack.io.video import open_source

    if count <= 0 or not len(table.frame):
        return
    path = _source_path(video.summary, video.folder)
    if path is None:
        video.notes.append("no thumbnails: the source video is not found where summary.json says it was")
        return
    frames = np.unique(table.frame)
    worst = int(table.frame[int(np.nanargmin(np.where(np.isfinite(table.scores), table.scores, np.inf)))]) \
        if np.isfinite(table.scores).any() else None
    # the evenly spread frames are chosen among the others, so the worst one never takes the place of one of them
    others = frames[frames != worst] if worst is not None and count > 1 and len(frames) > 1 else frames
    picks = [int(others[i]) for i in np.linspace(0, len(others) - 1, max(count - 1, 1)).round().astype(int)]
    captions = {f: f"frame {f}" for f in picks}
    if worst is not None and count > 1:
        captions[worst] = f"frame {worst} (lowest face confidence)"
    try:
        source = open_source(path)
    except Exception as exc:
        video.notes.append(f"no thumbnails: cannot open {path}: {exc}")
        return
    try:
        for f in sorted(captions):
            try:
                image = source.read(f)
            except Exception as exc:
                video.notes.append(f"frame {f}: cannot read it from {path} ({exc})")
                continue
            rows = np.nonzero(table.frame == f)[0]
            faces = [SimpleNamespace(landmarks=table.landmarks[r], box=table.boxes[r], track_id=int(table.track_id[r]))
                     for r in rows]
            drawn = draw(image, faces)
            scale = THUMB_WIDTH / drawn.shape[1]
            small = cv2.resize(drawn, (THUMB_WIDTH, max(1, round(drawn.shape[0] * scale))), interpolation=cv2.INTER_AREA)
            ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                video.thumbnails.append((captions[f], "data:image/jpeg;base64," + base64.b64encode(jpg).decode()))
    finally:
        source.close()


def _starts(summary: dict[str, Any]) -> list[tuple[int, int]]:
    raw = summary.get("track_starts")
    return [(int(s[0]), int(s[1])) for s in raw if isinstance(s, list) and len(s) == 2] if isinstance(raw, list) else []


def _markers(summary: dict[str, Any]) -> list[Marker]:
    """A marker at every frame where a track started from a detection: a face's first frame (grey) or a
    re-detection (red)."""
    seen: set[int] = set()
    markers = []
    for frame, track in _starts(summary):
        again = track in seen
        seen.add(track)
        markers.append(Marker(frame, f"re-detection (track {track}, frame {frame})" if again else
                              f"new track (track {track}, frame {frame})", "#d62728" if again else "#888888"))
    return markers


def _per_track(table: Any, values: np.ndarray, label: str) -> list[Series]:
    return [Series(f"{label} {tid}" if label else "", table.frame[table.track_id == tid].astype(float),
                   values[table.track_id == tid], COLOURS[int(tid) % len(COLOURS)])
            for tid in np.unique(table.track_id)]


def video_report(folder: Path, thumbnails: int = 4, truth: Any = None) -> VideoReport:
    """Read one output folder (summary.json, landmarks.csv, the source video) into what the page shows."""
    from facetrack.io.results import read_landmarks_csv
    from facetrack.io.track_output import read_summary

    summary = read_summary(folder)
    if summary is None:
        raise DataError(folder / "summary.json", "missing or unreadable")
    video = VideoReport(folder.name, folder, summary)
    csv = folder / "landmarks.csv"
    if not csv.is_file():
        video.notes.append("no landmarks.csv: nothing was tracked")
        return video
    table = read_landmarks_csv(csv)
    if not len(table.frame):
        video.notes.append("no face on any frame")
        return video
    markers = _markers(summary)
    x_max = float(max(int(summary.get("frames_read") or 0) - 1, int(table.frame.max()), 1))
    label = "track" if len(np.unique(table.track_id)) > 1 else ""
    mean_conf = np.array([np.nanmean(c) if np.isfinite(c).any() else np.nan for c in table.conf])
    jitter = np.full(len(table.frame), np.nan)
    for tid in np.unique(table.track_id):
        rows = np.nonzero(table.track_id == tid)[0]
        jitter[rows] = frame_jitter(table.landmarks[rows], table.frame[rows])
    for title, y_label, values, y_range in (
            ("Face confidence", "score", table.scores, (0.0, 1.0)),
            ("Mean landmark confidence", "confidence", mean_conf, (0.0, 1.0)),
            ("Jitter (FHR e3 of the prediction)", "% of face size", jitter, None)):
        video.plots.append(line_plot(Plot(title, "frame", y_label, _per_track(table, values, label), markers,
                                          y_range, (0.0, x_max))))
    if truth is not None:
        _truth_plots(video, csv, truth, markers, x_max)
    _thumbnails(video, table, thumbnails)
    return video


def _truth_plots(video: VideoReport, csv: Path, truth: Any, markers: list[Marker], x_max: float) -> None:
    """Error over time and its CED against ``truth`` (a ``VideoTruth``), scored as ``evaluate --video`` does."""
    from facetrack.evaluation import score_video, track_from_csv
    from facetrack.metrics.auc import auc_fr, ced

    track = track_from_csv(csv, truth)
    record = score_video(track.landmarks, truth.landmarks, name=truth.name)
    errors = record["frame_errors"]
    stats = auc_fr(errors, AUC_AT)
    video.truth = {"name": truth.name, "frames": record["frames"], "frames_lost": record["frames_lost"],
                   "nrmse": record["nrmse"], "auc": stats["auc"], "fr": stats["fr"]}
    video.plots.append(line_plot(Plot(f"Error against {truth.name}", "frame", "NME, % of eye-corner distance",
                                      [Series("", truth.frames.astype(float), 100 * errors, "#2ca02c")], markers,
                                      None, (0.0, x_max))))
    xs = np.linspace(0.0, CED_MAX, 201)
    video.plots.append(line_plot(Plot(f"CED (AUC@{AUC_AT:.0%} {stats['auc']:.3f}, FR {stats['fr']:.1%})",
                                      "NME, % of eye-corner distance", "fraction of frames",
                                      [Series("", 100 * xs, ced(errors, xs), "#2ca02c", step=True)],
                                      y_range=(0.0, 1.0), x_range=(0.0, 100 * CED_MAX))))


# ----------------------------------------------------------------------------------------------------- page

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;border-top:1px solid #ccc;padding-top:14px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumbs figure{margin:0;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:8px}.note{color:#a40}.failed{color:#b00}"""


def _cell(key: str, summary: dict[str, Any]) -> str:
    if key == "size":
        return f"{summary.get('width')}x{summary.get('height')}" if summary.get("width") else "-"
    if key == "detections":
        starts = _starts(summary)
        return f"{len(starts)} ({len(starts) - len({t for _, t in starts})} re-detections)"
    if key == "ms_per_frame":
        t = summary.get("timings_ms") or {}
        return " / ".join("-" if t.get(k) is None else f"{t[k]:.1f}" for k in ("decode", "detection", "landmarks", "total"))
    if key == "bad_frames":
        return str(len(summary.get("bad_frames") or []))
    value = summary.get(key)
    if isinstance(value, float):
        return f"{value:.2f}" if math.isfinite(value) else "-"
    return "-" if value is None else str(value)


def render_html(videos: list[VideoReport], run_dir: Path, failures: list[dict[str, Any]]) -> str:
    """The page: an index, failures from manifest.json, then one section per video."""
    e = html.escape
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>facetrack report: {e(run_dir.name)}</title><style>{CSS}</style></head><body>",
             f"<h1>facetrack report: {e(str(run_dir))}</h1>",
             "<table><tr><th>video</th><th>completed</th><th>frames</th><th>with a face</th><th>tracks</th>"
             "<th>(re)detections</th><th>fps</th>" + ("<th>NRMSE %</th>" if any(v.truth for v in videos) else "")
             + "</tr>"]
    for v in videos:
        s = v.summary
        nr = "" if not any(x.truth for x in videos) else \
            f"<td>{v.truth['nrmse']:.2f}</td>" if v.truth else "<td>-</td>"
        parts.append(f"<tr><td><a href='#{e(v.name)}'>{e(v.name)}</a></td><td>{e(_cell('completed', s))}</td>"
                     f"<td>{e(_cell('frames_read', s))}</td><td>{e(_cell('frames_with_face', s))}</td>"
                     f"<td>{e(_cell('tracks', s))}</td><td>{e(_cell('detections', s))}</td>"
                     f"<td>{e(_cell('fps', s))}</td>{nr}</tr>")
    parts.append("</table>")
    if failures:
        parts.append("<h2 class='failed'>Failed videos (manifest.json)</h2><ul>")
        parts += [f"<li class='failed'>{e(str(f.get('source')))}: {e(str(f.get('reason')))}</li>" for f in failures]
        parts.append("</ul>")
    for v in videos:
        parts.append(f"<section id='{e(v.name)}'><h2>{e(v.name)}</h2><table>")
        parts += [f"<tr><th>{e(label)}</th><td>{e(_cell(key, v.summary))}</td></tr>" for key, label in SUMMARY_ROWS]
        if v.truth:
            parts.append(f"<tr><th>against {e(v.truth['name'])}</th><td>NRMSE {v.truth['nrmse']:.2f} %, "
                         f"AUC@{AUC_AT:.0%} {v.truth['auc']:.3f}, FR {v.truth['fr']:.1%}, "
                         f"{v.truth['frames_lost']} of {v.truth['frames']} annotated frames lost</td></tr>")
        parts.append("</table>")
        parts += [f"<p class='note'>{e(n)}</p>" for n in v.notes]
        if v.thumbnails:
            parts.append("<div class='thumbs'>")
            parts += [f"<figure><img class='thumb' src='{url}' alt='{e(cap)}'><figcaption>{e(cap)}</figcaption></figure>"
                      for cap, url in v.thumbnails]
            parts.append("</div>")
        parts.append("<div class='plots'>" + "".join(v.plots) + "</div></section>")
    parts.append("<p style='font-size:12px;color:#666'>Markers: red dashed = re-detection of a track, grey = a new "
                 "track. Jitter: FHR e3 of the prediction alone (no ground truth). Made by facetrack report.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, out: str | Path | None = None, truth: dict[str, Any] | None = None,
                 thumbnails: int = 4) -> tuple[Path, list[VideoReport]]:
    """Write ``report.html`` (default ``RUN_DIR/report.html``) for a ``facetrack track`` output folder.

    ``truth``: ground-truth videos by name (``VideoTruth``), matched to output folders by name; a single
    output folder and a single truth video are paired whatever their names."""
    from facetrack.io.results import atomic_write_text

    run = Path(run_dir)
    folders = output_folders(run)
    truth = truth or {}
    videos = []
    for folder in folders:
        match = truth.get(folder.name)
        if match is None and len(folders) == 1 and len(truth) == 1:
            match = next(iter(truth.values()))
        videos.append(video_report(folder, thumbnails, match))
    failures: list[dict[str, Any]] = []
    manifest = run / "manifest.json"
    if manifest.is_file():
        try:
            failures = list(json.loads(manifest.read_text(encoding="utf-8")).get("failed") or [])
        except (OSError, ValueError, AttributeError):
            failures = []
    path = Path(out) if out is not None else run / "report.html"
    atomic_write_text(path, render_html(videos, run, failures))
    return path, videos
