"""CRCT's box tracker: streaming equals the clip forward with SeqBT resets, the curriculum, training pairs cut
around the previous box, the engine of Algorithm 1 around a landmark engine (reset after SeqBT, on re-detection),
BT-only box tracking, weights round trip and the track command's switch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrack.data.sequences import RawClip
from facetrack.data.transforms import apply_affine, box_from_landmarks
from facetrack.errors import ModelError
from facetrack.models import build_model, load_model, save_model
from facetrack.models.box_tracker import REGIONS, CRCTBoxTracker
from facetrack.tracking.box_tracker import CRCTEngine, PairClips, load_box_tracker, track_boxes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"input_size": 32, "width": 2, "embed": 8, "hidden": 6, "seq_bt": 3, "context": 1.6}


def tiny(seed: int = 0) -> CRCTBoxTracker:
    torch.manual_seed(seed)
    return CRCTBoxTracker(**TINY).double().eval()


def test_regions_cover_the_68_points_once():
    covered = sorted(i for a, b in REGIONS.values() for i in range(a, b))
    assert covered == list(range(68))


def test_streaming_equals_clip_forward_with_seq_bt_resets():
    model = tiny()
    g = torch.Generator().manual_seed(1)
    pairs = torch.rand(2, 7, 2, 3, 32, 32, generator=g, dtype=torch.float64)
    with torch.no_grad():
        whole = model.forward_sequence(pairs)["coords"]
        state = model.init_state(2)
        for t in range(7):
            if t % model.seq_bt == 0:
                state = model.init_state(2)
            out, state = model.step(pairs[:, t, 0], pairs[:, t, 1], state)
            torch.testing.assert_close(out["coords"], whole[:, t])
        assert not torch.allclose(whole[:, 1], model.step(pairs[:, 1, 0], pairs[:, 1, 1], model.init_state(2))[0]["coords"])


def test_curriculum_doubles_up_to_seq_bt():
    model = CRCTBoxTracker(**{**TINY, "seq_bt": 8})
    assert [(model.set_epoch(e, 6), model.curriculum)[1] for e in range(6)] == [2, 2, 4, 4, 8, 8]
    model = CRCTBoxTracker(**{**TINY, "seq_bt": 2})
    assert [(model.set_epoch(e, 3), model.curriculum)[1] for e in range(3)] == [2, 2, 2]


class _Source:
    num_frames, scheme = 4, "ibug68"

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        base = rng.uniform(40, 90, (68, 2))
        self.landmarks = np.stack([base + [3.0 * t, 1.0 * t] for t in range(4)])
        self.images = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(4)]

    def __len__(self) -> int:
        return 2

    def clip(self, index: int, seed: int) -> RawClip:
        return RawClip(self.images, self.landmarks, None, "synthetic")


def test_pair_clips_crop_both_frames_around_the_previous_box():
    from facetrack.data.transforms import warp

    model = CRCTBoxTracker(**TINY)
    source = _Source()
    item = PairClips(source, model.encode_targets, 32, 1.6, seed=0)[0]
    assert item["crops"].shape == (3, 2, 3, 32, 32) and item["landmarks"].shape == (3, 68, 2)
    for t in range(1, 4):
        m = item["matrix"][t - 1].numpy()
        prev = warp(source.images[t - 1], m, 32)[:, :, ::-1].astype(np.float32) / 255
        np.testing.assert_allclose(item["crops"][t - 1, 0].numpy(), prev.transpose(2, 0, 1), atol=1e-6)
        crop_pts, _ = model.decode({"coords": item["targets"]["coords"][t - 1].double()})
        np.testing.assert_allclose(crop_pts.numpy(), apply_affine(source.landmarks[t], m), atol=1e-4)
        # the crop is centred near frame t-1's box (GT plus a small drift), not frame t's
        centre = apply_affine(box_from_landmarks(source.landmarks[t - 1]).reshape(2, 2), m).mean(0)
        assert np.abs(centre - 15.5).max() < 6


class _Inner:
    """A landmark engine that returns the guide landmarks shifted by one pixel (records what it was given)."""

    name, scheme, num_points, landmarker = "inner", "ibug68", 68, None

    def __init__(self) -> None:
        self.guides: list[np.ndarray] = []

    def start(self, image, boxes, points5=None):
        from facetrack.tracking.engine import FaceEstimate

        b = np.asarray(boxes[0], float)
        pts = np.random.default_rng(0).uniform(b[:2], b[2:], (68, 2))
        return [FaceEstimate(pts, np.ones(68), b, "inner-state")]

    def step(self, image, previous):
        from facetrack.tracking.engine import FaceEstimate

        self.guides.append(previous[0].landmarks.copy())
        p = previous[0]
        assert p.state == "inner-state"
        return [FaceEstimate(p.landmarks + 1.0, p.confidences, p.box, p.state)]

    def reset(self, estimate):
        from facetrack.tracking.engine import FaceEstimate

        return FaceEstimate(estimate.landmarks, estimate.confidences, estimate.box, "inner-state")


def test_engine_follows_algorithm1():
    bt = CRCTBoxTracker(**TINY).eval()
    inner = _Inner()
    engine = CRCTEngine(inner, bt)
    images = [np.random.default_rng(i).integers(0, 255, (96, 96, 3), dtype=np.uint8) for i in range(6)]
    est = engine.start(images[0], [np.array([20.0, 20.0, 70.0, 70.0])])
    seqs = []
    for image in images[1:]:
        est = engine.step(image, est)
        seqs.append(est[0].state.seq)
    assert seqs == [1, 2, 3, 0, 1]  # SeqT counts frames since BT's reset; reset once it reaches SeqBT = 3
    # FLL's guide is BT's landmarks: the final landmarks are exactly the inner engine's output on them
    np.testing.assert_allclose(est[0].landmarks, inner.guides[-1] + 1.0)
    assert not np.allclose(inner.guides[-1], inner.guides[-2] + 1.0)  # BT moved the guide
    again = engine.reset(est[0])
    assert again.state.seq == 0 and torch.all(again.state.bt.tensors["h"] == 0)


def test_track_boxes_and_round_trip(tmp_path):
    bt = CRCTBoxTracker(**TINY).eval()
    weights, _ = save_model(bt, tmp_path / "bt.safetensors", {"name": "bt-test"})
    loaded = load_box_tracker(weights)
    assert loaded.config == bt.config
    frames = [np.random.default_rng(i).integers(0, 255, (96, 96, 3), dtype=np.uint8) for i in range(5)]
    boxes = track_boxes(loaded, frames, np.array([20.0, 20.0, 70.0, 70.0]))
    assert boxes.shape == (5, 4) and np.isfinite(boxes).all()
    np.testing.assert_allclose(boxes[0], [20, 20, 70, 70])
    other, _ = save_model(build_model("lm-2d-lite"), tmp_path / "lm.safetensors", {"name": "lm"})
    with pytest.raises(ModelError, match="not a CRCT box tracker"):
        load_box_tracker(other)
    assert isinstance(load_model(weights), CRCTBoxTracker)


def test_track_command_has_the_switch():
    import argparse

    from facetrack.commands import track

    parser = argparse.ArgumentParser()
    track.register(parser.add_subparsers())
    args = parser.parse_args(["track", "v.mp4", "--box-tracker", "crct", "--box-tracker-model", "x.safetensors"])
    assert args.box_tracker == "crct" and args.box_tracker_model == "x.safetensors"
    assert parser.parse_args(["track", "v.mp4"]).box_tracker == "landmarks"
