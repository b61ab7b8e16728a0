"""Draw landmark results on an image: ``facetrack.draw(image, faces)``.

Takes whatever the Python API returns -- a still's ``Faces`` (or any list of ``Face``/``TrackedFace``), one
``FrameResult`` -- and returns a new BGR uint8 image with each face's landmarks (joined by its scheme's
edges), its box and, for tracked faces, its track id, one colour per face (or per track). ``detect --render``
and ``track --render`` draw the same way.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

__all__ = ["COLOURS", "draw", "draw_landmarks", "draw_pose_axes", "scheme_edges"]

# BGR, one per face of a still (largest first) or per track id
COLOURS = ((0, 255, 0), (255, 128, 0), (0, 128, 255), (255, 0, 255), (0, 255, 255), (255, 255, 0))


def scheme_edges(scheme: str | None = None, num_points: int | None = None) -> tuple[tuple[int, int], ...]:
    """The drawing edges of a landmark scheme named, or guessed from the number of points; () if unknown."""
    from facetrack.schemes import SCHEMES

    if scheme in SCHEMES:
        return tuple(SCHEMES[scheme].edges)
    by_size = [s for s in SCHEMES.values() if s.num_points == num_points]
    return tuple(by_size[0].edges) if len(by_size) == 1 else ()


def draw(image: Any, faces: Any, color: str = "bgr", edges: Sequence[tuple[int, int]] | None = None,
         boxes: bool = True, labels: bool = True, axes: bool = True) -> np.ndarray:
    """A copy of ``image`` (path, PIL image or array in ``color`` order) with ``faces`` drawn on it, BGR uint8.

    ``faces``: a list of faces (``Face``, ``TrackedFace``: anything with ``landmarks`` and ``box``) or a
    ``FrameResult``; ``edges``: landmark pairs to join (default: the scheme's, guessed from the number of
    points); ``boxes``/``labels``: also draw each box and its track id (or rank for a still); ``axes``: each face's
    head pose (``face.pose``, when it has one) as three axes from the nose bridge: x red, y green, nose blue.
    """
    from facetrack.api import to_frame

    out = to_frame(image, color)[0].copy()
    faces = list(getattr(faces, "faces", faces))
    for rank, face in enumerate(faces):
        points = np.asarray(face.landmarks, dtype=np.float64).reshape(-1, 2)
        track_id = getattr(face, "track_id", None)
        colour = COLOURS[(rank if track_id is None else int(track_id)) % len(COLOURS)]
        lines = scheme_edges(num_points=len(points)) if edges is None else tuple(edges)
        finite = np.isfinite(points).all(axis=1)
        if finite.all():
            out = draw_landmarks(out, points, lines, colour)
        elif finite.any():
            out = draw_landmarks(out, points[finite], (), colour)
        pose = getattr(face, "pose", None)
        if axes and pose is not None and finite.all() and np.isfinite(pose).all():
            out = draw_pose_axes(out, pose, points)
        box = getattr(face, "box", None)
        if box is None or not (boxes or labels):
            continue
        x0, y0, x1, y1 = (int(round(float(v))) for v in np.asarray(box).reshape(4))
        if boxes:
            cv2.rectangle(out, (x0, y0), (x1, y1), colour, 1, cv2.LINE_AA)
        if labels:
            text = str(track_id if track_id is not None else rank)
            cv2.putText(out, text, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out


def draw_pose_axes(image: np.ndarray, pose: Any, points: np.ndarray) -> np.ndarray:
    """Draw a head pose (yaw, pitch, roll degrees) as axes from the nose bridge (iBUG point 27, else the landmarks'
    centre), half the face's size long, in place; returns ``image``."""
    from facetrack.pose import pose_axes

    origin = points[27] if len(points) == 68 else points.mean(axis=0)
    size = 0.5 * float(np.ptp(points[:, 0]) + np.ptp(points[:, 1])) / 2
    ends = pose_axes(np.asarray(pose, dtype=np.float64), origin, size)
    shift = 4
    start = tuple(int(v) for v in np.round(origin * (1 << shift)))
    thickness = max(1, int(round(size / 40)))
    for end, colour in zip(ends, ((0, 0, 255), (0, 255, 0), (255, 0, 0))):
        cv2.line(image, start, tuple(int(v) for v in np.round(end * (1 << shift))), colour, thickness, cv2.LINE_AA,
                 shift)
    return image


def draw_landmarks(image: np.ndarray, points: np.ndarray, edges: Sequence[tuple[int, int]] = (),
                   color: tuple[int, int, int] = (0, 255, 0), radius: int | None = None) -> np.ndarray:
    """Draw points (and scheme edges) on a copy of a BGR image, sized to the face so small faces stay legible."""
    out = image.copy()
    pts = np.asarray(points, dtype=np.float64)
    extent = float(np.ptp(pts[:, 0]) + np.ptp(pts[:, 1])) / 2 if len(pts) else 0.0
    r = radius if radius is not None else max(1, int(round(extent / 80)))
    shift = 4  # sub-pixel drawing: coordinates * 16
    scaled = np.round(pts * (1 << shift)).astype(np.int32)
    for i, j in edges:
        cv2.line(out, tuple(scaled[i]), tuple(scaled[j]), color, max(1, r // 2), cv2.LINE_AA, shift)
    for p in scaled:
        cv2.circle(out, tuple(p), r << shift, color, -1, cv2.LINE_AA, shift)
    return out
