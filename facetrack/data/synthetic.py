"""Pseudo-videos with exact ground truth, made from one annotated still.

There are no labelled videos here, so temporal models are trained and checked on clips made by moving a
virtual camera over an annotated still (1DFormer pre-trains on *static* copies of 300W images; a moving,
deforming, occluded clip is a much closer stand-in for 300VW). Every frame is a known mapping of the still:

    frame pixel  <-  rigid similarity A_t^-1  <-  piecewise-affine expression warp W_t^-1  <-  still pixel

and the ground-truth landmarks go through exactly the same mapping (they are vertices of the warp's mesh),
so they are exact to interpolation accuracy. On top come occluders that enter and leave (with a per-frame,
per-landmark ``occluded`` mask), motion blur along the motion, smooth illumination changes and camera noise.

All randomness is drawn when the clip is planned (``make_pseudo_video``), from independent streams per
effect, so a seed gives the same clip, frames can be rendered in any order, and turning one effect off does
not change the others. Landmark trajectories are available without rendering a single frame.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from scipy.spatial import Delaunay

from facetrack.data.sample import to_bgr8
from facetrack.data.shape_model import ShapeModel
from facetrack.geometry import apply_affine, compose_affine, invert_affine
from facetrack.io.pts import write_pts

log = logging.getLogger(__name__)

OCCLUDER_KINDS = ("rectangle", "ellipse", "hand", "patch")
_BORDER_MODES = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}
# BGR skin tones for hand-like occluders.
_SKIN_BGR = np.array([[120, 160, 225], [95, 135, 200], [70, 110, 170], [50, 80, 130], [40, 60, 95]], np.float64)
_MIN_TRIANGLE_AREA_PX = 2.0  # smaller triangles (in frame pixels) are ignored by the fold check


@dataclass
class PseudoVideoConfig:
    """What the virtual camera, the face and the scene do. Amplitudes are peak bounds; 0 turns an effect off.

    Rigid motion and illumination are sums of ``motion_components`` sinusoids with frequencies drawn from
    the given ranges, so their second differences are bounded by ``amplitude * (2 pi f_max / fps)^2``.
    """

    num_frames: int = 90
    fps: float = 30.0
    size: tuple[int, int] = (256, 256)  # output frame (W, H)
    face_fraction: float = 0.45  # landmark-box max side / min(W, H) at scale change 0
    # rigid motion of the face in the frame
    rotation_deg: float = 10.0
    log_scale: float = 0.15
    translation: float = 0.12  # fraction of the frame's width / height
    motion_frequency_hz: tuple[float, float] = (0.05, 0.6)
    motion_components: int = 3
    keep_inside: bool = True  # shrink the translation so the landmarks stay inside the frame
    inside_margin: float = 0.02  # fraction of min(W, H)
    # non-rigid expression (needs a shape model)
    expression_sd: float = 1.0  # key shapes' spread in units of sqrt(eigenvalue)
    expression_modes: int = 8
    expression_period_s: tuple[float, float] = (0.6, 1.8)  # time between key shapes
    # occluders
    occluder_rate_hz: float = 0.3  # expected occluder events per second
    occluder_size: tuple[float, float] = (0.25, 0.6)  # fraction of the face size
    occluder_enter_s: tuple[float, float] = (0.15, 0.5)
    occluder_hold_s: tuple[float, float] = (0.2, 1.2)
    occluder_kinds: tuple[str, ...] = OCCLUDER_KINDS
    # image effects
    motion_blur: float = 0.5  # exposure as a fraction of the frame interval
    gain: float = 0.25  # peak |log gain|
    gamma: float = 0.2  # peak |log gamma|
    colour_cast: float = 0.08  # peak |log per-channel gain|
    illumination_frequency_hz: tuple[float, float] = (0.05, 0.3)
    noise_sd: float = 2.5  # Gaussian camera noise, 0-255 units
    border: str = "reflect"  # how the still is extended past its edges: reflect | replicate | constant

    def __post_init__(self) -> None:
        self.size = (int(self.size[0]), int(self.size[1]))
        if self.num_frames < 1 or self.fps <= 0 or min(self.size) < 8:
            raise ValueError(f"need num_frames >= 1, fps > 0, size >= 8x8; "
                             f"got {self.num_frames}, {self.fps}, {self.size}")
        if not 0 < self.face_fraction <= 2:
            raise ValueError(f"face_fraction must be in (0, 2], got {self.face_fraction}")
        for name in ("rotation_deg", "log_scale", "translation", "expression_sd", "occluder_rate_hz", "motion_blur",
                     "gain", "gamma", "colour_cast", "noise_sd", "inside_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("motion_frequency_hz", "expression_period_s", "occluder_size", "occluder_enter_s",
                     "occluder_hold_s", "illumination_frequency_hz"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < lo <= hi, got {(lo, hi)}")
            setattr(self, name, (float(lo), float(hi)))
        self.occluder_kinds = tuple(self.occluder_kinds)
        unknown = set(self.occluder_kinds) - set(OCCLUDER_KINDS)
        if unknown or not self.occluder_kinds:
            raise ValueError(f"occluder_kinds must be a non-empty subset of {OCCLUDER_KINDS}, "
                             f"got {self.occluder_kinds}")
        if self.border not in _BORDER_MODES:
            raise ValueError(f"border must be one of {sorted(_BORDER_MODES)}, got {self.border!r}")
        if self.motion_components < 1:
            raise ValueError("motion_components must be >= 1")

    @classmethod
    def static(cls, **overrides: object) -> PseudoVideoConfig:
        """No motion, expression, occluders or image effects: the paper's static pseudo-video."""
        off = dict(rotation_deg=0.0, log_scale=0.0, translation=0.0, expression_sd=0.0, occluder_rate_hz=0.0,
                   motion_blur=0.0, gain=0.0, gamma=0.0, colour_cast=0.0, noise_sd=0.0)
        off.update(overrides)
        return cls(**off)  # type: ignore[arg-type]


