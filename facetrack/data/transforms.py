"""Face crops and training augmentation, as one 2x3 affine matrix so predictions map back exactly.

Every crop -- training or inference -- is ``warp(image, crop_matrix(...))``: the matrix maps original-image pixels
to crop pixels with OpenCV's convention (pixel centres at integer coordinates, as ``cv2.warpAffine`` uses), so
``apply_affine(crop_points, invert_affine(M))`` puts crop predictions back on the original image with no drift.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, Sequence

import cv2
import numpy as np

from facetrack.geometry import apply_affine, invert_affine
from facetrack.geometry import box_from_points as box_from_landmarks

# Luminance weights in BGR order (ITU-R BT.601), shared by the saturation and contrast jitter.
_GRAY_BGR = np.array([0.114, 0.587, 0.299])
# RGB -> YIQ; hue jitter rotates the (I, Q) chroma plane.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


class FlipScheme(Protocol):
    """What augmentation needs from a landmark scheme (``facetrack.schemes.Scheme`` satisfies it)."""

    flip_perm: Sequence[int]


class FiveScheme(Protocol):
    """What roll estimation needs from a landmark scheme: the index sets of the five reference points."""

    five: tuple[tuple[int, ...], ...] | None


class AugmentScheme(FlipScheme, FiveScheme, Protocol):
    """What ``Augmenter`` needs from a landmark scheme."""


# The five reference points of an upright face (eye centres, nose tip, mouth corners; image-left first), as face
# detectors give them: the widely used ArcFace 112x112 alignment template. Only its shape matters here.
FIVE_POINT_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                [41.5493, 92.3655], [70.7299, 92.2041]])


def five_points(points: np.ndarray, scheme: FiveScheme) -> np.ndarray | None:
    """The five reference points (..., 5, 2) of (..., N, 2) landmarks (``scheme.five``), None if it has none:
    each the mean of its index set, ignoring missing (NaN) points."""
    if scheme.five is None:
        return None
    points = np.asarray(points, dtype=np.float64)
    if np.isfinite(points).all():  # the tracker's case, twice per face and frame: one small matrix product
        return _five_means(scheme.five, points.shape[-2]) @ points
    return np.stack([np.nanmean(points[..., list(group), :], axis=-2) for group in scheme.five], axis=-2)


@lru_cache(maxsize=None)
def _five_means(five: tuple[tuple[int, ...], ...], num_points: int) -> np.ndarray:
    """(5, N) weights whose product with (..., N, 2) points gives the means of the five index sets."""
    weights = np.zeros((len(five), num_points))
    for row, group in enumerate(five):
        np.add.at(weights[row], list(group), 1.0 / len(group))  # an index listed twice counts twice, as in a mean
    weights.setflags(write=False)
    return weights


def roll_from_points5(points5: np.ndarray) -> float:
    """The face's roll in degrees: the ``rotation_deg`` of ``crop_matrix`` that turns it upright.

    The rotation of the least-squares similarity from ``FIVE_POINT_TEMPLATE`` to the points, so eyes, nose and
    mouth all vote (an eye line alone is unstable on small faces); 0 when the points are unusable.
    """
    from facetrack.data.shape_model import similarity_fit

    points5 = np.asarray(points5, dtype=np.float64).reshape(5, 2)
    if not np.isfinite(points5).all() or np.ptp(points5, axis=0).max() <= 0:
        return 0.0
    fit = similarity_fit(FIVE_POINT_TEMPLATE, points5)
    return math.degrees(math.atan2(fit[1, 0], fit[0, 0]))


def points5_residual(points5: np.ndarray) -> float:
    """How far five detector points are from any similarity of ``FIVE_POINT_TEMPLATE``: RMS residual in units of
    the fitted eye distance. Upright detections stay under about 0.2; a detector that names the points of a face
    lying sideways or upside down wrongly goes above (benchmarks/README.md, "Rolled faces")."""
    from facetrack.data.shape_model import similarity_fit

    points5 = np.asarray(points5, dtype=np.float64).reshape(5, 2)
    if not np.isfinite(points5).all() or np.ptp(points5, axis=0).max() <= 0:
        return float("inf")
    fit = similarity_fit(FIVE_POINT_TEMPLATE, points5)
    residual = FIVE_POINT_TEMPLATE @ fit[:, :2].T + fit[:, 2] - points5
    eyes = math.hypot(*(FIVE_POINT_TEMPLATE[1] - FIVE_POINT_TEMPLATE[0])) * math.sqrt(abs(np.linalg.det(fit[:, :2])))
    return float(np.sqrt(np.mean(np.sum(residual ** 2, axis=1))) / eyes)


def face_roll(points: np.ndarray, scheme: FiveScheme) -> float:
    """Roll (degrees, ``crop_matrix`` convention) of one face's (N, 2) landmarks; 0 for schemes without
    ``five`` or with missing reference points."""
    five = five_points(points, scheme)
    return 0.0 if five is None else roll_from_points5(five)


def wrap_degrees(angle: float) -> float:
    """An angle in degrees mapped to [-180, 180) (arrays too)."""
    return (angle + 180.0) % 360.0 - 180.0


def upright_box(points: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """The tight box of (N, 2) landmarks as seen in a frame turned by ``roll`` degrees, as an image-frame
    ``[x0, y0, x1, y1]`` whose centre is that box's centre: ``crop_matrix(upright_box(p, r), ..., rotation_deg=r)``
    cuts the face upright exactly as ``crop_matrix(box_from_landmarks(p))`` cuts an upright face."""
    if roll == 0.0:
        return box_from_landmarks(points)
    points = np.asarray(points, dtype=np.float64)
    finite = np.isfinite(points).all(axis=-1)
    centre = points[finite].mean(axis=0) if finite.any() else np.zeros(2)
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    turn = np.array([[c, s], [-s, c]])  # crop_matrix's linear part for this roll
    box = box_from_landmarks((points - centre) @ turn.T)
    mid, half = 0.5 * (box[:2] + box[2:]), 0.5 * (box[2:] - box[:2])
    mid = mid @ turn + centre  # turn is orthogonal: its inverse is its transpose
    return np.concatenate([mid - half, mid + half])


@dataclass(frozen=True)
class CropSmoothing:
    """How a tracker's next crop follows the landmarks it just predicted: a moving average of the crop box's
    centre and size, with weights ``centre`` and ``size`` on the new landmark box, raised towards 1 (no
    smoothing) as the move grows to ``follow`` x the box side in one frame.

    Why: cropping frame t around the raw landmarks of frame t-1 feeds every landmark's jitter back into the next
    crop (the box side is set by the extreme points, the jaw and brows, which jitter most), and a temporal
    model's window then holds features cut from crops that moved by noise. Small moves are mostly that noise
    and are averaged; large ones are real motion and are followed at once, so a fast face does not slip out of
    a lagging crop. On held-out pseudo-videos (``benchmarks/README.md``, "Tracking crop policy") this lowered the
    jitter of every model. Training crops follow the same policy (``TrackerCropPolicy``), so a temporal model
    learns on the crops it will see. ``CropSmoothing(1, 1)`` is the raw policy.
    """

    centre: float = 0.5
    size: float = 0.3
    follow: float = 0.1
    roll: float = 0.5  # weight of the new roll estimate (degrees), raised to 1 as the turn grows to roll_follow
    roll_follow: float = 10.0

    def __post_init__(self) -> None:
        if not self.roll_follow > 0.0:
            raise ValueError(f"crop smoothing roll_follow must be positive, got {self.roll_follow}")
        for name in ("centre", "size", "roll"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"crop smoothing {name} weight must be in (0, 1], got {value}")
        if not self.follow > 0.0:
            raise ValueError(f"crop smoothing follow must be positive, got {self.follow}")

    def next_box(self, crop_box: np.ndarray, extent: np.ndarray) -> np.ndarray:
        """The next crop's box ``[x0, y0, x1, y1]`` from the last crop's box and the new landmark box."""
        old, new = np.asarray(crop_box, dtype=np.float64), np.asarray(extent, dtype=np.float64)
        old_side = float(np.max(old[2:] - old[:2])) if np.isfinite(old).all() else 0.0
        if not old_side > 0:
            return new.copy()
        old_centre, new_centre = 0.5 * (old[:2] + old[2:]), 0.5 * (new[:2] + new[2:])
        moved = float(np.linalg.norm(new_centre - old_centre)) / old_side
        grown = abs(float(np.max(new[2:] - new[:2])) / old_side - 1.0)
        a = min(1.0, max(self.centre, moved / self.follow))
        b = min(1.0, max(self.size, grown / self.follow))
        centre = a * new_centre + (1 - a) * old_centre
        half = 0.5 * (b * (new[2:] - new[:2]) + (1 - b) * (old[2:] - old[:2]))
        return np.concatenate([centre - half, centre + half])

    def next_roll(self, crop_roll: float, roll: float) -> float:
        """The next crop's rotation (degrees) from the last crop's and the roll of the new landmarks: averaged
        like the centre, so landmark noise does not turn the crop, while a real turn is followed at once."""
        turn = wrap_degrees(float(roll) - float(crop_roll))
        a = min(1.0, max(self.roll, abs(turn) / self.roll_follow))
        return wrap_degrees(float(crop_roll) + a * turn)


def crop_matrix(bbox: np.ndarray | Sequence[float], out_size: int, scale: float = 1.25, rotation_deg: float = 0.0,
                shift: tuple[float, float] | np.ndarray = (0.0, 0.0), flip: bool = False) -> np.ndarray:
    """2x3 affine from image pixels to an ``out_size`` square crop of side ``scale * max(w, h)`` of ``bbox``.

    The box centre (moved by ``shift * side`` image pixels) lands on the crop centre ``(out_size - 1) / 2``: the
    crop's continuous extent ``[-0.5, out_size - 0.5]`` covers the side exactly. ``rotation_deg`` follows
    ``cv2.getRotationMatrix2D`` (positive turns the content counter-clockwise on screen); ``flip`` mirrors the
    crop horizontally, after which the caller must reorder the points with ``scheme.flip_perm``.
    """
    x0, y0, x1, y1 = (float(v) for v in np.asarray(bbox, dtype=np.float64).reshape(4))
    side = scale * max(x1 - x0, y1 - y0)
    if not (math.isfinite(side) and side > 0):
        raise ValueError(f"box {[x0, y0, x1, y1]} with scale {scale} gives no crop (side {side})")
    if out_size <= 0:
        raise ValueError(f"out_size must be positive, got {out_size}")
    sx, sy = (float(v) for v in np.asarray(shift, dtype=np.float64).reshape(2))
    cx = 0.5 * (x0 + x1) + sx * side
    cy = 0.5 * (y0 + y1) + sy * side
    zoom = out_size / side
    angle = math.radians(rotation_deg)
    a, b = zoom * math.cos(angle), zoom * math.sin(angle)
    centre = 0.5 * (out_size - 1)
    matrix = np.array([[a, b, centre - a * cx - b * cy],
                       [-b, a, centre + b * cx - a * cy]])
    if flip:
        matrix[0] = -matrix[0]
        matrix[0, 2] += out_size - 1
    return matrix


def warp(image: np.ndarray, matrix: np.ndarray, out_size: int) -> np.ndarray:
    """``cv2.warpAffine`` into an ``out_size`` square (bilinear, black outside the image).

    When the crop shrinks the image more than 2x, the region it covers is first reduced with ``INTER_AREA``
    (the matrix is composed with that exact resize), so small crops of large frames do not alias; the
    geometry is unchanged either way.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    zoom = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if zoom < 0.5:
        reduced = _reduce_region(image, matrix, out_size, zoom)
        if reduced is None:
            return np.zeros((out_size, out_size) + image.shape[2:], dtype=image.dtype)
        image, matrix = reduced
    return cv2.warpAffine(image, matrix, (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _reduce_region(image: np.ndarray, matrix: np.ndarray, out_size: int,
                   zoom: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Area-resize the part of ``image`` a crop sees to about the crop's scale; None when it sees nothing."""
    height, width = image.shape[:2]
    e = out_size - 0.5
    corners = apply_affine(np.array([[-0.5, -0.5], [e, -0.5], [-0.5, e], [e, e]]), invert_affine(matrix))
    margin = 2.0 / zoom
    x0 = max(int(math.floor(corners[:, 0].min() - margin)), 0)
    y0 = max(int(math.floor(corners[:, 1].min() - margin)), 0)
    x1 = min(int(math.ceil(corners[:, 0].max() + margin)) + 1, width)
    y1 = min(int(math.ceil(corners[:, 1].max() + margin)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    new_w = max(int(round((x1 - x0) * zoom)), 1)
    new_h = max(int(round((y1 - y0) * zoom)), 1)
    small = cv2.resize(image[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_AREA)
    # cv2.resize puts the centre of output pixel j at input (j + 0.5) / f - 0.5, with f = new / old.
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    to_small = np.array([[fx, 0.0, fx * (0.5 - x0) - 0.5], [0.0, fy, fy * (0.5 - y0) - 0.5]])
    return small, _compose(matrix, invert_affine(to_small))


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine ``outer(inner(x))``."""
    return np.concatenate([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def crop_for_inference(image: np.ndarray, bbox: np.ndarray | Sequence[float], out_size: int = 256,
                       scale: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """The model-input crop of a face box and its image->crop matrix: the training crop without randomness."""
    matrix = crop_matrix(bbox, out_size, scale)
    return warp(image, matrix, out_size), matrix


@dataclass(frozen=True)
class AugmentResult:
    """One augmented training crop.

    ``points`` are crop pixels in scheme order (already permuted when flipped); ``order`` is that permutation of
    the input points (``points == apply_affine(input_points, matrix)[order]``), for reordering per-point
    annotations such as visibility. ``occluded`` is True where a synthetic occluder covers the landmark.
    """

    crop: np.ndarray
    points: np.ndarray
    matrix: np.ndarray
    occluded: np.ndarray
    order: np.ndarray


@dataclass
class Augmenter:
    """Random crop geometry, colour, blur and synthetic occluders for training; deterministic given ``rng``.

    Geometry: crop side ``scale * u * max(w, h)`` with ``u ~ U(scale_range)``, rotation ``~ U(+-rotation)`` degrees,
    centre shift ``~ U(+-shift)`` of the side per axis, horizontal flip with ``flip_prob``. Colour: brightness,
    contrast and saturation factors ``~ U(1 +- value)``, hue rotation ``~ U(+-hue)`` turns of the YIQ chroma
    plane, applied as one 3x3 colour matrix. Blur: Gaussian with sigma ``~ U(blur_sigma)`` with ``blur_prob``.
    Occluders, with ``occlusion_prob``: one rotated rectangle or ellipse of a solid colour, smooth noise or a
    patch of the crop itself, covering up to ``occlusion_max_area`` of the face box, placed on the face.

    ``upright``: the random rotation is about the face's own roll (``face_roll``: the crop is first turned so the
    face is upright, as roll-aware inference crops are), not about the photograph's axes; the box is then the
    landmarks' upright box (a given ``bbox`` is not used). Needs a scheme with ``five`` reference points.

    ``mirror_offset``: where a dataset's annotations sit (x, y image pixels) right of / below the positions that
    mirror exactly (the shared 300-W crops: about +0.7 px, ``benchmarks/flip_consistency.py``). A flipped crop's
    labels then keep that convention instead of mirroring it, so flipped and unflipped crops agree.
    """

    out_size: int = 256
    scale: float = 1.25
    scale_range: tuple[float, float] = (0.9, 1.1)
    rotation: float = 30.0
    shift: float = 0.05
    flip_prob: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.05
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    occlusion_prob: float = 0.3
    occlusion_max_area: float = 0.3
    mirror_offset: tuple[float, float] = (0.0, 0.0)
    upright: bool = False

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not (0 < lo <= hi):
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        for name in ("flip_prob", "blur_prob", "occlusion_prob", "occlusion_max_area"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("rotation", "shift", "brightness", "contrast", "saturation", "hue"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.brightness >= 1 or self.contrast >= 1 or self.saturation >= 1:
            raise ValueError("brightness, contrast and saturation jitter must be < 1 (factors stay positive)")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")

    def __call__(self, image: np.ndarray, points: np.ndarray, bbox: np.ndarray | None, scheme: AugmentScheme,
                 rng: np.random.Generator) -> AugmentResult:
        """Augment one face: ``bbox`` None means the landmarks' tight box."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must have shape (N, 2), got {points.shape}")
        base = face_roll(points, scheme) if self.upright else 0.0
        if bbox is None or self.upright:
            bbox = upright_box(points, base)
        scale = self.scale * rng.uniform(*self.scale_range)
        rotation = base + rng.uniform(-self.rotation, self.rotation)
        shift = rng.uniform(-self.shift, self.shift, size=2)
        flip = bool(rng.random() < self.flip_prob)
        matrix = crop_matrix(bbox, self.out_size, scale, rotation, shift, flip)
        crop = warp(image, matrix, self.out_size)
        order = np.arange(len(points))
        if flip:
            order = np.asarray(scheme.flip_perm, dtype=np.int64)
            if order.shape != (len(points),):
                raise ValueError(f"scheme.flip_perm has {order.size} entries for {len(points)} points")
        crop_points = apply_affine(points, matrix)[order]
        if flip and any(self.mirror_offset):
            # labels = truth + o: the unflipped crop asks for M(truth) + L o, so the flipped one must too
            # (M_f(labels) holds L_f o, whose x is mirrored): add (L - L_f) o = (2 (L o)_x, 0).
            unflipped = crop_matrix(bbox, self.out_size, scale, rotation, shift, False)
            crop_points[:, 0] += 2.0 * float(unflipped[0, :2] @ np.asarray(self.mirror_offset, dtype=np.float64))
        occluded = np.zeros(len(points), dtype=bool)
        if rng.random() < self.occlusion_prob:
            face = box_from_landmarks(apply_affine(_box_corners(bbox), matrix))
            crop, mask = self._occlude(crop, face, rng)
            occluded = _mask_at(mask, crop_points)
        crop = self._jitter_colour(crop, rng)
        if rng.random() < self.blur_prob:
            crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(*self.blur_sigma))
        return AugmentResult(crop, crop_points, matrix, occluded, order)

    def _jitter_colour(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Hue, saturation, brightness then contrast, folded into one affine colour transform."""
        factors = rng.uniform(-1.0, 1.0, size=4) * [self.hue, self.saturation, self.brightness, self.contrast]
        turn, sat, bright, contrast = factors[0], 1 + factors[1], 1 + factors[2], 1 + factors[3]
        if not np.any(factors):
            return crop
        angle = 2 * math.pi * turn
        rot = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
        swap = np.eye(3)[::-1]  # BGR <-> RGB
        hue = swap @ np.linalg.inv(_RGB_TO_YIQ) @ rot @ _RGB_TO_YIQ @ swap
        saturation = sat * np.eye(3) + (1 - sat) * np.outer(np.ones(3), _GRAY_BGR)
        colour = bright * saturation @ hue
        mean_gray = float(_GRAY_BGR @ colour @ np.asarray(cv2.mean(crop)[:3]))
        affine = np.concatenate([contrast * colour, np.full((3, 1), (1 - contrast) * mean_gray)], axis=1)
        return cv2.transform(crop, affine)  # rounds and saturates to uint8

    def _occlude(self, crop: np.ndarray, face: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Paint one occluder over the face box ``face`` (crop pixels); returns the new crop and its mask."""
        size = self.out_size
        fx0, fy0, fx1, fy1 = np.clip(face, 0, size - 1)
        area = rng.uniform(0.2, 1.0) * self.occlusion_max_area * max(fx1 - fx0, 1.0) * max(fy1 - fy0, 1.0)
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
        centre = (rng.uniform(fx0, fx1), rng.uniform(fy0, fy1))
        angle = rng.uniform(0.0, 180.0)
        mask = np.zeros((size, size), dtype=np.uint8)
        if rng.random() < 0.5:
            cv2.ellipse(mask, ((centre[0], centre[1]), (w, h), angle), 255, thickness=-1)
        else:
            corners = cv2.boxPoints(((centre[0], centre[1]), (w, h), angle))
            cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 255)
        kind = rng.integers(3)
        if kind == 0:
            fill = np.broadcast_to(rng.integers(0, 256, size=3).astype(np.uint8), crop.shape)
        elif kind == 1:
            cells = int(rng.integers(2, 17))
            noise = rng.integers(0, 256, size=(cells, cells, 3)).astype(np.uint8)
            fill = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        else:
            fill = np.roll(crop, tuple(int(v) for v in rng.integers(size // 4, 3 * size // 4, size=2)), axis=(0, 1))
        covered = mask > 0
        out = crop.copy()
        out[covered] = fill[covered]
        return out, covered


def _box_corners(bbox: np.ndarray | Sequence[float]) -> np.ndarray:
    """The four corners (4, 2) of ``[x0, y0, x1, y1]``."""
    x0, y0, x1, y1 = np.asarray(bbox, dtype=np.float64).reshape(4)
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])


def _mask_at(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``mask`` at the nearest pixel of each point; False for NaN points and points outside the mask."""
    height, width = mask.shape
    finite = np.isfinite(points).all(axis=1)
    cols = np.round(np.where(finite, points[:, 0], -1)).astype(np.int64)
    rows = np.round(np.where(finite, points[:, 1], -1)).astype(np.int64)
    inside = finite & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    hit = np.zeros(len(points), dtype=bool)
    hit[inside] = mask[rows[inside], cols[inside]]
    return hit
