"""Detect, track, validate, re-detect: CRCT's Algorithm 1 generalised to several faces and any landmark engine.

Per frame:
1. every tracked face is stepped from its previous landmarks (one batched engine call) and validated; a
   score below T_C (``keep_threshold``) loses the track, which then waits ``reid_gap`` frames for re-detection;
2. the detector runs on the first frame, whenever a track is waiting or no face is tracked, and every
   ``detect_every`` frames while there is room for more faces (0 = only when needed);
3. detections on tracked faces are ignored; a detection whose centre is within T_B (CRCT Eq. 8) of a waiting
   face re-initialises it under its old id; the rest start new tracks, largest and most confident first, up
   to ``max_faces`` (waiting faces keep their place, so with one face the tracker waits for it like CRCT);
4. new and re-initialised faces start with fresh temporal state and must pass validation too.

The tracker keeps no frames: only each face's last estimate (landmarks, box, engine state).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import cv2
import numpy as np

from facetrack.errors import ModelError
from facetrack.tracking.association import Identities, box_iou
from facetrack.tracking.detectors.base import FaceDetector
from facetrack.tracking.engine import FaceEstimate, LandmarkEngine
from facetrack.tracking.plausibility import ShapeCheck
from facetrack.tracking.smoothing import make_filter, smoothing_params

logger = logging.getLogger(__name__)


class Validator(Protocol):
    def score(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """p(face) in [0, 1] for each landmark set."""
        ...


FACE_CHECKS = ("validator", "atpn")


@dataclass
class TrackerConfig:
    """Thresholds and policies of the tracking loop (CRCT's T_C and T_B, plus the multi-face ones)."""

    detect_every: int = 0  # also detect every N frames to pick up faces that enter (0 = only when needed)
    max_faces: int = 1  # 0 = every face the detector finds
    min_face: float = 24.0  # detector boxes smaller than this (pixels, longer side) are skipped
    keep_threshold: float = 0.3  # T_C on the combined validation score
    redetect_ratio: float = 0.5  # T_B of Eq. 8: centre distance / previous box diagonal
    reid_gap: int = 30  # frames a lost face keeps its id while waiting for a nearby detection (1 s at 30 fps)
    confidence_weight: float = 0.5  # exponent of the mean landmark confidence in the combined score
    match_iou: float = 0.3  # a detection overlapping a tracked face this much is that face
    # re-check tracked faces against the detector every N frames (0 = never): a face whose landmark box no
    # overlapping detection matches (IoU >= support_iou) at verify_misses checks in a row is re-detected
    verify_every: int = 5
    verify_misses: int = 2
    support_iou: float = 0.5
    verify_face: float = 160.0  # a re-check shrinks the frame until the smallest tracked face is this size (0: never)
    # search_every > 1: a re-check searches only around the tracked faces (their union box grown by verify_margin x
    # the largest face's side on each side, so a neighbour touching a face is in it), except every search_every-th
    # re-check, which searches the whole frame for faces that enter (found within verify_every x search_every
    # frames). 1 (default): every re-check searches the whole frame. 3 makes re-checks of small faces in large
    # frames about 3x cheaper (1080p: 1.9x the frame rate), at 0.6 points more lost face-frames on the multi-face
    # benchmark (benchmarks/README.md, "Re-checks around the tracked faces")
    verify_margin: float = 1.0
    search_every: int = 1
    # with no face tracked or waiting, run the detector on one frame in N (a face that enters is found within
    # N - 1 frames; face-free video costs 1/N of the detector)
    idle_detect_every: int = 3
    idle_side: int = 480  # ... on the frame shrunk to this longer side (0: full size): faces of ~40 px at 960 px
    # output filter (facetrack.tracking.smoothing.smoothing_params: True, a method name or a spec); None = off
    smoothing: bool | str | dict[str, Any] | None = None
    # what says a tracked face is still a face: "validator" (the face validator with the landmark confidences, against
    # keep_threshold) or "atpn" (ATPN's tracking head alone: p(face) against atpn_threshold, the thesis's 0.7)
    face_check: str = "validator"
    atpn_threshold: float = 0.7

    @property
    def threshold(self) -> float:
        """The score a face needs to be kept (or started): T_C of the face check in use."""
        return self.atpn_threshold if self.face_check == "atpn" else self.keep_threshold

    def __post_init__(self) -> None:
        if self.face_check not in FACE_CHECKS:
            raise ValueError(f"face_check must be one of {FACE_CHECKS}, got {self.face_check!r}")
        if self.max_faces < 0:
            raise ValueError(f"max_faces must be >= 0 (0 = all faces), got {self.max_faces}")
        if self.detect_every < 0 or self.verify_every < 0:
            raise ValueError(f"detect_every and verify_every must be >= 0, got {self.detect_every}, {self.verify_every}")
        if self.verify_misses < 1 or self.idle_detect_every < 1 or not 0.0 < self.support_iou <= 1.0:
            raise ValueError("verify_misses and idle_detect_every must be >= 1 and support_iou in (0, 1]")
        if self.search_every < 1 or self.verify_margin < 0:
            raise ValueError(f"search_every must be >= 1 and verify_margin >= 0, got {self.search_every}, "
                             f"{self.verify_margin}")
        if not 0.0 <= self.confidence_weight <= 1.0:
            raise ValueError(f"confidence_weight must be in [0, 1], got {self.confidence_weight}")
        if self.reid_gap < 0 or self.min_face < 0 or self.redetect_ratio <= 0:
            raise ValueError("reid_gap and min_face must be >= 0 and redetect_ratio > 0")
        self.smoothing = smoothing_params(self.smoothing)


@dataclass
class TrackedFace:
    """One face on one frame. ``box`` is the tight box of the landmarks (frame pixels); ``score`` the
    validation score that kept the track (face validator combined with the landmark confidences); ``detected``:
    the track (re)started from a face detection on this frame (a new face, or one lost and found again)."""

    track_id: int
    box: np.ndarray
    score: float
    landmarks: np.ndarray
    confidences: np.ndarray
    detected: bool = False
    pose: np.ndarray | None = None  # (yaw, pitch, roll) degrees, facetrack.pose; None for schemes other than iBUG-68


@dataclass
class _Track:
    track_id: int
    estimate: FaceEstimate
    score: float
    started: int
    smoother: Callable[[np.ndarray, float], np.ndarray] | None = None
    unsupported: int = 0  # detector checks in a row that did not support this face


@dataclass
class TrackerStats:
    """Counters over a run (what summary.json reports besides timings)."""

    frames: int = 0
    frames_with_face: int = 0
    detector_runs: int = 0
    tiny_faces_skipped: int = 0
    tracks_started: int = 0
    tracks_lost: int = 0
    reidentified: int = 0
    implausible: int = 0  # estimates failed by the shape check
    unsupported: int = 0  # tracks re-detected because the detector did not support them
    track_ids: set[int] = field(default_factory=set)


def combined_score(p_face: np.ndarray | None, confidences: Sequence[np.ndarray], weight: float) -> np.ndarray:
    """Weighted geometric mean of p(face) and the mean landmark confidence: both must agree on a face.

    Without a validator the mean confidence alone decides.
    """
    conf = np.array([float(np.clip(np.nanmean(c), 0.0, 1.0)) if np.isfinite(c).any() else 0.0 for c in confidences])
    if p_face is None:
        return conf
    p = np.clip(np.asarray(p_face, dtype=np.float64), 0.0, 1.0)
    return p ** (1.0 - weight) * conf ** weight


def _settle(future: Any) -> None:
    """Wait for a step begun ahead whose result is not wanted; its errors are the next synchronous step's to raise."""
    try:
        future.result()
    except Exception:  # noqa: BLE001 - the step that replaces it raises whatever still applies
        logger.debug("a step begun ahead failed; the frame is stepped again", exc_info=True)


def _side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


class FaceTracker:
    """The stateful loop: ``update(frame, time_s)`` -> the faces on that frame. One instance per video."""

    def __init__(self, engine: LandmarkEngine, detector: FaceDetector, validator: Validator | None = None,
                 config: TrackerConfig | None = None, shape_check: ShapeCheck | None = None) -> None:
        self.engine = engine
        self.detector = detector
        self.validator = validator
        self.shape_check = shape_check
        self.config = config or TrackerConfig()
        self._pool: Any = None  # the thread of steps begun ahead (``update(..., upcoming=...)``), made on first use
        self._ahead: tuple[Any, np.ndarray, list[FaceEstimate]] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every face (a new video)."""
        self._settle_ahead()
        self.tracks: list[_Track] = []
        self.identities = Identities(reid_gap=self.config.reid_gap, max_ratio=self.config.redetect_ratio)
        self.stats = TrackerStats()
        self.timings = {"detection": 0.0, "landmarks": 0.0}  # ms spent on the last frame
        self._idle = 0  # frames in a row with no face tracked or waiting

    # -------------------------------------------------------------------------------------------- helpers

    def _validate(self, image: np.ndarray, estimates: Sequence[FaceEstimate]) -> np.ndarray:
        if not estimates:
            return np.zeros(0)
        if self.config.face_check == "atpn":  # ATPN's tracking head, from the same network call as the landmarks
            scores = np.array([float((e.aux or {}).get("face", np.nan)) for e in estimates])
            if np.isnan(scores).any():
                raise ModelError("face_check 'atpn' needs a model with ATPN's tracking head (e.g. atpn-68)")
        else:
            p_face = None if self.validator is None else self.validator.score(image, [e.landmarks for e in estimates])
            scores = combined_score(p_face, [e.confidences for e in estimates], self.config.confidence_weight)
        if self.shape_check is not None:
            face_like = self.shape_check([e.landmarks for e in estimates])
            self.stats.implausible += int((~face_like).sum())
            scores = np.where(face_like, scores, 0.0)
        return scores

    def _plausible(self, estimate: FaceEstimate, width: int, height: int) -> bool:
        """Landmarks that are finite, of a trackable size, with their centre inside the frame."""
        if not np.isfinite(estimate.landmarks).all():
            return False
        box = estimate.extent
        cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
        return _side(box) >= 0.5 * self.config.min_face and 0 <= cx < width and 0 <= cy < height

    def _detect(self, image: np.ndarray, scale: float = 1.0, region: tuple[int, int, int, int] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Usable detections: boxes (K, 4), scores (K,) and the detector's five points (K, 5, 2) or None, in frame
        pixels; ``scale`` < 1 runs the detector on the frame shrunk by that factor (cheaper, larger faces only);
        ``region`` (x0, y0, x1, y1, integer pixels): on that part of the frame only (``_cut_by`` tells which
        detections its borders cut)."""
        if region is not None:
            boxes, scores, points5 = self._detect(image[region[1]:region[3], region[0]:region[2]], scale)
            offset = np.array(region[:2], dtype=np.float64)
            return boxes + np.tile(offset, 2), scores, None if points5 is None else points5 + offset
        if scale < 1.0:
            h, w = image.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        found = self.detector.detect(image)
        boxes = np.asarray(found.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(found.scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            scores = np.ones(len(boxes))
        points5 = getattr(found, "points5", None)
        if points5 is not None:
            points5 = np.asarray(points5, dtype=np.float64).reshape(-1, 5, 2)
            points5 = points5 if len(points5) == len(boxes) else None
        if scale < 1.0:  # a pixel centre u of the shrunk frame lies at (u + 0.5) / s - 0.5 in the frame
            sx, sy = w / image.shape[1], h / image.shape[0]
            boxes = (boxes + 0.5) * np.array([sx, sy, sx, sy]) - 0.5
            points5 = None if points5 is None else (points5 + 0.5) * np.array([sx, sy]) - 0.5
        self.stats.detector_runs += 1
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        ok = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        tiny = ok & (sides < self.config.min_face)
        if tiny.any():
            self.stats.tiny_faces_skipped += int(tiny.sum())
            logger.info("skipping %d face(s) smaller than %g px", int(tiny.sum()), self.config.min_face)
        keep = ok & ~tiny
        return boxes[keep], scores[keep], None if points5 is None else points5[keep]

    def _verify_region(self, tracks: list[_Track], width: int, height: int) -> tuple[int, int, int, int] | None:
        """The part of the frame a re-check searches: the union of the tracked faces' landmark boxes, grown on
        each side by ``verify_margin`` x the largest face's side, in whole pixels inside the frame; None (the whole
        frame) when that is most of the frame anyway."""
        extents = np.stack([t.estimate.extent for t in tracks])
        grow = self.config.verify_margin * max(_side(e) for e in extents)
        x0 = max(0, int(np.floor(extents[:, 0].min() - grow)))
        y0 = max(0, int(np.floor(extents[:, 1].min() - grow)))
        x1 = min(width, int(np.ceil(extents[:, 2].max() + grow)) + 1)
        y1 = min(height, int(np.ceil(extents[:, 3].max() + grow)) + 1)
        if x1 - x0 < 2 or y1 - y0 < 2 or (x1 - x0) * (y1 - y0) >= 0.9 * width * height:
            return None
        return x0, y0, x1, y1

    @staticmethod
    def _cut_by(region: tuple[int, int, int, int] | None, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """Which detections touch a border of ``region`` that is not the frame's own: faces that may lie partly
        outside it, whose boxes may be cut short."""
        if region is None:
            return np.zeros(len(boxes), dtype=bool)
        x0, y0, x1, y1 = region
        return (((boxes[:, 0] <= x0 + 2) & (x0 > 0)) | ((boxes[:, 1] <= y0 + 2) & (y0 > 0))
                | ((boxes[:, 2] >= x1 - 3) & (x1 < width)) | ((boxes[:, 3] >= y1 - 3) & (y1 < height)))

    def _on_tracked_face(self, boxes: np.ndarray, tracked: list[_Track]) -> np.ndarray:
        """Which detections are faces already tracked (overlap, or centre inside a tracked face's box)."""
        hit = np.zeros(len(boxes), dtype=bool)
        if not tracked or not len(boxes):
            return hit
        extents = np.stack([t.estimate.extent for t in tracked])
        hit |= (box_iou(boxes, extents) >= self.config.match_iou).any(axis=1)
        centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
        inside = ((centres[:, None, 0] >= extents[None, :, 0]) & (centres[:, None, 0] <= extents[None, :, 2])
                  & (centres[:, None, 1] >= extents[None, :, 1]) & (centres[:, None, 1] <= extents[None, :, 3]))
        return hit | inside.any(axis=1)

    def _face(self, track: _Track, time_s: float, frame: int = -1) -> TrackedFace:
        points = track.estimate.landmarks
        if track.smoother is not None:
            points = track.smoother(points, time_s)
        from facetrack.data.transforms import box_from_landmarks

        from facetrack.pose import face_pose

        pose = face_pose(points, self._frame_size, (track.estimate.aux or {}).get("pose"))
        return TrackedFace(track.track_id, box_from_landmarks(points), float(track.score), points.copy(),
                           np.asarray(track.estimate.confidences, dtype=np.float64).copy(), track.started == frame,
                           pose)

    def _smoother(self) -> Callable[[np.ndarray, float], np.ndarray] | None:
        spec = self.config.smoothing
        return None if spec is None else make_filter(spec)

    # ------------------------------------------------------------------------------------- stepping ahead

    def _step(self, image: np.ndarray, previous: list[FaceEstimate]) -> list[FaceEstimate]:
        """``engine.step(image, previous)``, taken from the step begun ahead on the previous frame when that step
        had exactly this frame and these estimates (every face kept, none started): the same call, so the same
        numbers; otherwise the guess is dropped and the step runs now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            future, ahead_image, ahead_previous = ahead
            if ahead_image is image and len(ahead_previous) == len(previous) and all(
                    a is b for a, b in zip(ahead_previous, previous)):
                return future.result()
            _settle(future)
        return self.engine.step(image, previous)

    def _step_ahead(self, upcoming: np.ndarray, estimates: list[FaceEstimate]) -> None:
        """Begin the next frame's step on a second thread, as if every face on this one will be kept: it runs while
        this frame is validated, re-checked and filtered (the network releases the GIL), and ``_step`` uses it only
        if the guess was right."""
        if not estimates:
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facetrack-step")
        guess = list(estimates)
        self._ahead = (self._pool.submit(self.engine.step, upcoming, guess), upcoming, guess)

    def _settle_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            _settle(ahead[0])

    def close(self) -> None:
        """Wait for a step begun ahead and stop its thread (``Tracker.track`` calls this when a video ends)."""
        self._settle_ahead()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ---------------------------------------------------------------------------------------------- loop

    def update(self, image: np.ndarray, time_s: float, upcoming: np.ndarray | None = None) -> list[TrackedFace]:
        """Track every face into ``image`` (BGR uint8), detecting when needed; faces sorted by track id.

        ``upcoming``: the next frame, when the caller already has it (a file, not a live camera): its landmark
        step then begins on a second thread while this frame is checked, and the next ``update`` (with that same
        array) uses it when every face was kept. Results are the same as without it, only sooner."""
        cfg = self.config
        frame = self.stats.frames
        height, width = image.shape[:2]
        self._frame_size = (width, height)
        t0 = time.perf_counter()

        # 1. Track from the previous landmarks and validate (lines 11-21 of Algorithm 1).
        kept: list[_Track] = []
        steppable = [t for t in self.tracks if self._plausible(t.estimate, width, height)]
        for t in self.tracks:
            if t not in steppable:
                self._lose(t, frame)
        estimates = self._step(image, [t.estimate for t in steppable])
        if upcoming is not None:
            self._step_ahead(upcoming, estimates)
        scores = self._validate(image, estimates)
        for track, est, score in zip(steppable, estimates, scores):
            if score >= cfg.threshold and self._plausible(est, width, height):
                track.estimate, track.score = est, float(score)
                kept.append(track)
            else:
                self._lose(track, frame)
        kept = self._drop_duplicates(kept, frame)
        t1 = time.perf_counter()

        # 2. Detect when needed (lines 3-10), re-check tracked faces, re-initialise waiting faces, start new ones.
        self.identities.expire(frame)
        periodic = cfg.detect_every > 0 and frame % cfg.detect_every == 0 and (
            cfg.max_faces == 0 or len(kept) < cfg.max_faces)
        verify = bool(kept) and cfg.verify_every > 0 and frame % cfg.verify_every == 0
        waiting = self.identities.waiting() > 0
        self._idle = 0 if kept or waiting else self._idle + 1
        idle_turn = not kept and not waiting and (self._idle - 1) % cfg.idle_detect_every == 0
        detect_time = 0.0
        if frame == 0 or waiting or periodic or verify or idle_turn:
            # a re-check alone looks for the tracked faces: it may run on a shrunk frame (the smallest tracked face
            # kept at verify_face px or more), and on the part of the frame around them except at every
            # search_every-th re-check, which searches the whole frame for faces that enter (at that size or larger)
            scale, region = 1.0, None
            if not (frame == 0 or waiting or periodic or idle_turn):
                if cfg.verify_face > 0:
                    scale = min(1.0, cfg.verify_face / min(_side(t.estimate.extent) for t in kept))
                if (frame // cfg.verify_every) % cfg.search_every:
                    region = self._verify_region(kept, width, height)
            elif idle_turn and frame > 0 and cfg.idle_side > 0:  # watching an empty scene: a bounded frame
                scale = min(1.0, cfg.idle_side / max(image.shape[:2]))
            boxes, det_scores, points5 = self._detect(image, scale, region)
            detect_time = time.perf_counter() - t1
            if verify:
                kept = self._verify(kept, boxes, frame)
            # a face cut by the re-check region's border starts no track (its box may be cut short): the
            # whole-frame search finds it
            free = ~self._on_tracked_face(boxes, kept) & ~self._cut_by(region, boxes, width, height)
            boxes, det_scores = boxes[free], det_scores[free]
            points5 = None if points5 is None else points5[free]
            reclaimed = self.identities.reclaim(boxes)  # detection index -> waiting track id
            room = (len(boxes) if cfg.max_faces == 0  # 0 = all; waiting includes the reclaimed
                    else cfg.max_faces - len(kept) - self.identities.waiting())
            others = [j for j in range(len(boxes)) if j not in reclaimed]
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            others.sort(key=lambda j: -(area[j] * max(det_scores[j], 1e-6)))
            chosen = list(reclaimed) + others[:max(room, 0)]
            if chosen:
                kept += self._start(image, boxes[chosen], None if points5 is None else points5[chosen],
                                    [reclaimed.get(j) for j in chosen], frame)
        t2 = time.perf_counter()

        self.tracks = sorted(kept, key=lambda t: t.track_id)
        self.stats.frames += 1
        faces = [self._face(t, time_s, frame) for t in self.tracks]
        if faces:
            self.stats.frames_with_face += 1
        self.timings = {"detection": 1000.0 * detect_time, "landmarks": 1000.0 * ((t2 - t0) - detect_time)}
        return faces

    def _start(self, image: np.ndarray, boxes: np.ndarray, points5: np.ndarray | None, old_ids: list[int | None],
               frame: int) -> list[_Track]:
        estimates = self.engine.start(image, list(boxes), points5)
        scores = self._validate(image, estimates)
        height, width = image.shape[:2]
        started: list[_Track] = []
        for est, score, old in zip(estimates, scores, old_ids):
            if score < self.config.threshold or not self._plausible(est, width, height):
                continue  # not confirmed: a waiting face keeps waiting, a new one is ignored
            if old is not None:
                self.identities.forget(old)
                self.stats.reidentified += 1
                track_id = old
            else:
                track_id = self.identities.new_id()
            self.stats.tracks_started += 1
            self.stats.track_ids.add(track_id)
            started.append(_Track(track_id, est, float(score), frame, self._smoother()))
        return started

    def _verify(self, kept: list[_Track], boxes: np.ndarray, frame: int) -> list[_Track]:
        """Tracks the detector still supports. A detection overlapping a face without matching its landmark box
        (IoU below ``support_iou``: the shape spans two faces, or sits half off its face) counts against it; no
        overlapping detection at all (a face the detector cannot see, e.g. rolled or blurred) counts neither way."""
        if not kept:
            return kept
        extents = np.stack([t.estimate.extent for t in kept])
        iou = box_iou(boxes, extents) if len(boxes) else np.zeros((0, len(kept)))
        out = []
        for j, track in enumerate(kept):
            best = float(iou[:, j].max()) if len(boxes) else 0.0
            if best >= self.config.support_iou:
                track.unsupported = 0
            elif best > 0.0:
                track.unsupported += 1
            if track.unsupported >= self.config.verify_misses:
                self.stats.unsupported += 1
                self._lose(track, frame)
                continue
            out.append(track)
        return out

    def _lose(self, track: _Track, frame: int) -> None:
        self.stats.tracks_lost += 1
        self.identities.lose(track.track_id, track.estimate.extent, frame)

    def _drop_duplicates(self, tracks: list[_Track], frame: int) -> list[_Track]:
        """Two tracks that converged on one face: keep the older one."""
        if len(tracks) < 2:
            return tracks
        ordered = sorted(tracks, key=lambda t: (t.started, t.track_id))
        extents = np.stack([t.estimate.extent for t in ordered])
        iou = box_iou(extents, extents)
        keep: list[_Track] = []
        for i, track in enumerate(ordered):
            if any(iou[i, ordered.index(k)] > 0.5 for k in keep):
                self.stats.tracks_lost += 1  # merged into an older track: its id ends here
                continue
            keep.append(track)
        return keep
