"""Training clips for temporal models: T consecutive face crops cut the way the tracker cuts them.

A temporal model never sees centred crops at run time: the tracker cuts frame t from a box around its own
landmarks of frame t-1, so the face sits off-centre by the motion between frames plus the tracker's error.
Training clips reproduce that policy (:class:`TrackerCropPolicy`): frame 0 from a jittered ground-truth box
(a detector's box), frame t from the box of frame t-1's ground truth plus a smooth random error (an AR(1)
offset and scale drift, plus per-landmark noise).

Clips come from a :class:`ClipSource`: pseudo-videos made on the fly from annotated stills
(:class:`PseudoVideoSource`, the shape model fitted on the *training* identities only) or annotated videos
(:class:`VideoClipSource`, e.g. ``load_300vw(root, "train")`` for fine-tuning). :class:`ClipDataset` turns
either into tensors with the model's codec targets per frame.

The feature cache (:func:`build_feature_cache`, :class:`FeatureClipDataset`) runs a *frozen* encoder once
over a fixed set of clips and stores its per-landmark 1D features (s^x, s^y) per frame as ``.npy`` files
(memory-mapped, never pickled), so temporal heads and their ablation variants train in minutes on a CPU
("frozen-encoder training": the encoder is not fine-tuned, only what comes after it).
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from facetrack.data.sample import FaceSample
from facetrack.data.transforms import CropSmoothing, apply_affine, box_from_landmarks, crop_matrix, warp
from facetrack.errors import DataError, read_json

log = logging.getLogger(__name__)

EncodeTargets = Callable[[np.ndarray, "np.ndarray | None"], dict[str, np.ndarray]]
CACHE_FORMAT = "facetrack.feature_cache/1"


# ---------------------------------------------------------------------------------------------- raw clips


@dataclass
class RawClip:
    """T frames (BGR uint8) with ground truth in frame pixels; ``occluded`` is None when unknown."""

    images: list[np.ndarray]
    landmarks: np.ndarray  # (T, N, 2)
    occluded: np.ndarray | None  # (T, N) bool
    name: str = ""

    @property
    def visible(self) -> np.ndarray:
        """(T, N): finite and inside the frame (occluded points still have exact positions and are trained)."""
        t_len, n = self.landmarks.shape[:2]
        out = np.isfinite(self.landmarks).all(axis=-1)
        for t, image in enumerate(self.images):
            h, w = image.shape[:2]
            x, y = self.landmarks[t, :, 0], self.landmarks[t, :, 1]
            out[t] &= (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
        return out.reshape(t_len, n)


class ClipSource(Protocol):
    """Where clips come from: ``len`` distinct clip slots, each a function of (slot, seed)."""

    num_frames: int
    scheme: str

    def __len__(self) -> int: ...

    def clip(self, index: int, seed: int) -> RawClip: ...


@dataclass
class PseudoVideoSource:
    """Pseudo-videos from annotated stills (``facetrack.data.synthetic``): slot i animates still i mod M.

    ``clips_per_still`` > 1 gives several different clips of every still per epoch. The shape model must be
    fitted on training identities only (:func:`fit_training_shape_model`) when the clips train a model that
    is evaluated on other identities.
    """

    samples: Sequence[FaceSample]
    num_frames: int = 16
    video: Any = None  # PseudoVideoConfig; None: the generator's defaults with num_frames
    shape_model: Any = None  # ShapeModel | None
    clips_per_still: int = 1
    scheme: str = ""

    def __post_init__(self) -> None:
        from facetrack.data.synthetic import PseudoVideoConfig

        if not self.samples:
            raise ValueError("a pseudo-video source needs at least one annotated still")
        if self.num_frames < 1 or self.clips_per_still < 1:
            raise ValueError("num_frames and clips_per_still must be >= 1")
        base = self.video if self.video is not None else PseudoVideoConfig()
        self.video = PseudoVideoConfig(**{**asdict(base), "num_frames": int(self.num_frames)})
        self.scheme = self.scheme or self.samples[0].scheme

    def __len__(self) -> int:
        return len(self.samples) * self.clips_per_still

    def clip(self, index: int, seed: int) -> RawClip:
        from facetrack.data.synthetic import make_pseudo_video

        sample = self.samples[index % len(self.samples)]
        try:
            video = make_pseudo_video(sample.load_image(), np.asarray(sample.landmarks, np.float64), self.video,
                                      seed=seed, shape_model=self.shape_model)
        except ValueError as exc:
            raise DataError(sample.image_path, f"cannot make a pseudo-video: {exc}") from None
        images = [video.render(t) for t in range(len(video))]
        return RawClip(images, video.landmarks.copy(), video.occluded.copy(), f"{sample.image_path}#{seed}")


@dataclass
class VideoClipSource:
    """Clips of T consecutive annotated frames of real videos (``VideoSequence`` of ``load_300vw``).

    Slot i picks a video in proportion to its number of T-frame windows and a start frame, both from the
    seed; ``clips`` slots per epoch (default: one per non-overlapping window).
    """

    sequences: Sequence[Any]
    num_frames: int = 16
    clips: int = 0
    scheme: str = "ibug68"
    _windows: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        self._windows = np.maximum(lengths - self.num_frames + 1, 0)
        if self._windows.sum() == 0:
            raise ValueError(f"no video has {self.num_frames} annotated frames")
        if self.clips <= 0:
            self.clips = int(max(1, (lengths // self.num_frames).sum()))

    def __len__(self) -> int:
        return self.clips

    def clip(self, index: int, seed: int) -> RawClip:
        rng = np.random.default_rng([seed, 7])
        video = int(rng.choice(len(self.sequences), p=self._windows / self._windows.sum()))
        seq = self.sequences[video]
        start = int(rng.integers(0, self._windows[video]))
        numbers = [int(n) for n in seq.frame_numbers[start:start + self.num_frames]]
        images = [seq.read_frame(n) for n in numbers]
        return RawClip(images, np.asarray(seq.landmarks[start:start + self.num_frames], np.float64), None,
                       f"{getattr(seq, 'video_id', video)}:{numbers[0]}")


def fit_training_shape_model(samples: Sequence[FaceSample], num_modes: int | None = None) -> Any:
    """The expression model of the pseudo-videos, fitted on the given (training) faces only."""
    from facetrack.data.shape_model import ShapeModel

    shapes = np.stack([np.asarray(s.landmarks, np.float64) for s in samples])
    return ShapeModel.fit(shapes, num_modes=num_modes,
                          meta={"fitted_on": "training identities", "faces": len(samples)})


# ---------------------------------------------------------------------------------------------- crop policy


@dataclass(frozen=True)
class TrackerCropPolicy:
    """How a tracker cuts crops: frame 0 from a jittered box, frame t from frame t-1's (noisy) landmarks.

    Errors are fractions of the face size (the larger side of the landmark box). The tracking error is an
    AR(1) process (``error_correlation`` between frames), because a tracker's error drifts rather than
    jumping: a shared offset of sd ``offset_sd``, a log-scale error of sd ``scale_sd`` about the face centre,
    and independent per-landmark noise of sd ``point_sd``. The crop box then follows the noisy landmark box
    through the trackers' ``CropSmoothing`` (weights ``smoothing_centre``, ``smoothing_size``; 1 and 1: none).
    """

    crop_scale: float = 1.25
    init_shift: float = 0.05  # frame 0: box centre moved by U(-s, s) x crop side per axis
    init_scale: tuple[float, float] = (0.9, 1.1)  # frame 0: crop side multiplied by U(lo, hi)
    offset_sd: float = 0.03
    scale_sd: float = 0.03
    point_sd: float = 0.01
    error_correlation: float = 0.7
    smoothing_centre: float = CropSmoothing.centre
    smoothing_size: float = CropSmoothing.size

    def matrices(self, landmarks: np.ndarray, out_size: int, rng: np.random.Generator) -> np.ndarray:
        """(T, 2, 3) image->crop matrices for GT ``landmarks`` (T, N, 2)."""
        t_len = len(landmarks)
        out = np.empty((t_len, 2, 3))
        lo, hi = self.init_scale
        shift = rng.uniform(-self.init_shift, self.init_shift, 2)
        scale = self.crop_scale * rng.uniform(lo, hi)
        first = box_from_landmarks(landmarks[0])
        out[0] = crop_matrix(first, out_size, scale, shift=shift)
        # The same crop as a box that crop_matrix(box, out_size, self.crop_scale) would cut, for the smoothing.
        longer = float(max(first[2] - first[0], first[3] - first[1]))
        centre = 0.5 * (first[:2] + first[2:]) + shift * scale * longer
        half = 0.5 * scale / self.crop_scale * longer
        crop_box = np.concatenate([centre - half, centre + half])
        smoothing = CropSmoothing(self.smoothing_centre, self.smoothing_size)
        rho = float(np.clip(self.error_correlation, 0.0, 0.999))
        innovation = math.sqrt(1.0 - rho * rho)
        offset, log_scale = rng.normal(0, 1, 2), rng.normal()
        for t in range(1, t_len):
            prev = landmarks[t - 1]
            box = box_from_landmarks(prev)
            size = float(max(box[2] - box[0], box[3] - box[1]))
            offset = rho * offset + innovation * rng.normal(0, 1, 2)
            log_scale = rho * log_scale + innovation * rng.normal()
            centre = 0.5 * (box[:2] + box[2:])
            noisy = centre + (prev - centre) * math.exp(self.scale_sd * log_scale)
            noisy = noisy + self.offset_sd * size * offset + rng.normal(0, self.point_sd * size, prev.shape)
            crop_box = smoothing.next_box(crop_box, box_from_landmarks(noisy))
            out[t] = crop_matrix(crop_box, out_size, self.crop_scale)
        return out


# ---------------------------------------------------------------------------------------------- datasets


def _item_rng(seed: int | None, index: int) -> tuple[int, np.random.Generator]:
    """(clip seed, crop-policy rng): fixed per (seed, index), or drawn from torch's generator (training)."""
    if seed is None:
        clip_seed = int(torch.randint(0, 2**62, ()).item())
    else:
        clip_seed = int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0] >> 2)
    return clip_seed, np.random.default_rng([clip_seed, 11])


