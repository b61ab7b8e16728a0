"""Multi-face clips with exact ground truth for every face, composed from annotated stills.

A tracker that follows one face well can still fail when a second face touches, overlaps or crosses it: its
crop then holds parts of two faces, and a landmark model may spread one shape over both. No labelled video of
that exists here, so these clips make it: two or three annotated faces, each cut out of its still with a soft
elliptical mask, move over a smooth background along planned similarity paths (translation, roll, scale), drawn
back to front. Every face's landmarks go through its own path, so the ground truth is exact; a landmark covered
by a face drawn in front of it (mask above one half) is marked not visible.

Scenarios (``SCENARIOS``): ``touching`` (two faces close in until their cut-outs touch, then part),
``overlapping`` (one face partly in front of the other, the overlap breathing), ``crossing`` (two faces swap
sides, one passing in front), ``passing_front`` (a nearer face crosses in front of a slower one and hides it),
``enter_leave`` (a second face enters from the edge, touches the first and leaves) and ``three`` (three faces in
a row, swaying into each other). All randomness comes from the seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import cv2
import numpy as np

from facetrack.data.transforms import apply_affine, box_from_landmarks

SCENARIOS = ("touching", "overlapping", "crossing", "passing_front", "enter_leave", "three")


@dataclass
class MultiFaceClip:
    """A planned clip: ground truth up front, frames rendered on demand.

    ``landmarks`` (T, F, N, 2) frame pixels; ``visible`` (T, F, N): inside the frame and not covered by a face in
    front; ``present`` (T, F): any of the face's landmarks inside the frame. Faces are listed back to front.
    """

    name: str
    scenario: str
    fps: float
    size: tuple[int, int]  # (W, H)
    landmarks: np.ndarray
    visible: np.ndarray
    present: np.ndarray
    _stills: list[np.ndarray] = field(repr=False)
    _masks: list[np.ndarray] = field(repr=False)  # float32 (h, w) soft cut-out per still
    _paths: np.ndarray = field(repr=False)  # (T, F, 2, 3) still -> frame
    _background: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.landmarks.shape[1])

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as BGR uint8 (the same pixels every time)."""
        w, h = self.size
        canvas = self._background.astype(np.float32)
        for k, (still, mask) in enumerate(zip(self._stills, self._masks)):
            m = self._paths[index, k]
            alpha = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
            face = cv2.warpAffine(still, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            canvas = canvas * (1.0 - alpha) + face.astype(np.float32) * alpha
        return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)

    def frames(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time_s, BGR frame) for every frame, rendered one at a time."""
        for i in range(len(self)):
            yield i, i / self.fps, self.render(i)


def face_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Soft elliptical cut-out (float32 in [0, 1]) around a face: the landmark box widened to take in the
    forehead and cheeks, its edge feathered over about a tenth of the face."""
    h, w = shape
    box = box_from_landmarks(landmarks)
    fw, fh = box[2] - box[0], box[3] - box[1]
    centre = (0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]) - 0.08 * fh)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))),
                (int(round(0.62 * fw)), int(round(0.68 * fh))), 0.0, 0.0, 360.0, 1.0, -1, cv2.LINE_AA)
    sigma = max(1.0, 0.05 * max(fw, fh))
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A smooth random colour field with a little texture (no faces in it)."""
    w, h = size
    coarse = rng.uniform(40, 220, size=(4, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(rng.normal(0, 12, size=(h, w, 3)).astype(np.float32), (0, 0), 2.0)
    return np.clip(smooth + texture, 0, 255)


def _wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random signal of peak ``amplitude`` (two slow sinusoids)."""
    out = sum(np.sin(2 * math.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * math.pi)) for _ in range(2))
    return amplitude * np.asarray(out) / 2.0


