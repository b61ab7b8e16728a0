"""One source -> one output folder: landmarks.csv (flushed per frame), summary.json, and the optional formats.

Outputs (the public contract of shared/DESIGN.md, plus ``--format`` extras):
- ``landmarks.csv`` always (rows flushed as frames are processed; a frame with no face has no row);
- ``summary.json``: written as "not completed" before the first frame and rewritten at the end, so a run that is
  killed, interrupted or fails still leaves one saying so (``completed``/``reason``);
- ``landmarks.jsonl``: one JSON object per frame, faces included (an empty list on frames without a face);
- ``landmarks.npz``: the CSV as arrays, built from the CSV at the end (nothing accumulates in memory);
- ``annot/000001.pts``: the 300VW layout, 1-based frame numbers, the lowest track id of each frame; with
  ``max_faces`` other than 1 (0 = all) every track also goes to ``tracks/<track_id>/annot/``;
- ``overlay.mp4`` with ``render``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from facetrack.io.pts import write_pts
from facetrack.io.results import LandmarksCSVWriter, read_landmarks_csv, write_summary_json

logger = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl", "npz", "pts")
_TRACK_COLOURS = [(0, 255, 0), (255, 128, 0), (0, 128, 255), (255, 0, 255), (0, 255, 255), (255, 255, 0)]


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"csv,jsonl"`` -> ("csv", "jsonl"); csv is always written (it is the primary, resumable output)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip().lower() for s in items if s.strip()]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown output format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f == "csv" or f in names)


def has_display() -> bool:
    """A live window needs a display and an OpenCV built with a GUI (opencv-python-headless has none)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return False


def is_complete(out_dir: str | Path) -> bool:
    """True when ``out_dir/summary.json`` says a previous run finished (the batch skips that source)."""
    path = Path(out_dir) / "summary.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("completed") is True)
    except (OSError, ValueError, AttributeError):
        return False