def _to_rgb_tensor(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1))).float().div_(255.0)


def _stack_targets(per_frame: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([np.asarray(f[k], np.float32) for f in per_frame]))
            for k in per_frame[0]}


class ClipDataset(Dataset):
    """Items: ``crops`` (T, 3, F, F) float32 RGB in [0, 1]; ``targets`` (the codec's targets per frame,
    e.g. ``hx``/``hy`` (T, N, L) and ``weight`` (T, N)); ``occluded`` (T, N) bool (all False when the source
    does not know); ``matrix`` (T, 2, 3) float64 image->crop; ``landmarks`` (T, N, 2) float64 GT in frame
    pixels; ``visible`` (T, N) bool (inside the frame); ``index``.

    ``seed`` given: item i is the same clip, crops and targets every time (validation, caches, tests).
    ``seed`` None: each item draws its randomness from torch's generator, which Lightning seeds, so runs
    are reproducible and epochs differ (as ``LandmarkDataset`` does).
    """

    def __init__(self, source: ClipSource, encode_targets: EncodeTargets, input_size: int,
                 policy: TrackerCropPolicy | None = None, seed: int | None = 0) -> None:
        if len(source) == 0:
            raise ValueError("a clip dataset needs at least one clip")
        self.source = source
        self.encode_targets = encode_targets
        self.input_size = int(input_size)
        self.policy = policy or TrackerCropPolicy()
        self.seed = seed

    @property
    def num_frames(self) -> int:
        return int(self.source.num_frames)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip_seed, rng = _item_rng(self.seed, index)
        raw = self.source.clip(index, clip_seed)
        return self.crop_clip(raw, rng, index)

    def crop_clip(self, raw: RawClip, rng: np.random.Generator, index: int = 0) -> dict[str, Any]:
        """Cut and encode one raw clip with the crop policy (separate so callers can crop their own clips)."""
        gt = np.asarray(raw.landmarks, np.float64)
        matrices = self.policy.matrices(gt, self.input_size, rng)
        visible = raw.visible
        occluded = np.zeros(gt.shape[:2], bool) if raw.occluded is None else np.asarray(raw.occluded, bool)
        crops, targets = [], []
        for t, image in enumerate(raw.images):
            crops.append(_to_rgb_tensor(warp(image, matrices[t], self.input_size)))
            targets.append(self.encode_targets(apply_affine(gt[t], matrices[t]), visible[t]))
        return {
            "crops": torch.stack(crops),
            "targets": _stack_targets(targets),
            "occluded": torch.from_numpy(occluded),
            "matrix": torch.from_numpy(matrices),
            "landmarks": torch.from_numpy(gt),
            "visible": torch.from_numpy(visible),
            "index": index,
        }