def _plan(scenario: str, rng: np.random.Generator, u: np.ndarray, w: int, h: int,
          side: float) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per face (back to front): centre path (T, 2), roll (T,) degrees, scale factor (T,)."""
    cx, cy = 0.5 * w, 0.5 * h
    bump = np.sin(np.pi * np.clip(u, 0, 1))  # 0 -> 1 -> 0 over the clip
    if scenario == "touching":
        gap = side * (1.35 - 0.5 * bump)  # centre distance: apart, cut-outs touching, apart
        centres = [np.stack([cx - gap / 2, np.full_like(u, cy)], 1), np.stack([cx + gap / 2, np.full_like(u, cy)], 1)]
    elif scenario == "overlapping":
        gap = side * (0.95 - 0.3 * bump)
        centres = [np.stack([cx - gap / 2, np.full_like(u, cy - 0.05 * side)], 1),
                   np.stack([cx + gap / 2, np.full_like(u, cy + 0.05 * side)], 1)]
    elif scenario == "crossing":
        x = (u - 0.5) * 1.6 * side
        centres = [np.stack([cx - x, np.full_like(u, cy - 0.12 * side)], 1),
                   np.stack([cx + x, np.full_like(u, cy + 0.12 * side)], 1)]
    elif scenario == "passing_front":
        centres = [np.stack([cx + 0.2 * side * (u - 0.5), np.full_like(u, cy)], 1),
                   np.stack([cx + (u - 0.5) * 3.2 * side, np.full_like(u, cy + 0.1 * side)], 1)]
    elif scenario == "enter_leave":
        x_in = w + 0.8 * side - (w + 0.8 * side - (cx + 0.95 * side)) * bump
        centres = [np.stack([np.full_like(u, cx), np.full_like(u, cy)], 1), np.stack([x_in, np.full_like(u, cy)], 1)]
    elif scenario == "three":
        gap = side * (1.2 - 0.3 * bump)
        centres = [np.stack([cx + k * gap, np.full_like(u, cy)], 1) for k in (-1, 0, 1)]
    else:
        raise ValueError(f"unknown multi-face scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    t = u * 3.0
    centres = [c + np.stack([_wobble(rng, t, 0.05 * side), _wobble(rng, t, 0.05 * side)], 1) for c in centres]
    rolls = [_wobble(rng, t, 10.0) for _ in centres]
    scales = [np.exp(_wobble(rng, t, 0.08)) * (1.15 if scenario == "passing_front" and k == 1 else 1.0)
              for k in range(len(centres))]
    return centres, rolls, scales


def make_multiface_clip(faces: Sequence[tuple[np.ndarray, np.ndarray]], scenario: str, seed: int = 0,
                        num_frames: int = 90, fps: float = 30.0, size: tuple[int, int] = (640, 360),
                        face_fraction: float = 0.3, name: str | None = None) -> MultiFaceClip:
    """Plan a clip of ``scenario`` from annotated stills ``faces`` ((BGR image, (N, 2) landmarks), back to front;
    as many as the scenario needs: 3 for ``three``, 2 otherwise). ``face_fraction``: landmark-box side / frame
    height."""
    needed = 3 if scenario == "three" else 2
    if len(faces) < needed:
        raise ValueError(f"scenario {scenario!r} needs {needed} faces, got {len(faces)}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    faces = list(faces)[:needed]
    rng = np.random.default_rng(seed)
    w, h = size
    side = face_fraction * h
    u = np.linspace(0.0, 1.0, num_frames)
    centres, rolls, scales = _plan(scenario, rng, u, w, h, side)
    stills, masks, paths, landmarks = [], [], [], []
    for (image, points), centre, roll, scale in zip(faces, centres, rolls, scales):
        points = np.asarray(points, dtype=np.float64)
        box = box_from_landmarks(points)
        own = 0.5 * (box[:2] + box[2:])
        zoom = side / max(box[2] - box[0], box[3] - box[1]) * scale
        path = np.empty((num_frames, 2, 3))
        for i in range(num_frames):
            a = math.radians(roll[i])
            lin = zoom[i] * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            path[i] = np.hstack([lin, (centre[i] - lin @ own)[:, None]])
        stills.append(np.ascontiguousarray(image))
        masks.append(face_mask(image.shape[:2], points))
        paths.append(path)
        landmarks.append(np.stack([apply_affine(points, m) for m in path]))
    paths_np = np.stack(paths, axis=1)
    marks = np.stack(landmarks, axis=1)  # (T, F, N, 2)
    inside = ((marks[..., 0] >= 0) & (marks[..., 0] <= w - 1) & (marks[..., 1] >= 0) & (marks[..., 1] <= h - 1))
    visible = inside.copy()
    for i in range(num_frames):
        for k in range(len(faces) - 1):  # faces drawn later cover earlier ones
            for j in range(k + 1, len(faces)):
                inv = cv2.invertAffineTransform(paths_np[i, j])
                src = apply_affine(marks[i, k], inv)
                mask = masks[j]
                xi = np.clip(np.round(src[:, 0]).astype(int), 0, mask.shape[1] - 1)
                yi = np.clip(np.round(src[:, 1]).astype(int), 0, mask.shape[0] - 1)
                within = (src[:, 0] >= 0) & (src[:, 0] < mask.shape[1]) & (src[:, 1] >= 0) & (src[:, 1] < mask.shape[0])
                visible[i, k] &= ~(within & (mask[yi, xi] > 0.5))
    return MultiFaceClip(name or f"{scenario}_{seed}", scenario, float(fps), (w, h), marks, visible, inside.any(-1),
                         stills, masks, paths_np, _background(rng, size))
