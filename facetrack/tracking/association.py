"""Face identities across frames: box overlap, CRCT's re-detection rule (Eq. 8), and track ids.

A tracked face keeps its ``track_id`` while it is tracked. When a track is lost it waits ``reid_gap`` frames:
a detection close to where it was lost (distance ratio below T_B) takes the old id back; after the gap the
face counts as gone and whatever comes back is a new face with a new id.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from facetrack.geometry import box_iou, greedy_match


def distance_ratio(previous: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """CRCT Eq. 8: distance between box centres over the magnitude (diagonal) of the previous box, (M,)."""
    prev = np.asarray(previous, dtype=np.float64).reshape(4)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre = 0.5 * (prev[:2] + prev[2:])
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    magnitude = max(float(np.hypot(prev[2] - prev[0], prev[3] - prev[1])), 1e-9)
    return np.hypot(*(centres - centre).T) / magnitude


def match_boxes(tracks: np.ndarray, detections: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one (track, detection) pairs maximising total IoU, each pair overlapping at least ``min_iou``."""
    tracks = np.asarray(tracks, dtype=np.float64).reshape(-1, 4)
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
    if len(tracks) == 0 or len(detections) == 0:
        return []
    iou = box_iou(tracks, detections)
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


@dataclass
class LostFace:
    """A face whose track was lost: its id, its last validated box, and the frame it was lost on."""

    track_id: int
    box: np.ndarray
    lost_at: int


@dataclass
class Identities:
    """Allocates track ids and remembers recently lost faces for re-identification by position."""

    reid_gap: int = 15  # frames a lost face waits for a detection near its last box
    max_ratio: float = 0.5  # T_B of CRCT Eq. 8
    next_id: int = 0
    lost: list[LostFace] = field(default_factory=list)

    def new_id(self) -> int:
        track_id = self.next_id
        self.next_id += 1
        return track_id

    def lose(self, track_id: int, box: np.ndarray, frame: int) -> None:
        self.lost.append(LostFace(track_id, np.asarray(box, dtype=np.float64).copy(), frame))

    def expire(self, frame: int) -> None:
        """Forget faces lost more than ``reid_gap`` frames ago: they get new ids if they come back."""
        self.lost = [f for f in self.lost if frame - f.lost_at <= self.reid_gap]

    def reclaim(self, detections: np.ndarray) -> dict[int, int]:
        """Detection index -> track id for lost faces with a detection within T_B (Eq. 8), nearest first.

        Each lost face takes at most one detection and each detection goes to at most one face. The faces
        stay on the waiting list until ``forget`` confirms them (the re-initialised track may fail validation).
        """
        detections = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
        if len(detections) == 0 or not self.lost:
            return {}
        ratios = np.stack([distance_ratio(face.box, detections) for face in self.lost])  # (L, M)
        # nearest first: greedy on the negated ratios, stopping at max_ratio
        return {j: self.lost[i].track_id for i, j in greedy_match(-ratios, -self.max_ratio, inclusive=False)}

    def forget(self, track_id: int) -> None:
        """Take a re-identified face off the waiting list."""
        self.lost = [f for f in self.lost if f.track_id != track_id]

    def waiting(self) -> int:
        """Faces still waiting to be re-detected (they keep their place under ``max_faces``)."""
        return len(self.lost)