# ---------------------------------------------------------------------------------------------- feature cache

_CACHE_ARRAYS = ("sx", "sy", "crop_points", "matrix", "landmarks", "visible", "occluded")


def build_feature_cache(dataset: ClipDataset, encoder: Any, folder: str | Path, batch_frames: int = 64,
                        dtype: str = "float16", meta: dict[str, Any] | None = None, progress: bool = False,
                        labels_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None) -> Path:
    """Run ``encoder.encode_1d`` (frozen, eval mode) over every clip of ``dataset`` and store, per clip and
    frame, s^x and s^y (K, T, N, L) plus the crop geometry and ground truth, as memory-mapped ``.npy``.

    ``dataset`` must have a fixed ``seed`` (the cache is a fixed set of clips). ``cache.json`` is written
    last, so a folder without it is an unfinished cache and is rebuilt. ``float16`` halves the size; the
    features are O(1) in magnitude, so the rounding (~1e-3 relative) is far below the training noise.
    ``labels_fn(crops (T, 3, F, F)) -> (cx, cy)`` (T, N) adds per-frame confidence labels (``cx``/``cy``),
    e.g. the RLE pseudo-labels of 1DFormer's Eq. 7, computed on the same crops.
    """
    if dataset.seed is None:
        raise ValueError("a feature cache needs a dataset with a fixed seed")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cache.json").unlink(missing_ok=True)
    k, t_len = len(dataset), dataset.num_frames
    n, length = int(encoder.num_points), int(encoder.length)
    shapes = {"sx": (k, t_len, n, length), "sy": (k, t_len, n, length), "crop_points": (k, t_len, n, 2),
              "matrix": (k, t_len, 2, 3), "landmarks": (k, t_len, n, 2), "visible": (k, t_len, n),
              "occluded": (k, t_len, n)}
    if labels_fn is not None:
        shapes.update({"cx": (k, t_len, n), "cy": (k, t_len, n)})
    dtypes = {"sx": dtype, "sy": dtype, "crop_points": "float32", "matrix": "float64", "landmarks": "float64",
              "visible": "bool", "occluded": "bool", "cx": "float32", "cy": "float32"}
    for stale in ("cx", "cy"):
        (folder / f"{stale}.npy").unlink(missing_ok=True)
    arrays = {name: np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtypes[name],
                                              shape=shape) for name, shape in shapes.items()}
    was_training = encoder.training
    encoder.eval()
    iterator: Any = range(k)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="feature cache", unit="clip")
    try:
        with torch.no_grad():
            for i in iterator:
                item = dataset[i]
                crops = item["crops"]
                sx, sy = [], []
                for s in range(0, t_len, batch_frames):
                    fx, fy = encoder.encode_1d(crops[s:s + batch_frames])
                    sx.append(fx)
                    sy.append(fy)
                arrays["sx"][i] = torch.cat(sx).numpy().astype(dtype)
                arrays["sy"][i] = torch.cat(sy).numpy().astype(dtype)
                mats = item["matrix"].numpy()
                gt = item["landmarks"].numpy()
                arrays["crop_points"][i] = np.stack([apply_affine(p, m) for p, m in zip(gt, mats)])
                arrays["matrix"][i] = mats
                arrays["landmarks"][i] = gt
                arrays["visible"][i] = item["visible"].numpy()
                arrays["occluded"][i] = item["occluded"].numpy()
                if labels_fn is not None:
                    cx, cy = labels_fn(crops)
                    arrays["cx"][i] = cx.cpu().numpy()
                    arrays["cy"][i] = cy.cpu().numpy()
    finally:
        encoder.train(was_training)
    for array in arrays.values():
        array.flush()
    del arrays
    record = {"format": CACHE_FORMAT, "clips": k, "num_frames": t_len, "num_points": n, "length": length,
              "dtype": dtype, "input_size": dataset.input_size, "seed": dataset.seed,
              "confidence_labels": labels_fn is not None,
              "policy": asdict(dataset.policy), "training": "frozen encoder: features of encode_1d, eval mode"}
    record.update(meta or {})
    tmp = folder / "cache.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, folder / "cache.json")
    return folder


