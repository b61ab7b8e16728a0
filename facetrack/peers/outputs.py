"""Writing a peer's results in facetrack's contracts: PRED.json of ``detect`` and the folder of ``track``
(through the same sink as ``facetrack track``, ``facetrack.io.track_output.TrackOutput``: landmarks.csv flushed
per frame, summary.json written before the first frame and again at the end).

A peer adapter provides ``name``, ``detector_name``, ``scheme``, ``num_points``, ``accepts_boxes``,
``detect(image) -> list[FacePrediction]``, ``from_boxes(image, boxes)`` (when it accepts boxes) and
``video() -> VideoRun`` whose ``process(frame)`` returns the faces of one frame with their track ids.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from facetrack.geometry import box_iou, greedy_match
from facetrack.io.results import FacePrediction, ImagePrediction, Prediction, write_predictions
from facetrack.io.track_output import FaceRow, TrackOutput


class VideoRun(Protocol):
    """The per-video state of a peer (its own tracking, if any)."""

    def process(self, frame: np.ndarray) -> tuple[list[tuple[int, FacePrediction]], dict[str, float]]:
        """Faces of one BGR frame as ``(track_id, face)`` and timings in ms (``detection``, ``landmarks``)."""
        ...

    def close(self) -> None: ...


class TrackIds:
    """Track ids for methods that give none: a face keeps the id of the previous frame's face it overlaps
    most (IoU >= ``min_iou``, one-to-one, greedy); any other face gets a new id."""

    def __init__(self, min_iou: float = 0.3) -> None:
        self.min_iou = float(min_iou)
        self._boxes = np.zeros((0, 4))
        self._ids: list[int] = []
        self._next = 1

    def assign(self, boxes: np.ndarray) -> list[int]:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids = [0] * len(boxes)
        if len(boxes) and len(self._ids):
            for i, j in greedy_match(box_iou(boxes, self._boxes), self.min_iou):
                ids[i] = self._ids[j]
        for i in range(len(ids)):
            if ids[i] == 0:
                ids[i] = self._next
                self._next += 1
        self._boxes, self._ids = boxes.copy(), list(ids)
        return ids


def detect_images(peer: Any, images: Sequence[str], boxes: dict[str, list[list[float]]] | None = None,
                  read: Any = None) -> Prediction:
    """Run ``peer`` on still images -> a ``Prediction`` (scheme of the peer). With ``boxes`` (image path ->
    face boxes, keys spelled as in ``images``) the peer's own detector is skipped: only for peers that accept
    boxes. Images without a box entry get no faces."""
    from facetrack.data.sample import read_image

    if boxes is not None and not peer.accepts_boxes:
        raise ValueError(f"{peer.name} cannot take face boxes (it runs its own face detector)")
    read = read or read_image
    pred = Prediction(model=peer.name, scheme=peer.scheme)
    for path in images:
        image = read(path)
        if boxes is None:
            faces = peer.detect(image)
        else:
            given = boxes.get(path, [])
            faces = peer.from_boxes(image, [np.asarray(b, dtype=np.float64) for b in given]) if given else []
        pred.images.append(ImagePrediction(str(path), int(image.shape[1]), int(image.shape[0]), list(faces)))
    return pred


def detect_to_json(peer: Any, images: Sequence[str], out: str | Path,
                   boxes: dict[str, list[list[float]]] | None = None) -> Path:
    """``facetrack detect`` for a peer: PRED.json at ``out``."""
    return write_predictions(out, detect_images(peer, images, boxes))


def track_to_folder(peer: Any, source: Any, out_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    """``facetrack track`` for a peer: ``out_dir/landmarks.csv`` and ``summary.json`` (same keys as ours).

    ``source``: anything ``facetrack.io.video.open_source`` opens (video file, frame folder)."""
    from tqdm import tqdm

    from facetrack.io.video import open_source

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "source": str(source), "completed": False, "reason": "running (or killed before the end)",
        "frames_read": 0, "frames_with_face": 0, "tracks": 0, "model": peer.name, "scheme": peer.scheme,
        "num_points": peer.num_points, "detector": peer.detector_name, "peer": True,
        "timings_ms": {"decode": None, "detection": None, "landmarks": None, "total": None}, "fps": None,
    }
    sink = TrackOutput(out, peer.num_points, ("csv",))
    sink.start(summary)
    try:
        frames = open_source(source)
    except Exception:
        sink.close_files()
        raise
    summary.update({"width": frames.size[0], "height": frames.size[1], "source_fps": frames.fps,
                    "source_frames": frames.frame_count})
    sums = {"decode": 0.0, "detection": 0.0, "landmarks": 0.0, "total": 0.0}
    count = 0
    reported = {"decode", "total"}  # a peer that cannot time its detector apart leaves "detection" empty
    run = peer.video()
    started = time.perf_counter()
    completed = False
    try:
        iterator: Iterable[Any] = iter(frames)
        bar = tqdm(total=frames.frame_count, unit="frame", desc=peer.name, disable=not progress)
        while True:
            t0 = time.perf_counter()
            try:
                index, time_s, image = next(iterator)  # type: ignore[call-overload]
            except StopIteration:
                break
            t1 = time.perf_counter()
            faces, timings = run.process(image)
            sink.write(index, time_s, [FaceRow(tid, f.bbox, f.score, f.landmarks, f.landmark_scores)
                                       for tid, f in faces])
            sums["decode"] += 1000.0 * (t1 - t0)
            for key in ("detection", "landmarks"):
                if key in timings:
                    sums[key] += timings[key]
                    reported.add(key)
            sums["total"] += 1000.0 * (time.perf_counter() - t0)
            count += 1
            bar.update(1)
        bar.close()
        completed = True
    finally:
        wall = time.perf_counter() - started
        run.close()
        frames.close()
        totals = sink.counts()
        summary.update({
            "completed": completed, "reason": None if completed else "failed or interrupted",
            "frames_read": count, "frames_with_face": totals["frames_with_face"],
            "tracks": len(totals["track_ids"]), "track_ids": totals["track_ids"],
            "timings_ms": {k: (v / count if count and k in reported else None) for k, v in sums.items()},
            "fps": count / wall if count and wall > 0 else None, "wall_s": wall,
        })
        sink.finish(summary, completed)
    return summary