def draw_faces(image: np.ndarray, faces: Sequence[Any], edges: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """The frame with each face's landmarks, box and track id, one colour per track."""
    from facetrack.landmarker import draw_landmarks

    out = image
    for face in faces:
        colour = _TRACK_COLOURS[face.track_id % len(_TRACK_COLOURS)]
        out = draw_landmarks(out, face.landmarks, edges, colour)
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, 1, cv2.LINE_AA)
        cv2.putText(out, f"{face.track_id}", (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out


class _Overlay:
    """overlay.mp4, opened on the first frame at the source's rate; odd-sized frames are resized to it."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():
                raise RuntimeError(f"{self.path}: OpenCV cannot open an mp4v video writer")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def _face_json(face: Any) -> dict[str, Any]:
    return {"track_id": int(face.track_id), "box": [round(float(v), 2) for v in face.box],
            "score": round(float(face.score), 4),
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in face.landmarks],
            "confidences": [round(float(c), 4) if np.isfinite(c) else None for c in face.confidences]}


def _scheme_edges(scheme: str) -> tuple[tuple[int, int], ...]:
    try:
        from facetrack.schemes import get_scheme

        return tuple(get_scheme(scheme).edges)
    except (KeyError, ImportError):
        return ()


def track_to_folder(tracker: Any, source: Any, out_dir: str | Path, formats: Sequence[str] = ("csv",),
                    render: bool = False, show: bool = False, progress: bool = True) -> dict[str, Any]:
    """Track ``source`` (a path, camera index or open ``FrameSource``) with a ``facetrack.Tracker`` into
    ``out_dir``; returns the summary it wrote.

    KeyboardInterrupt and errors after the source opened still write everything processed so far and a
    summary with ``completed: false`` and the reason, then propagate.
    """
    from tqdm import tqdm

    from facetrack import __version__
    from facetrack.io.video import CameraSource, FrameSource, open_source

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    formats = parse_formats(formats)
    scheme = str(getattr(tracker.engine, "scheme", ""))
    summary: dict[str, Any] = {
        "source": str(getattr(source, "name", source)), "completed": False, "reason": "running (or killed before the end)",
        "frames_read": 0, "frames_with_face": 0, "tracks": 0, "model": tracker.model_name,
        "scheme": scheme, "num_points": tracker.num_points, "detector": tracker.detector_name,
        "validator": None if tracker.validator is None else "face_validator",
        "timings_ms": {"decode": None, "detection": None, "landmarks": None, "total": None}, "fps": None,
        "formats": list(formats), "render": bool(render), "config": asdict(tracker.config),
        "facetrack_version": __version__,
    }
    summary_path = out / "summary.json"
    try:
        frames = source if isinstance(source, FrameSource) else open_source(source)
    except Exception as exc:
        summary["reason"] = f"cannot open the source: {exc}"
        write_summary_json(summary_path, summary)
        raise
    live = isinstance(frames, CameraSource)
    summary.update({"width": frames.size[0], "height": frames.size[1], "source_fps": frames.fps,
                    "source_frames": frames.frame_count, "live": live})
    write_summary_json(summary_path, summary)
    if show and not has_display():
        logger.warning("no display (DISPLAY unset or OpenCV built without GUI, e.g. opencv-python-headless): "
                       "not showing a live window, writing the outputs only")
        show = False

    csv_writer = LandmarksCSVWriter(out / "landmarks.csv", tracker.num_points)
    jsonl = (out / "landmarks.jsonl").open("w", encoding="utf-8") if "jsonl" in formats else None
    overlay = _Overlay(out / "overlay.mp4", frames.fps) if render else None
    edges = _scheme_edges(scheme) if (render or show) else ()
    multi = tracker.config.max_faces != 1  # 0 = all faces
    sums = {"decode": 0.0, "detection": 0.0, "landmarks": 0.0, "total": 0.0}
    count = 0
    started = time.perf_counter()
    bar = tqdm(total=frames.frame_count, unit="frame", desc=Path(str(summary["source"])).name or str(summary["source"]),
               disable=not progress, dynamic_ncols=True)
    reason: str | None = None
    completed = False
    try:
        for result in tracker.track(frames, with_frames=bool(render or show)):
            for face in result.faces:
                csv_writer.write(result.index, result.time_s, face.track_id, face.box, face.score,
                                 face.landmarks, face.confidences)
            if jsonl is not None:
                jsonl.write(json.dumps({"frame": result.index, "time_s": round(result.time_s, 6),
                                        "faces": [_face_json(f) for f in result.faces]}) + "\n")
                jsonl.flush()
            if "pts" in formats and result.faces:
                name = f"{result.index + 1:06d}.pts"
                write_pts(_mkdir(out / "annot") / name, result.faces[0].landmarks)
                if multi:
                    for face in result.faces:
                        write_pts(_mkdir(out / "tracks" / str(face.track_id) / "annot") / name, face.landmarks)
            if result.image is not None and (overlay is not None or show):
                drawn = draw_faces(result.image, result.faces, edges)
                if overlay is not None:
                    overlay.write(drawn)
                if show:
                    cv2.imshow("facetrack", drawn)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        reason = "stopped by the user"
                        break
            for key in sums:
                sums[key] += result.timings.get(key, 0.0)
            count += 1
            bar.update(1)
        completed = True
    except KeyboardInterrupt:
        reason = "interrupted (Ctrl-C); rows of the frames processed so far are kept"
        raise
    except Exception as exc:
        reason = f"failed at frame {count}: {type(exc).__name__}: {exc}"
        raise
    finally:
        wall = time.perf_counter() - started
        bar.close()
        frames.close()
        csv_writer.close()
        if jsonl is not None:
            jsonl.close()
        if overlay is not None:
            overlay.close()
        if show:
            cv2.destroyAllWindows()
        stats = tracker.stats
        truncated = bool(getattr(frames, "truncated", False))
        if completed and reason is None:
            reason = "the video stops early (truncated or damaged file)" if truncated else (
                "the camera stopped delivering frames" if live else None)
        summary.update({
            "completed": completed, "reason": reason, "frames_read": count,
            "frames_with_face": stats.frames_with_face, "tracks": len(stats.track_ids),
            "track_ids": sorted(stats.track_ids), "truncated": truncated,
            "tiny_faces_skipped": stats.tiny_faces_skipped, "detector_runs": stats.detector_runs,
            "tracks_lost": stats.tracks_lost, "reidentified": stats.reidentified,
            "timings_ms": {k: (v / count if count else None) for k, v in sums.items()},
            "fps": count / wall if count and wall > 0 else None, "wall_s": wall,
        })
        if "npz" in formats:
            try:
                _write_npz(out / "landmarks.csv", out / "landmarks.npz")
            except Exception as exc:  # never lose the summary over an extra format
                logger.warning("%s: could not write landmarks.npz: %s", out, exc)
        if stats.frames and not stats.frames_with_face:
            summary["note"] = "no face found in any frame"
        write_summary_json(summary_path, summary)
    return summary


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_npz(csv_path: Path, npz_path: Path) -> None:
    table = read_landmarks_csv(csv_path)
    np.savez_compressed(npz_path, frame=table.frame, time_s=table.time_s, track_id=table.track_id, boxes=table.boxes,
                        scores=table.scores, landmarks=table.landmarks, confidences=table.conf)