def read_cache_meta(folder: str | Path) -> dict[str, Any]:
    """The ``cache.json`` of a finished feature cache (DataError if missing or not a cache)."""
    path = Path(folder) / "cache.json"
    record = read_json(path, "no finished feature cache here (build it with build_feature_cache)",
                       "cannot read the feature cache record")
    if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT:
        raise DataError(path, f"not a {CACHE_FORMAT} record")
    return record


class FeatureClipDataset(Dataset):
    """Clips from a feature cache: ``sx``/``sy`` (T, N, L) float32, ``targets`` encoded from the cached crop
    points, and ``matrix``, ``landmarks``, ``visible``, ``occluded``, ``index`` as in :class:`ClipDataset`.

    ``window`` < T: item i is the first ``window`` frames of clip i (shorter clips train faster).
    """

    def __init__(self, folder: str | Path, encode_targets: EncodeTargets, window: int | None = None,
                 indices: Sequence[int] | None = None) -> None:
        self.folder = Path(folder)
        self.meta = read_cache_meta(self.folder)
        self._arrays: dict[str, np.ndarray] | None = None
        self._open()  # checks the files now; worker processes reopen them (see __getstate__)
        self.encode_targets = encode_targets
        self.window = int(window or self.meta["num_frames"])
        if not 1 <= self.window <= self.meta["num_frames"]:
            raise ValueError(f"window must be in 1..{self.meta['num_frames']}, got {self.window}")
        self.indices = list(range(self.meta["clips"])) if indices is None else [int(i) for i in indices]

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            arrays = {}
            for name in _CACHE_ARRAYS + (("cx", "cy") if self.meta.get("confidence_labels") else ()):
                path = self.folder / f"{name}.npy"
                try:
                    arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError) as exc:
                    raise DataError(path, f"cannot read cached array ({exc})") from None
                if arrays[name].shape[:2] != (self.meta["clips"], self.meta["num_frames"]):
                    raise DataError(path, f"shape {arrays[name].shape} does not match cache.json")
            self._arrays = arrays
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        # A memory map pickled into a DataLoader worker would be copied in full; reopen it there instead.
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    @property
    def num_frames(self) -> int:
        return self.window

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, w = self.indices[index], self.window
        a = self._open()
        points = np.array(a["crop_points"][i, :w], np.float64)
        visible = np.array(a["visible"][i, :w])
        targets = [self.encode_targets(points[t], visible[t]) for t in range(w)]
        if "cx" in a:
            for t in range(w):
                targets[t].update(cx=np.array(a["cx"][i, t], np.float32), cy=np.array(a["cy"][i, t], np.float32))
        return {
            "sx": torch.from_numpy(np.array(a["sx"][i, :w], np.float32)),
            "sy": torch.from_numpy(np.array(a["sy"][i, :w], np.float32)),
            "targets": _stack_targets(targets),
            "occluded": torch.from_numpy(np.array(a["occluded"][i, :w])),
            "matrix": torch.from_numpy(np.array(a["matrix"][i, :w])),
            "landmarks": torch.from_numpy(np.array(a["landmarks"][i, :w])),
            "visible": torch.from_numpy(visible),
            "index": index,
        }
