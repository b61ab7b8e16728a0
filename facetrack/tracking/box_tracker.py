"""CRCT's recurrent box tracker in the tracking loop (Aspandi et al., FG 2019, Algorithm 1), its training
items and its box-only mode.

``CRCTEngine`` wraps any landmark engine (the FLL of the paper; ``facetrack track``'s model) and replaces today's
landmark-box policy (the next crop cut around the previous landmarks) by BT's estimate: on frame t, BT sees the
crops of frames t-1 and t around b_(t-1) (the extent of the final landmarks of t-1, line 19) and gives l_t^BT; the
wrapped engine then places the final landmarks from the box of l_t^BT (line 18, ``FLL(X_t, b_t^BT)``). BT's LSTM
state is reset after SeqBT frames and whenever the face is (re)started from a detection (line 12). Detection,
validation (T_C) and re-detection with T_B (Eq. 8) are the tracker's (``facetrack.tracking.pipeline``); there the
face validator scores the final landmarks, not BT's (a deviation: one validator call per face and frame).

``track_boxes`` runs BT alone (b_t = b_t^BT, the paper's rigid box-tracking experiment, OPE from the first box).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from facetrack.data.sequences import TrackerCropPolicy, _item_rng, _stack_targets, _to_rgb_tensor
from facetrack.data.transforms import apply_affine, box_from_landmarks, crop_matrix, invert_affine, warp
from facetrack.models.temporal.base import TemporalState
from facetrack.tracking.engine import FaceEstimate, LandmarkEngine

DEFAULT_BOX_TRACKER = "crct-bt"
BOX_TRACKERS = ("landmarks", "crct")


# ---------------------------------------------------------------------------------------------- training items


class PairClips(Dataset):
    """Items for BT: ``crops`` (T-1, 2, 3, F, F), the crops of frames t-1 and t (t = 1..T-1) around the previous
    box, cut by the trackers' crop policy at BT's ``context`` (frame t's crop around frame t-1's ground truth
    moved by a drifting error, ``TrackerCropPolicy``); ``targets`` (frame t's landmarks in that crop), ``matrix``,
    ``landmarks``, ``visible``, ``occluded`` of frame t, and ``index``, as ``ClipDataset``'s."""

    def __init__(self, source: Any, encode_targets: Any, input_size: int, context: float,
                 policy: TrackerCropPolicy | None = None, seed: int | None = 0) -> None:
        if len(source) == 0 or source.num_frames < 2:
            raise ValueError("BT needs clips of at least 2 frames")
        self.source = source
        self.encode_targets = encode_targets
        self.input_size = int(input_size)
        self.policy = dataclasses.replace(policy or TrackerCropPolicy(), crop_scale=float(context))
        self.seed = seed

    @property
    def num_frames(self) -> int:
        return int(self.source.num_frames) - 1

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip_seed, rng = _item_rng(self.seed, index)
        raw = self.source.clip(index, clip_seed)
        gt = np.asarray(raw.landmarks, np.float64)
        mats = self.policy.matrices(gt, self.input_size, rng)[1:]
        visible = raw.visible[1:]
        occluded = np.zeros(gt.shape[:2], bool) if raw.occluded is None else np.asarray(raw.occluded, bool)
        pairs, targets = [], []
        for t, m in enumerate(mats, start=1):
            pairs.append(torch.stack([_to_rgb_tensor(warp(raw.images[t - 1], m, self.input_size)),
                                      _to_rgb_tensor(warp(raw.images[t], m, self.input_size))]))
            targets.append(self.encode_targets(apply_affine(gt[t], m), visible[t - 1]))
        return {"crops": torch.stack(pairs), "targets": _stack_targets(targets),
                "occluded": torch.from_numpy(occluded[1:]), "matrix": torch.from_numpy(mats),
                "landmarks": torch.from_numpy(gt[1:]), "visible": torch.from_numpy(visible), "index": index}


# ---------------------------------------------------------------------------------------------- tracking


@dataclass
class CRCTState:
    """One face's memory: the wrapped engine's state, BT's LSTM state, frames since BT's last reset (SeqT) and
    the crop of the previous frame around its final box (what BT compares the next frame with)."""

    inner: Any
    bt: TemporalState
    seq: int
    previous_crop: torch.Tensor


class CRCTEngine:
    """A landmark engine whose next crop box comes from CRCT's BT instead of the previous landmarks."""

    def __init__(self, inner: LandmarkEngine, bt: Any, seq_bt: int | None = None) -> None:
        self.inner = inner
        self.landmarker = getattr(inner, "landmarker", None)  # the landmark model's card names the run (provenance)
        self.bt = bt.eval()
        self.seq_bt = int(seq_bt or bt.seq_bt)
        self.name = f"{inner.name}+crct-bt"
        self.scheme = inner.scheme
        self.num_points = inner.num_points
        self.box_updates = 0  # frames on which BT moved a box (for reports)

    def _crops(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        size = self.bt.input_size
        mats = np.stack([crop_matrix(b, size, self.bt.context) for b in boxes])
        return torch.stack([_to_rgb_tensor(warp(image, m, size)) for m in mats]), mats

    def _wrap(self, image: np.ndarray, estimates: list[FaceEstimate], bt_states: list[TemporalState],
              seqs: list[int]) -> list[FaceEstimate]:
        crops, _ = self._crops(image, [box_from_landmarks(e.landmarks) for e in estimates])
        return [FaceEstimate(e.landmarks, e.confidences, e.box, CRCTState(e.state, s, q, crops[i]), e.roll)
                for i, (e, s, q) in enumerate(zip(estimates, bt_states, seqs))]

    def start(self, image: np.ndarray, boxes: Sequence[np.ndarray],
              points5: np.ndarray | None = None) -> list[FaceEstimate]:
        estimates = self.inner.start(image, boxes, points5)
        return self._wrap(image, estimates, [self.bt.init_state(1) for _ in estimates], [0] * len(estimates))

    def step(self, image: np.ndarray, previous: Sequence[FaceEstimate]) -> list[FaceEstimate]:
        if not previous:
            return []
        states = [p.state for p in previous]
        boxes = [box_from_landmarks(p.landmarks) for p in previous]
        current, mats = self._crops(image, boxes)
        fresh = [s.seq >= self.seq_bt for s in states]  # line 11-12: reset after SeqBT frames
        bt_state = TemporalState.cat([self.bt.init_state(1) if f else s.bt for s, f in zip(states, fresh)])
        with torch.inference_mode():
            out, bt_state = self.bt.step(torch.stack([s.previous_crop for s in states]), current, bt_state)
            coords, _ = self.bt.decode(out)
        bt_points = coords.numpy().astype(np.float64)
        guides = [FaceEstimate(apply_affine(c, invert_affine(m)), p.confidences, p.box, s.inner, p.roll)
                  for c, m, p, s in zip(bt_points, mats, previous, states)]
        self.box_updates += len(guides)
        estimates = self.inner.step(image, guides)
        seqs = [0 if f else s.seq + 1 for s, f in zip(states, fresh)]
        return self._wrap(image, estimates, bt_state.split(), seqs)

    def reset(self, estimate: FaceEstimate) -> FaceEstimate:
        state = estimate.state
        inner = self.inner.reset(FaceEstimate(estimate.landmarks, estimate.confidences, estimate.box,
                                              state.inner if state is not None else None, estimate.roll))
        if state is None:
            return inner
        return FaceEstimate(inner.landmarks, inner.confidences, inner.box,
                            CRCTState(inner.state, self.bt.init_state(1), 0, state.previous_crop), inner.roll)


def load_box_tracker(name_or_path: str | Path = DEFAULT_BOX_TRACKER) -> Any:
    """BT weights by packaged name or path, checked to be a ``crct-bt`` model."""
    from facetrack.errors import ModelError
    from facetrack.models.box_tracker import CRCTBoxTracker
    from facetrack.models.hub import load_model

    model = load_model(name_or_path)
    if not isinstance(model, CRCTBoxTracker):
        raise ModelError(f"{name_or_path}: not a CRCT box tracker (crct-bt), got {type(model).__name__}")
    return model.eval()


def crct_engine(inner: LandmarkEngine, box_tracker: str | Path = DEFAULT_BOX_TRACKER) -> CRCTEngine:
    """``inner`` with CRCT's BT choosing each tracked frame's crop box (``track --box-tracker crct``)."""
    return CRCTEngine(inner, load_box_tracker(box_tracker))


@torch.inference_mode()
def track_boxes(bt: Any, frames: Any, first_box: np.ndarray, seq_bt: int | None = None) -> np.ndarray:
    """BT alone from ``first_box`` (b_t = b_t^BT, no landmark model, no re-detection): boxes (T, 4) per frame."""
    seq_bt = int(seq_bt or bt.seq_bt)
    size = bt.input_size
    boxes: list[np.ndarray] = []
    previous: np.ndarray | None = None
    state, seq = bt.init_state(1), 0
    for image in frames:
        if previous is None:
            boxes.append(np.asarray(first_box, np.float64))
            previous = image
            continue
        m = crop_matrix(boxes[-1], size, bt.context)
        if seq >= seq_bt:
            state, seq = bt.init_state(1), 0
        out, state = bt.step(_to_rgb_tensor(warp(previous, m, size))[None], _to_rgb_tensor(warp(image, m, size))[None],
                             state)
        coords, _ = bt.decode(out)
        boxes.append(box_from_landmarks(apply_affine(coords[0].numpy().astype(np.float64), invert_affine(m))))
        previous, seq = image, seq + 1
    return np.stack(boxes)
