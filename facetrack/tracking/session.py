"""One source -> one output folder: landmarks.csv (flushed per frame), summary.json, and the optional formats.

Outputs (the public contract of shared/DESIGN.md, plus ``--format`` extras):
- ``landmarks.csv`` always (rows flushed as frames are processed; a frame with no face has no row);
- ``summary.json``: written as "not completed" before the first frame, at each checkpoint and at the end, so a run
  that is killed, interrupted or fails still leaves one saying so (``completed``/``reason``); it records what made
  the folder (``provenance``), frame images that could not be decoded (``bad_frames``) and, while unfinished,
  where a resumed run goes on (``progress``), and ``track_starts``: ``[frame, track_id]`` where a track (re)started
  from a face detection (a new face, or a lost one found again; ``facetrack report`` marks them);
- ``landmarks.jsonl``: one JSON object per frame, faces included (an empty list on frames without a face);
- ``landmarks.npz``: the CSV as arrays, assembled from bounded parts (``facetrack.io.track_output``);
- ``annot/000001.pts``: the 300VW layout, 1-based frame numbers, the lowest track id of each frame; with
  ``max_faces`` other than 1 (0 = all) every track also goes to ``tracks/<track_id>/annot/``;
- ``overlay.mp4`` with ``render`` (a run with it cannot resume: it starts over).
All files go through one sink, ``facetrack.io.track_output.TrackOutput``, shared with the peers' adapters.
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

from facetrack.io.results import write_summary_json
from facetrack.io.track_output import FORMATS, source_label

logger = logging.getLogger(__name__)



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
    """The frame with each face's landmarks, box and track id, one colour per track (``facetrack.draw``)."""
    from facetrack.drawing import draw

    return draw(image, faces, edges=edges)


def _scheme_edges(scheme: str) -> tuple[tuple[int, int], ...]:
    try:
        from facetrack.schemes import get_scheme

        return tuple(get_scheme(scheme).edges)
    except (KeyError, ImportError):
        return ()


def provenance(tracker: Any, source: Any, formats: Sequence[str], render: bool = False) -> dict[str, Any]:
    """What makes this run's outputs what they are: the source's identity, the model and its weights' hash, the
    detector, validator, formats and options. ``track`` skips a folder only when its record equals this."""
    from facetrack.io.track_output import _normal, source_fingerprint

    engine = tracker.engine
    landmarker = getattr(engine, "landmarker", None)
    card = getattr(getattr(landmarker, "model", None), "card", None) or {}
    options = {"config": asdict(tracker.config), "refine": getattr(landmarker, "refine", None),
               "flip": getattr(landmarker, "flip", None), "render": bool(render)}
    return _normal({"source": source_fingerprint(source), "formats": list(parse_formats(formats)),
                    "model": {"name": tracker.model_name, "sha256": card.get("sha256") if isinstance(card, dict) else None},
                    "detector": tracker.detector_name,
                    "validator": None if tracker.validator is None else "face_validator", "options": options})