@dataclass
class PseudoFrame:
    """One rendered frame and its exact ground truth (frame pixels, 0-based)."""

    index: int
    time_s: float
    image: np.ndarray  # BGR uint8 (H, W, 3)
    landmarks: np.ndarray  # (N, 2)
    occluded: np.ndarray  # (N,) bool


@dataclass
class _Occluder:
    start: int
    enter: int
    hold: int
    leave: int
    alpha: np.ndarray  # (h, w) float32 in [0, 1]
    texture: np.ndarray  # (h, w, 3) float32 BGR
    path: np.ndarray  # (T, 2) top-left corner (integer) per frame; only [start, end) is used
    kind: str

    @property
    def end(self) -> int:
        return self.start + self.enter + self.hold + self.leave


@dataclass
class PseudoVideo:
    """A planned clip: ground truth for every frame up front, images rendered lazily on iteration or ``frame(i)``.

    ``rigid[t]`` maps still pixels to frame-t pixels (the similarity part of the motion);
    ``expression_scale`` is the factor the sampled expressions were scaled by to keep the warp fold-free.
    """

    config: PseudoVideoConfig
    seed: int
    landmarks: np.ndarray  # (T, N, 2) frame pixels
    occluded: np.ndarray  # (T, N) bool
    rigid: np.ndarray  # (T, 2, 3) still -> frame
    expression_scale: float
    _work: np.ndarray = field(repr=False)  # the still, possibly pre-shrunk to the working resolution
    _to_work: np.ndarray = field(repr=False)  # 2x3 still -> working image
    _mesh_src: np.ndarray | None = field(repr=False)  # (V, 2) mesh vertices in the still
    _mesh_def: np.ndarray | None = field(repr=False)  # (T, V, 2) deformed vertices in the still
    _triangles: np.ndarray | None = field(repr=False)  # (K, 3)
    _occluders: list[_Occluder] = field(repr=False)
    _blur: np.ndarray = field(repr=False)  # (T, 2) blur vector in pixels (length and direction)
    _illumination: np.ndarray = field(repr=False)  # (T, 5): log gain, log gamma, log cast b, g, r
    _noise_bank: np.ndarray | None = field(default=None, repr=False)

    @property
    def fps(self) -> float:
        return self.config.fps

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of every frame."""
        return self.config.size

    @property
    def visible(self) -> np.ndarray:
        """(T, N) bool: not occluded and inside the frame."""
        w, h = self.size
        x, y = self.landmarks[..., 0], self.landmarks[..., 1]
        inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
        return inside & ~self.occluded

    def __len__(self) -> int:
        return int(self.landmarks.shape[0])

    def __iter__(self) -> Iterator[PseudoFrame]:
        for i in range(len(self)):
            yield self.frame(i)

    def frame(self, index: int) -> PseudoFrame:
        """Render frame ``index`` (any order; the same pixels every time)."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range for a clip of {len(self)} frames")
        return PseudoFrame(index, index / self.fps, self.render(index), self.landmarks[index].copy(),
                           self.occluded[index].copy())

    def render(self, index: int) -> np.ndarray:
        """The BGR uint8 image of frame ``index``."""
        cfg = self.config
        image = self._warp(index)
        for occ in self._occluders:
            if occ.start <= index < occ.end:
                _composite(image, occ.alpha, occ.texture, occ.path[index])
        bx, by = self._blur[index]
        if np.hypot(bx, by) >= 1.0:
            image = cv2.filter2D(image, -1, _line_kernel(bx, by), borderType=cv2.BORDER_REFLECT_101)
        if np.any(self._illumination[index] != 0):
            image = cv2.LUT(image, _illumination_lut(self._illumination[index]))
        if cfg.noise_sd > 0:
            image = self._add_noise(image, index)
        return image

    def _warp(self, index: int) -> np.ndarray:
        cfg = self.config
        w, h = cfg.size
        border = cv2.BORDER_CONSTANT  # the still was padded by the configured border when planned
        work_to_frame = compose_affine(self.rigid[index], invert_affine(self._to_work))
        image = cv2.warpAffine(self._work, work_to_frame, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
        if self._triangles is None or self._mesh_def is None or self._mesh_src is None:
            return image
        # Piecewise-affine part: inside the mesh, each frame pixel maps back through its own triangle.
        frame_vertices = apply_affine(self._mesh_def[index], self.rigid[index])
        work_vertices = apply_affine(self._mesh_src, self._to_work)
        x0 = max(int(np.floor(frame_vertices[:, 0].min())) - 1, 0)
        y0 = max(int(np.floor(frame_vertices[:, 1].min())) - 1, 0)
        x1 = min(int(np.ceil(frame_vertices[:, 0].max())) + 2, w)
        y1 = min(int(np.ceil(frame_vertices[:, 1].max())) + 2, h)
        if x1 <= x0 or y1 <= y0:
            return image
        tri = self._triangles
        dst = frame_vertices[tri] - (x0, y0)  # (K, 3, 2) in ROI pixels
        src = work_vertices[tri]
        lhs = np.concatenate([dst, np.ones((len(tri), 3, 1))], axis=2)  # rows [x y 1]
        det = np.linalg.det(lhs)
        ok = np.abs(det) > 1e-6
        lhs[~ok] = np.eye(3)
        coef = np.linalg.solve(lhs, src)  # (K, 3, 2): [x y 1] @ coef = source point
        rigid_back = invert_affine(work_to_frame)
        fallback = np.array([[rigid_back[0, 0], rigid_back[1, 0]], [rigid_back[0, 1], rigid_back[1, 1]],
                             [rigid_back[0, 2] + rigid_back[0, 0] * x0 + rigid_back[0, 1] * y0,
                              rigid_back[1, 2] + rigid_back[1, 0] * x0 + rigid_back[1, 1] * y0]])
        # (6, K+1): columns are triangles (label K = rigid); rows c_xx, c_xy, c_yx, c_yy, c_1x, c_1y
        table = np.ascontiguousarray(np.concatenate([coef, fallback[None]], axis=0).reshape(-1, 6).T, np.float32)
        labels = np.full((y1 - y0, x1 - x0), len(tri), np.uint16)
        fixed = np.round(dst * 16).astype(np.int32)
        for k in np.flatnonzero(ok):
            cv2.fillConvexPoly(labels, fixed[k], int(k), lineType=cv2.LINE_8, shift=4)
        xs = np.arange(x1 - x0, dtype=np.float32)[None, :]
        ys = np.arange(y1 - y0, dtype=np.float32)[:, None]
        c = table[:, labels]  # (6, h, w): each pixel's triangle's affine
        map_x = c[0] * xs + c[2] * ys + c[4]
        map_y = c[1] * xs + c[3] * ys + c[5]
        image[y0:y1, x0:x1] = cv2.remap(self._work, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)
        return image

    def _add_noise(self, image: np.ndarray, index: int) -> np.ndarray:
        # A bank of noise drawn once, read at a random offset per frame: independent-looking per frame at a
        # fraction of the cost of drawing H*W*3 normals each time.
        h, w = image.shape[:2]
        pad = 61
        if self._noise_bank is None:
            bank_rng = np.random.default_rng((self.seed, 1009))
            bank = bank_rng.standard_normal((h + pad, w + pad, 3), dtype=np.float32) * self.config.noise_sd
            self._noise_bank = np.clip(np.round(bank), -127, 127).astype(np.int16)
        rng = np.random.default_rng((self.seed, 1013, index))
        oy, ox = rng.integers(0, pad + 1, size=2)
        noise = self._noise_bank[oy:oy + h, ox:ox + w]
        if rng.random() < 0.5:
            noise = noise[::-1]
        return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_pseudo_video(
    image: np.ndarray,
    landmarks: np.ndarray,
    config: PseudoVideoConfig | None = None,
    seed: int = 0,
    shape_model: ShapeModel | None = None,
) -> PseudoVideo:
    """Plan a clip from a still (BGR uint8) and its (N, 2) landmarks; frames render lazily.

    Without a ``shape_model`` (or with ``expression_sd=0``) the face moves rigidly. The shape model must
    have been fitted on training identities only when the clip is used to evaluate.
    """
    cfg = config or PseudoVideoConfig()
    image = to_bgr8(np.asarray(image))
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError(f"landmarks must have shape (N>=3, 2), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("landmarks contain non-finite coordinates")
    seeds = np.random.SeedSequence(int(seed)).spawn(5)
    rng_expr, rng_motion, rng_occ, rng_light = (np.random.default_rng(s) for s in seeds[:4])
    t_count = cfg.num_frames
    times = np.arange(t_count) / cfg.fps
    w, h = cfg.size

    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2
    face_size = float(max(hi - lo))
    if face_size <= 0:
        raise ValueError("landmarks span a single point")
    base_scale = cfg.face_fraction * min(w, h) / face_size

    # Expression: displacements of the landmarks in still pixels, (T, N, 2).
    displacement = np.zeros((t_count, len(points), 2))
    mesh_src = triangles = None
    expression_scale = 0.0
    if shape_model is not None and cfg.expression_sd > 0 and cfg.expression_modes > 0:
        if shape_model.num_points != len(points):
            raise ValueError(f"shape model has {shape_model.num_points} points, landmarks have {len(points)}")
        mesh_src, triangles = _mesh(points, centre, face_size)
        displacement = _expression_displacements(shape_model, points, times, cfg, rng_expr,
                                                  lambda d: _fold_free_scale(mesh_src, triangles, d, base_scale))
        expression_scale = _fold_free_scale(mesh_src, triangles, displacement, base_scale)
        displacement *= expression_scale
        if expression_scale < 1.0:
            log.debug("expression scaled by %.3f to keep the warp fold-free", expression_scale)
    elif cfg.expression_sd > 0 and shape_model is None:
        log.debug("no shape model: the pseudo-video has rigid motion only")
    deformed = points + displacement

    rigid = _rigid_trajectory(deformed, centre, base_scale, times, cfg, rng_motion)
    frame_points = np.einsum("tij,tnj->tni", rigid[:, :, :2], deformed) + rigid[:, None, :, 2]
    mesh_def = None
    if triangles is not None and mesh_src is not None and expression_scale > 0:
        ring = mesh_src[len(points):]
        mesh_def = np.concatenate([deformed, np.broadcast_to(ring, (t_count, *ring.shape))], axis=1)
        frame_points = _points_through_mesh(points, mesh_src, triangles, mesh_def, rigid, frame_points)
    else:
        triangles = mesh_src = None

    # Pre-shrink a large still so the per-frame warp never minifies by much (no aliasing).
    min_scale = base_scale * np.exp(-cfg.log_scale)
    work, to_work = image, np.hstack([np.eye(2), np.zeros((2, 1))])
    if min_scale < 0.75:
        new_w = max(8, int(round(image.shape[1] * min_scale)))
        new_h = max(8, int(round(image.shape[0] * min_scale)))
        work = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        rx, ry = new_w / image.shape[1], new_h / image.shape[0]
        to_work = np.array([[rx, 0.0, 0.5 * rx - 0.5], [0.0, ry, 0.5 * ry - 0.5]])

    face_box_work = apply_affine(np.array([lo, hi]), to_work)
    occluders, occluded = _plan_occluders(cfg, frame_points, base_scale * face_size, work, face_box_work, rng_occ)
    work, to_work = _pad_for_view(work, to_work, rigid, cfg)
    blur = _blur_vectors(frame_points, cfg.motion_blur)
    light = np.stack([_smooth_signal(rng_light, times, a, cfg.illumination_frequency_hz, cfg.motion_components)
                      for a in (cfg.gain, cfg.gamma, cfg.colour_cast, cfg.colour_cast, cfg.colour_cast)], axis=1)
    return PseudoVideo(cfg, int(seed), frame_points, occluded, rigid, float(expression_scale), work, to_work,
                       mesh_src, mesh_def, triangles, occluders, blur, light)


def expression_variant(image: np.ndarray, landmarks: np.ndarray, shape_model: ShapeModel, seed: int,
                       expression_sd: float = 1.0, expression_modes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The still with its face warped to a random expression of ``shape_model`` (piecewise affine over the
    landmark mesh, fold-free), and its exact landmarks: (BGR image of the same size, (N, 2) points).

    Why: a training still shows one expression; this gives the face new mouth, brow and jaw shapes with exact
    labels (a shape augmentation). It is one frame of a static pseudo-video (no motion, occluders or image
    effects) whose expression reaches a random key shape; the face keeps its scale (its landmark box is centred
    in the picture, so the whole image may shift a little).
    """
    points = np.asarray(landmarks, dtype=np.float64)
    h, w = image.shape[:2]
    extent = float(max(points.max(axis=0) - points.min(axis=0)))
    if extent <= 0:
        raise ValueError("landmarks span a single point")
    config = PseudoVideoConfig.static(num_frames=2, fps=1.0, size=(w, h), face_fraction=extent / min(w, h),
                                      expression_sd=expression_sd, expression_modes=expression_modes,
                                      expression_period_s=(1.0, 1.0), keep_inside=False)
    video = make_pseudo_video(image, points, config, seed=seed, shape_model=shape_model)
    return video.render(1), video.landmarks[1].copy()


def write_clip(video: PseudoVideo, folder: str | Path, mp4: bool = False, jpeg_quality: int = 95) -> Path:
    """Write the 300VW extracted-frame layout (``imgs/000001.jpg``, ``annot/000001.pts``, 1-based numbers).

    Also writes ``pseudo_video.json`` (config, seed, fps, occlusion per frame), and ``vid.mp4`` when ``mp4``.
    Frames are rendered one at a time, so long clips never sit in memory.
    """
    folder = Path(folder)
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    (folder / "annot").mkdir(parents=True, exist_ok=True)
    writer = None
    if mp4:
        writer = cv2.VideoWriter(str(folder / "vid.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), video.fps, video.size)
        if not writer.isOpened():
            raise RuntimeError(f"{folder / 'vid.mp4'}: OpenCV cannot open an mp4v video writer")
    try:
        for frame in video:
            name = f"{frame.index + 1:06d}"
            path = folder / "imgs" / f"{name}.jpg"
            if not cv2.imwrite(str(path), frame.image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
                raise RuntimeError(f"{path}: OpenCV could not write the frame")
            write_pts(folder / "annot" / f"{name}.pts", frame.landmarks)
            if writer is not None:
                writer.write(frame.image)
    finally:
        if writer is not None:
            writer.release()
    meta = {"generator": "facetrack.data.synthetic", "seed": video.seed, "fps": video.fps,
            "size": list(video.size), "num_frames": len(video), "expression_scale": video.expression_scale,
            "config": asdict(video.config), "occluded": video.occluded.astype(int).tolist()}
    (folder / "pseudo_video.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def astronaut_still() -> np.ndarray:
    """scikit-image's ``astronaut`` photo (public domain, NASA) as BGR uint8: the demo's input, no download."""
    try:
        from skimage import data
    except ImportError:
        raise ModuleNotFoundError(
            "the demo still comes from scikit-image, which is not installed: pip install scikit-image"
        ) from None
    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def demo_clip(
    landmarks: np.ndarray,
    config: PseudoVideoConfig | None = None,
    seed: int = 0,
    shape_model: ShapeModel | None = None,
    image: np.ndarray | None = None,
) -> PseudoVideo:
    """A clip of the astronaut (or ``image``) whose ground truth is ``landmarks`` from any source.

    The still has no annotation, so the demo takes e.g. a model's prediction on it as the truth: the
    clip then measures how well tracking reproduces that prediction under motion, occlusion and blur.
    """
    still = astronaut_still() if image is None else image
    return make_pseudo_video(still, landmarks, config, seed, shape_model)


# ----------------------------------------------------------------------------------------------- planning


def _smooth_signal(rng: np.random.Generator, times: np.ndarray, amplitude: float,
                   freq_hz: tuple[float, float], components: int) -> np.ndarray:
    """Sum of sinusoids with weights summing to 1, times ``amplitude``: smooth and bounded by it."""
    weights = rng.dirichlet(np.ones(components))
    freqs = rng.uniform(freq_hz[0], freq_hz[1], components)
    phases = rng.uniform(0, 2 * np.pi, components)
    signal = np.sin(2 * np.pi * freqs[None, :] * times[:, None] + phases[None, :]) @ weights
    return amplitude * signal


def _rigid_trajectory(deformed: np.ndarray, centre: np.ndarray, base_scale: float, times: np.ndarray,
                      cfg: PseudoVideoConfig, rng: np.random.Generator) -> np.ndarray:
    w, h = cfg.size
    band, parts = cfg.motion_frequency_hz, cfg.motion_components
    theta = np.deg2rad(_smooth_signal(rng, times, cfg.rotation_deg, band, parts))
    log_s = _smooth_signal(rng, times, cfg.log_scale, band, parts)
    tx = _smooth_signal(rng, times, cfg.translation * w, band, parts)
    ty = _smooth_signal(rng, times, cfg.translation * h, band, parts)
    scale = base_scale * np.exp(log_s)
    cos, sin = scale * np.cos(theta), scale * np.sin(theta)
    linear = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # (T, 2, 2)
    frame_centre = np.array([(w - 1) / 2, (h - 1) / 2])
    placed = np.einsum("tij,tnj->tni", linear, deformed - centre) + frame_centre  # without translation
    if cfg.keep_inside:
        margin = cfg.inside_margin * min(w, h)
        tx = tx * _inside_factor(tx, placed[..., 0], margin, w - 1 - margin)
        ty = ty * _inside_factor(ty, placed[..., 1], margin, h - 1 - margin)
    offset = frame_centre + np.stack([tx, ty], -1) - np.einsum("tij,j->ti", linear, centre)
    return np.concatenate([linear, offset[:, :, None]], axis=2)


def _inside_factor(shift: np.ndarray, coords: np.ndarray, lo: float, hi: float) -> float:
    """Largest f in [0, 1] with lo <= coords + f * shift <= hi in every frame (0 if the face cannot fit)."""
    room_low = lo - coords.min(axis=1)  # shift must be >= this
    room_high = hi - coords.max(axis=1)  # and <= this
    factor = 1.0
    for s, a, b in zip(shift, room_low, room_high):
        if s > 0 and s > b:
            factor = min(factor, max(b, 0.0) / s)
        elif s < 0 and s < a:
            factor = min(factor, max(-a, 0.0) / -s)
    return factor


def _expression_displacements(model: ShapeModel, points: np.ndarray, times: np.ndarray, cfg: PseudoVideoConfig,
                              rng: np.random.Generator, fold_free: Callable[[np.ndarray], float]) -> np.ndarray:
    """Smoothstep between random key shapes of the model, starting at the still's own expression.

    Each key shape is first shrunk towards the still's shape until the warp to it is fold-free
    (``fold_free`` gives the factor for (1, N, 2) displacements), so one extreme key does not damp the clip.
    """
    _, to_image = model.project(points)
    linear = to_image[:, :2].T
    duration = times[-1] if len(times) > 1 else 0.0
    key_times = [0.0]
    while key_times[-1] <= duration:
        key_times.append(key_times[-1] + rng.uniform(*cfg.expression_period_s))
    keys = model.sample_coefficients(rng, len(key_times), cfg.expression_sd, cfg.expression_modes)
    keys[0] = 0.0
    for k in range(1, len(keys)):
        keys[k] *= fold_free(((keys[k] @ model.modes).reshape(1, model.num_points, 2)) @ linear)
    seg = np.clip(np.searchsorted(key_times, times, side="right") - 1, 0, len(key_times) - 2)
    u = (times - np.asarray(key_times)[seg]) / (np.asarray(key_times)[seg + 1] - np.asarray(key_times)[seg])
    u = u * u * (3 - 2 * u)
    coeffs = keys[seg] * (1 - u)[:, None] + keys[seg + 1] * u[:, None]
    model_disp = (coeffs @ model.modes).reshape(len(times), model.num_points, 2)
    return model_disp @ linear


def _mesh(points: np.ndarray, centre: np.ndarray, face_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks plus a fixed ring around the face, Delaunay-triangulated; outside the ring the warp is rigid."""
    half = 0.5 * face_size * 1.9
    ring = []
    for s in np.linspace(-1, 1, 5)[:-1]:
        ring += [(s, -1.0), (1.0, s), (-s, 1.0), (-1.0, -s)]
    vertices = np.concatenate([points, centre + half * np.asarray(ring)], axis=0)
    tri = Delaunay(vertices, qhull_options="QJ Pp").simplices
    return vertices, np.ascontiguousarray(tri, dtype=np.int64)


def _signed_areas(vertices: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = vertices[..., tri[:, 0], :], vertices[..., tri[:, 1], :], vertices[..., tri[:, 2], :]
    return 0.5 * ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))


def _fold_free_scale(mesh_src: np.ndarray, tri: np.ndarray, displacement: np.ndarray, base_scale: float) -> float:
    """Largest of 1, 0.8, 0.64, ... that keeps every non-tiny triangle from flipping or collapsing (< 10%).

    One factor for the whole clip keeps the expression trajectory smooth; 0 after 12 tries (rigid only).
    """
    src_area = _signed_areas(mesh_src, tri)
    checked = np.abs(src_area) * base_scale**2 >= _MIN_TRIANGLE_AREA_PX
    pad = np.zeros((displacement.shape[0], len(mesh_src) - displacement.shape[1], 2))
    full = np.concatenate([displacement, pad], axis=1)
    factor = 1.0
    for _ in range(12):
        ratio = _signed_areas(mesh_src + factor * full, tri)[:, checked] / src_area[checked]
        if np.all(ratio > 0.1):
            return factor
        factor *= 0.8
    return 0.0


def _points_through_mesh(points: np.ndarray, mesh_src: np.ndarray, tri: np.ndarray, mesh_def: np.ndarray,
                         rigid: np.ndarray, frame_points: np.ndarray) -> np.ndarray:
    """Landmarks that are not mesh vertices (exact duplicates dropped by Qhull) follow their triangle."""
    used = np.zeros(len(mesh_src), bool)
    used[tri.ravel()] = True
    missing = np.flatnonzero(~used[: len(points)])
    if len(missing) == 0:
        return frame_points
    delaunay = Delaunay(mesh_src, qhull_options="QJ Pp")
    simplex = delaunay.find_simplex(points[missing])
    for j, s in zip(missing, simplex):
        corners = tri[s]
        bary = np.linalg.solve(np.vstack([mesh_src[corners].T, np.ones(3)]), np.append(points[j], 1.0))
        moved = np.einsum("k,tkd->td", bary, mesh_def[:, corners])
        frame_points[:, j] = np.einsum("tij,tj->ti", rigid[:, :, :2], moved) + rigid[:, :, 2]
    return frame_points


def _plan_occluders(cfg: PseudoVideoConfig, frame_points: np.ndarray, face_px: float, work: np.ndarray,
                    face_box_work: np.ndarray, rng: np.random.Generator) -> tuple[list[_Occluder], np.ndarray]:
    t_count, n = frame_points.shape[:2]
    occluded = np.zeros((t_count, n), bool)
    count = rng.poisson(cfg.occluder_rate_hz * t_count / cfg.fps) if cfg.occluder_rate_hz > 0 else 0
    w, h = cfg.size
    occluders = []
    for _ in range(count):
        kind = str(cfg.occluder_kinds[rng.integers(len(cfg.occluder_kinds))])
        size = max(4, int(round(face_px * rng.uniform(*cfg.occluder_size))))
        alpha, texture = _occluder_template(kind, size, work, face_box_work, rng)
        enter = max(1, int(round(rng.uniform(*cfg.occluder_enter_s) * cfg.fps)))
        hold = max(1, int(round(rng.uniform(*cfg.occluder_hold_s) * cfg.fps)))
        leave = max(1, int(round(rng.uniform(*cfg.occluder_enter_s) * cfg.fps)))
        start = int(rng.integers(-(enter + hold), t_count))  # may already be on the face at frame 0
        arrive = int(np.clip(start + enter, 0, t_count - 1))
        target = frame_points[arrive, rng.integers(n)] + rng.normal(0, 0.1 * face_px, 2)
        half = np.array(alpha.shape[::-1]) / 2
        begin = _off_frame(target, rng.uniform(0, 2 * np.pi), half, w, h)
        finish = _off_frame(target, rng.uniform(0, 2 * np.pi), half, w, h)
        frames = np.arange(t_count)
        u_in = _smoothstep((frames - start) / enter)
        u_out = _smoothstep((frames - start - enter - hold) / leave)
        centre = begin + (target - begin) * u_in[:, None] + (finish - target) * u_out[:, None]
        path = np.round(centre - half).astype(np.int64)
        occ = _Occluder(start, enter, hold, leave, alpha, texture, path, kind)
        active = (frames >= start) & (frames < occ.end)
        for t in np.flatnonzero(active):
            q = np.round(frame_points[t]).astype(np.int64) - path[t]
            inside = (q[:, 0] >= 0) & (q[:, 1] >= 0) & (q[:, 0] < alpha.shape[1]) & (q[:, 1] < alpha.shape[0])
            hit = np.zeros(n, bool)
            hit[inside] = alpha[q[inside, 1], q[inside, 0]] >= 0.5
            occluded[t] |= hit
        occluders.append(occ)
    return occluders, occluded


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _off_frame(point: np.ndarray, angle: float, half: np.ndarray, w: int, h: int) -> np.ndarray:
    """Where an occluder centred at ``point`` ends up just outside the frame when moved along ``angle``."""
    d = np.array([np.cos(angle), np.sin(angle)])
    reach = []
    for axis, limit in ((0, w), (1, h)):
        if d[axis] > 1e-9:
            reach.append((limit - 1 + half[axis] - point[axis]) / d[axis])
        elif d[axis] < -1e-9:
            reach.append((point[axis] + half[axis]) / -d[axis])
    return point + d * (min(reach) + 2.0)


def _occluder_template(kind: str, size: int, work: np.ndarray, face_box: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Alpha (anti-aliased) and BGR texture of one occluder, ``size`` pixels across."""
    side = size + 4
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) - (side - 1) / 2
    angle = rng.uniform(0, np.pi)
    mask = np.zeros((side, side), bool)
    r = size / 2
    if kind == "rectangle" or (kind == "patch" and rng.random() < 0.5):
        aspect = rng.uniform(0.35, 1.0)
        mask = _rect(xx, yy, 0, 0, r * 0.7, r * 0.7 * aspect, angle)
    elif kind in ("ellipse", "patch"):
        mask = _ellipse(xx, yy, 0, 0, r, r * rng.uniform(0.45, 1.0), angle)
    else:  # hand: palm, four fingers and a thumb, in hand coordinates (u across, v along the fingers)
        c, s = np.cos(angle), np.sin(angle)
        unit = 0.55 * r

        def part(u: float, v: float, half_width: float, half_length: float, tilt: float = 0.0) -> np.ndarray:
            cx, cy = (u * c - v * s) * unit, (u * s + v * c) * unit
            return _ellipse(xx, yy, cx, cy, half_width * unit, half_length * unit, angle + tilt)

        mask = part(0.0, 0.45, 0.75, 0.85)
        for u, length in zip((-0.5, -0.17, 0.17, 0.5), (0.55, 0.68, 0.65, 0.5)):
            mask |= part(u, -0.2 - length, 0.15, length, 0.08 * u)
        mask |= part(-0.85, 0.45, 0.17, 0.5, -0.6)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.6)
    if kind == "patch":
        texture = _patch_from(work, face_box, side, rng)
    else:
        colour = _SKIN_BGR[rng.integers(len(_SKIN_BGR))] if kind == "hand" else rng.uniform(20, 235, 3)
        g = rng.uniform(0, 2 * np.pi)
        shade = 0.8 + 0.4 * ((xx * np.cos(g) + yy * np.sin(g)) / side + 0.5)
        grain = rng.normal(0, 5, (side, side, 1))
        texture = np.clip(colour[None, None, :] * shade[:, :, None] + grain, 0, 255)
    return alpha, texture.astype(np.float32)


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _rect(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (np.abs(u) <= a) & (np.abs(v) <= b)


def _patch_from(work: np.ndarray, face_box: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A piece of the still away from the face (the least overlapping of a few random tries)."""
    h, w = work.shape[:2]
    crop = int(min(side, h, w))
    best, best_overlap = (0, 0), np.inf
    (fx0, fy0), (fx1, fy1) = face_box
    for _ in range(12):
        x = int(rng.integers(0, w - crop + 1))
        y = int(rng.integers(0, h - crop + 1))
        ox = max(0.0, min(x + crop, fx1) - max(x, fx0))
        oy = max(0.0, min(y + crop, fy1) - max(y, fy0))
        if ox * oy < best_overlap:
            best, best_overlap = (x, y), ox * oy
    x, y = best
    patch = work[y:y + crop, x:x + crop]
    if crop != side:
        patch = cv2.resize(patch, (side, side), interpolation=cv2.INTER_LINEAR)
    return patch.astype(np.float32)


def _blur_vectors(frame_points: np.ndarray, exposure: float) -> np.ndarray:
    """Blur per frame: the mean landmark velocity (central difference) times the exposure, in pixels."""
    centre = frame_points.mean(axis=1)
    if len(centre) < 2 or exposure <= 0:
        return np.zeros((len(centre), 2))
    return np.gradient(centre, axis=0) * exposure


def _pad_for_view(work: np.ndarray, to_work: np.ndarray, rigid: np.ndarray,
                  cfg: PseudoVideoConfig) -> tuple[np.ndarray, np.ndarray]:
    """Extend the still once, by the configured border, as far as any frame looks past its edges.

    Frames are then warped with a constant border, which OpenCV does several times faster than reflection.
    """
    if cfg.border == "constant":
        return work, to_work
    w, h = cfg.size
    corners = np.array([[-1.0, -1.0], [w, -1.0], [-1.0, h], [w, h]])
    seen = np.concatenate([apply_affine(corners, invert_affine(compose_affine(a, invert_affine(to_work)))) for a in rigid])
    cap = 2 * max(work.shape[:2])
    lo, hi = seen.min(axis=0), seen.max(axis=0)
    left, top = (int(np.clip(np.ceil(-v) + 2, 0, cap)) for v in lo)
    right = int(np.clip(np.ceil(hi[0] - (work.shape[1] - 1)) + 2, 0, cap))
    bottom = int(np.clip(np.ceil(hi[1] - (work.shape[0] - 1)) + 2, 0, cap))
    if left == top == right == bottom == 0:
        return work, to_work
    padded = cv2.copyMakeBorder(work, top, bottom, left, right, _BORDER_MODES[cfg.border])
    shifted = to_work.copy()
    shifted[:, 2] += (left, top)
    return padded, shifted


# ------------------------------------------------------------------------------------------------ render


def _composite(image: np.ndarray, alpha: np.ndarray, texture: np.ndarray, top_left: np.ndarray) -> None:
    h, w = image.shape[:2]
    x, y = int(top_left[0]), int(top_left[1])
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + alpha.shape[1], w), min(y + alpha.shape[0], h)
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = image[y0:y1, x0:x1].astype(np.float32)
    blended = region * (1 - a) + texture[y0 - y:y1 - y, x0 - x:x1 - x] * a + 0.5
    image[y0:y1, x0:x1] = np.clip(blended, 0, 255).astype(np.uint8)


def _line_kernel(bx: float, by: float) -> np.ndarray:
    """A normalised, centred line of length |(bx, by)| along it: symmetric, so it moves no centroid."""
    length = float(np.hypot(bx, by))
    half = int(np.ceil(length / 2)) + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    steps = max(2, int(np.ceil(length * 4)))
    for s in np.linspace(-0.5, 0.5, steps):
        x, y = half + s * bx, half + s * by
        ix, iy = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - ix, y - iy
        kernel[iy, ix] += (1 - fx) * (1 - fy)
        kernel[iy, ix + 1] += fx * (1 - fy)
        kernel[iy + 1, ix] += (1 - fx) * fy
        kernel[iy + 1, ix + 1] += fx * fy
    return kernel / kernel.sum()


def _illumination_lut(params: np.ndarray) -> np.ndarray:
    """(256, 1, 3) LUT: out = 255 * gain * cast_c * (in / 255) ** gamma, per BGR channel."""
    log_gain, log_gamma = params[0], params[1]
    x = np.arange(256, dtype=np.float64) / 255.0
    curve = x ** np.exp(log_gamma)
    lut = np.stack([255.0 * np.exp(log_gain + params[2 + c]) * curve for c in range(3)], axis=1)
    return np.clip(np.round(lut), 0, 255).astype(np.uint8).reshape(256, 1, 3)
