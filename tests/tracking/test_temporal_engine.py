"""Temporal engine: per-face state through the tracker, same numbers as the model's clip forward on the crops
it cut, batching faces of different ages, state reset on re-initialisation, and the engine factory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrack.data.transforms import CropSmoothing, apply_affine, invert_affine
from facetrack.landmarker import Landmarker
from facetrack.models import build_model
from facetrack.models.base import LandmarkModel
from facetrack.models.temporal import TemporalState
from facetrack.tracking.engine import LandmarkerEngine
from facetrack.tracking.pipeline import FaceTracker, TrackerConfig
from facetrack.tracking.engine import TemporalEngine, engine_for

SIZE = (320, 200)
ENCODER = {"arch": "aohr", "num_points": 7, "scheme": "common7", "input_size": 32, "ratio": 0.75,
           "backbone": {"name": "hourglass", "stacks": 1, "depth": 2, "width": 8}, "head_channels": 8,
           "attn_dim": 4, "head_layers": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_former():
    torch.manual_seed(0)
    model = build_model("1dformer", encoder=ENCODER, window=3, heads=2, head_dim=3, ffn_dim=8, conf_hidden=4,
                        conv_kernel=3, inter_channels=6)
    with torch.no_grad():  # leave the identity init so the temporal part acts
        for p in model.head.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


class CountingBlobModel(LandmarkModel):
    """A temporal stand-in: the blob finder of the tracking fakes, plus a state counting frames seen."""

    arch = "test-temporal-blob"

    def __init__(self, blob: LandmarkModel) -> None:
        super().__init__(num_points=blob.num_points, scheme=blob.scheme, input_size=blob.input_size)
        self.blob = blob

    def init_state(self, batch: int = 1) -> TemporalState:
        return TemporalState({"frames": torch.zeros(batch, 1)})

    def step(self, images, state):
        return self.blob(images), TemporalState({"frames": state.tensors["frames"] + 1})

    def forward(self, images):
        return self.blob(images)

    def decode(self, outputs):
        return self.blob.decode(outputs)


def test_engine_steps_equal_the_clip_forward_on_its_crops(rng):
    model = tiny_former()
    engine = engine_for(Landmarker(model, refine=0, runtime="torch"))  # the engine's logic vs torch's clip forward
    assert isinstance(engine, TemporalEngine)
    frames = [rng.integers(0, 255, (80, 90, 3), dtype=np.uint8) for _ in range(6)]
    estimates = engine.start(frames[0], [np.array([20.0, 15.0, 60.0, 58.0])])
    history = [estimates[0]]
    for frame in frames[1:]:
        estimates = engine.step(frame, estimates)
        history.append(estimates[0])
    crops, matrices = zip(*(engine.landmarker.crops(f, e.box[None]) for f, e in zip(frames, history)))
    with torch.no_grad():
        out = model.forward_sequence(torch.cat(crops)[None])
        coords, conf = model.decode(out)
    for t, estimate in enumerate(history):
        expected = apply_affine(coords[0, t].numpy().astype(np.float64), invert_affine(matrices[t][0]))
        np.testing.assert_allclose(estimate.landmarks, expected, atol=1e-3)
        np.testing.assert_allclose(estimate.confidences, conf[0, t].numpy(), atol=1e-5)
        if t:  # each crop comes from the previous frame's crop and landmark extent
            previous = history[t - 1]
            np.testing.assert_allclose(estimate.box, engine.crop_smoothing.next_box(previous.box, previous.extent))
    assert history[-1].state.batch == 1


def test_temporal_engine_subtracts_the_card_calibration(rng):
    model = tiny_former()
    frames = [rng.integers(0, 255, (80, 90, 3), dtype=np.uint8) for _ in range(3)]
    box = np.array([20.0, 15.0, 60.0, 58.0])

    def run(m):
        engine = engine_for(Landmarker(m, refine=0, runtime="torch"), CropSmoothing(1e-9, 1e-9, 1e9))  # crops stay put
        estimates = engine.start(frames[0], [box])
        out = [estimates[0]]
        for frame in frames[1:]:
            estimates = engine.step(frame, estimates)
            out.append(estimates[0])
        return out, engine.landmarker.crops(frames[0], box[None])[1][0]

    raw, matrix = run(model)
    offsets = np.zeros((model.num_points, 2))
    offsets[:, 0] = 0.5  # crop pixels
    model.card = {"calibration": {"offsets_px": {"plain": offsets.tolist()}}}
    calibrated, _ = run(model)
    shift = np.linalg.inv(matrix[:, :2]) @ np.array([0.5, 0.0])  # the offset in frame pixels
    for a, b in zip(raw, calibrated):
        np.testing.assert_allclose(a.landmarks - b.landmarks, np.broadcast_to(shift, a.landmarks.shape), atol=1e-4)


def test_faces_of_different_ages_batch_like_alone(rng):
    engine = TemporalEngine(Landmarker(tiny_former(), refine=1))
    frames = [rng.integers(0, 255, (80, 90, 3), dtype=np.uint8) for _ in range(4)]
    old = engine.start(frames[0], [np.array([10.0, 10.0, 50.0, 50.0])])
    for frame in frames[1:3]:
        old = engine.step(frame, old)
    young = engine.start(frames[2], [np.array([30.0, 20.0, 75.0, 70.0])])
    joint = engine.step(frames[3], old + young)
    alone = engine.step(frames[3], old) + engine.step(frames[3], young)
    assert len(joint) == 2
    for a, b in zip(joint, alone):
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-4)
        for key in a.state.tensors:
            torch.testing.assert_close(a.state.tensors[key], b.state.tensors[key], atol=1e-5, rtol=0)
    assert engine.start(frames[0], []) == [] and engine.step(frames[0], []) == []


def test_reset_drops_the_history(rng):
    engine = TemporalEngine(Landmarker(tiny_former(), refine=0))
    frames = [rng.integers(0, 255, (80, 90, 3), dtype=np.uint8) for _ in range(3)]
    est = engine.start(frames[0], [np.array([20.0, 15.0, 60.0, 58.0])])
    est = engine.step(frames[1], est)
    reset = engine.reset(est[0])
    assert reset.state is None and np.array_equal(reset.landmarks, est[0].landmarks)
    fresh = engine.step(frames[2], [reset])[0]
    carried = engine.step(frames[2], est)[0]
    box = engine.crop_smoothing.next_box(reset.box, reset.extent)
    started = engine.start(frames[2], [box])[0]  # refine=0: one step from an empty history
    np.testing.assert_allclose(fresh.landmarks, started.landmarks, atol=1e-6)
    assert np.abs(fresh.landmarks - carried.landmarks).max() > 1e-6


def test_tracker_carries_state_and_restarts_it_on_reinitialisation(fakes):
    # The face leaves (frames 30-44) and comes back: a new start, so its history restarts from one frame.
    path = lambda t: (150 + 4 * t, 100) if t < 30 else ((t - 45) * 3 + 60, 100) if t >= 45 else None  # noqa: E731
    engine = TemporalEngine(Landmarker(CountingBlobModel(fakes.BlobModel()), crop_scale=1.25, refine=1))
    tracker = FaceTracker(engine, fakes.BlobDetector(), None, TrackerConfig(reid_gap=5))
    counts = []
    for t, frame in enumerate(fakes.moving_video(60, SIZE, [path])):
        faces = tracker.update(frame, t / 30)
        counts.append(int(tracker.tracks[0].estimate.state.tensors["frames"].item()) if tracker.tracks else None)
        if path(t) is not None and faces:
            np.testing.assert_allclose(faces[0].box, fakes.blob_box(*path(t), 30), atol=2.5)
    assert counts[:5] == [1, 2, 3, 4, 5]
    back = next(t for t in range(45, 60) if counts[t] is not None)
    assert counts[back] == 1 and counts[-1] == 60 - back


def test_factory_keeps_per_frame_models_on_the_landmarker_engine(fakes):
    assert isinstance(engine_for(Landmarker(fakes.BlobModel())), LandmarkerEngine)
    with pytest.raises(TypeError, match="temporal"):
        TemporalEngine(Landmarker(fakes.BlobModel()))


@pytest.mark.parametrize("arch", ["1dformer", "aohr-tracker"])
def test_both_temporal_models_run_inside_the_tracker_from_weight_files(arch, fakes, tmp_path):
    """What `facetrack track --model PATH` does with a saved temporal model: the temporal engine, per-face state."""
    from facetrack.api import Tracker
    from facetrack.models.hub import save_model

    torch.manual_seed(0)
    extra = {"window": 3, "heads": 2, "head_dim": 3, "ffn_dim": 8, "conf_hidden": 4, "conv_kernel": 3,
             "inter_channels": 6} if arch == "1dformer" else {}
    save_model(build_model(arch, encoder=ENCODER, **extra), tmp_path / "temporal")
    # untrained weights: keep every track (the geometry and the state, not the accuracy, are under test)
    tracker = Tracker(model=tmp_path / "temporal.safetensors", detector=fakes.BlobDetector(), validator=None,
                      shape_check=None, keep_threshold=0.0, verify_every=0, max_faces=1)
    assert isinstance(tracker.engine, TemporalEngine)
    path = lambda t: (150 + 2 * t, 100)  # noqa: E731
    results = list(tracker.track(fakes.moving_video(8, SIZE, [path])))
    assert len(results) == 8 and all(len(r.faces) == 1 for r in results)
    assert {r.faces[0].track_id for r in results} == {0}
    assert all(np.isfinite(r.faces[0].landmarks).all() and r.faces[0].landmarks.shape == (7, 2) for r in results)


def test_flip_is_refused_for_temporal_models():
    from facetrack.errors import ModelError

    with pytest.raises(ModelError, match="temporal model"):
        engine_for(Landmarker(tiny_former(), refine=0, flip=True))