def track_to_folder(tracker: Any, source: Any, out_dir: str | Path, formats: Sequence[str] = ("csv",),
                    render: bool = False, show: bool = False, progress: bool = True, resume: bool = False,
                    record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Track ``source`` (a path, camera index or open ``FrameSource``) with a ``facetrack.Tracker`` into
    ``out_dir``; returns the summary it wrote.

    ``resume``: continue the folder's interrupted run from the frame after its last checkpoint (tracks start
    afresh there: the detector runs on that frame); otherwise the folder's outputs are replaced. ``record``:
    the provenance to store (default ``provenance(...)``). KeyboardInterrupt and errors after the source opened
    still write everything processed so far and a summary with ``completed: false`` and the reason, then propagate.
    """
    from tqdm import tqdm

    from facetrack import __version__
    from facetrack.io.track_output import FaceRow, TrackOutput
    from facetrack.io.video import CameraSource, FrameSource, OverlayWriter, open_source

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    formats = parse_formats(formats)
    scheme = str(getattr(tracker.engine, "scheme", ""))
    summary: dict[str, Any] = {
        "source": source_label(source), "completed": False, "reason": "running (or killed before the end)",
        "frames_read": 0, "frames_with_face": 0, "tracks": 0, "model": tracker.model_name,
        "scheme": scheme, "num_points": tracker.num_points, "detector": tracker.detector_name,
        "validator": None if tracker.validator is None else "face_validator",
        "timings_ms": {"decode": None, "detection": None, "landmarks": None, "total": None}, "fps": None,
        "formats": list(formats), "render": bool(render), "config": asdict(tracker.config),
        "facetrack_version": __version__,
        "provenance": record if record is not None else provenance(tracker, source, formats, render),
    }
    try:
        frames = source if isinstance(source, FrameSource) else open_source(source)
    except Exception as exc:
        summary["reason"] = f"cannot open the source: {exc}"
        sink = TrackOutput(out, tracker.num_points, formats, resume=resume)
        sink.start(summary)
        sink.close_files()
        raise
    live = isinstance(frames, CameraSource)
    resume = resume and not live and not render
    sink = TrackOutput(out, tracker.num_points, formats, multi=tracker.config.max_faces != 1, resume=resume)
    start = sink.resume_from
    earlier = [b for b in (sink.previous_summary.get("bad_frames") or [])  # undecodable frames before the resume
               if isinstance(b, dict) and isinstance(b.get("frame"), int) and b["frame"] < start]
    starts = [s for s in (sink.previous_summary.get("track_starts") or [])  # (re)detections before the resume
              if isinstance(s, list) and len(s) == 2 and isinstance(s[0], int) and s[0] < start]
    bad: dict[int, str] = getattr(frames, "bad_frame_reasons", None)  # the source's own dict: it grows
    if bad is None:
        bad = {}
    seen_bad = -1
    summary.update({"width": frames.size[0], "height": frames.size[1], "source_fps": frames.fps,
                    "source_frames": frames.frame_count, "live": live, "resumed_from": start or None,
                    "track_starts": starts})  # the list grows in place: each checkpoint writes it
    sink.start(summary)
    if show and not has_display():
        logger.warning("no display (DISPLAY unset or OpenCV built without GUI, e.g. opencv-python-headless): "
                       "not showing a live window, writing the outputs only")
        show = False

    overlay = OverlayWriter(out / "overlay.mp4", frames.fps) if render else None  # H.264 when it can
    edges = _scheme_edges(scheme) if (render or show) else ()
    sums = {"decode": 0.0, "detection": 0.0, "landmarks": 0.0, "total": 0.0}
    count = 0
    started = time.perf_counter()
    bar = tqdm(total=frames.frame_count, initial=start, unit="frame", disable=not progress, dynamic_ncols=True,
               desc=Path(str(summary["source"])).name or str(summary["source"]))
    reason: str | None = None
    completed = False
    results: Any = None
    try:
        stream = frames.iter_from(start) if start else frames
        results = tracker.track(stream, with_frames=bool(render or show), lookahead=not live)
        for result in results:
            if len(bad) != seen_bad:  # recorded at the next checkpoint
                seen_bad = len(bad)
                summary["bad_frames"] = _bad_frames(earlier, bad, start)
            starts.extend([result.index, int(f.track_id) + sink.track_id_offset]
                          for f in result.faces if getattr(f, "detected", False))
            sink.write(result.index, result.time_s, [FaceRow(f.track_id, f.box, f.score, f.landmarks, f.confidences,
                                                             getattr(f, "pose", None)) for f in result.faces])
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
        reason = f"failed at frame {start + count}: {type(exc).__name__}: {exc}"
        raise
    finally:
        wall = time.perf_counter() - started
        bar.close()
        if results is not None:  # its reader thread stops before the source closes
            results.close()
        frames.close()
        if overlay is not None:
            overlay.close()
        if show:
            cv2.destroyAllWindows()
        stats = tracker.stats
        truncated = bool(getattr(frames, "truncated", False))
        if completed and reason is None:
            reason = "the video stops early (truncated or damaged file)" if truncated else (
                "the camera stopped delivering frames" if live else None)
        totals = sink.counts()
        summary.update({
            "completed": completed, "reason": reason, "frames_read": totals["frames_read"],
            "frames_with_face": totals["frames_with_face"], "tracks": len(totals["track_ids"]),
            "track_ids": totals["track_ids"], "truncated": truncated,
            "bad_frames": _bad_frames(earlier, bad, start),
            "tiny_faces_skipped": stats.tiny_faces_skipped, "detector_runs": stats.detector_runs,
            "tracks_lost": stats.tracks_lost, "reidentified": stats.reidentified,
            "implausible_shapes": stats.implausible, "unsupported_by_detector": stats.unsupported,
            "timings_ms": {k: (v / count if count else None) for k, v in sums.items()},
            "fps": count / wall if count and wall > 0 else None, "wall_s": wall,
        })
        if overlay is not None:  # h264 (imageio-ffmpeg installed) or mp4v (plays in fewer places)
            summary["overlay_codec"] = overlay.codec
        if summary["bad_frames"]:
            summary["note_bad_frames"] = (f"{len(summary['bad_frames'])} frame image(s) could not be decoded and "
                                          "were skipped")
        if stats.frames and not totals["frames_with_face"]:
            summary["note"] = "no face found in any frame"
        try:
            sink.finish(summary, completed)
        except Exception as exc:  # never lose the summary over an extra format
            logger.warning("%s: could not finish the outputs: %s", out, exc)
            summary["outputs_error"] = str(exc)
            write_summary_json(out / "summary.json", summary)
    return summary


def _bad_frames(earlier: list[dict[str, Any]], bad: dict[int, str], start: int) -> list[dict[str, Any]]:
    """summary.json's ``bad_frames``: those of the run before a resume (frames before ``start``), then this
    run's, in frame order."""
    return [*earlier, *({"frame": int(i), "reason": bad[i]} for i in sorted(bad) if i >= start)]
