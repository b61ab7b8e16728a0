"""The tracker's face check switch (issue 20): ATPN's p(face) against 0.7 instead of the face validator; and the
pose each tracked face carries (the model's own when its engine gives one)."""
from __future__ import annotations

import numpy as np
import pytest

from facetrack.errors import ModelError
from facetrack.tracking.pipeline import FaceTracker, TrackerConfig

SIZE = (320, 200)


class WithHead:
    """A landmark engine whose estimates carry ATPN-like extras: p(face) from ``schedule(frame)`` and a pose."""

    def __init__(self, engine, schedule):
        self.engine, self.schedule, self.frame = engine, schedule, 0
        self.name, self.scheme, self.num_points = engine.name, engine.scheme, engine.num_points

    def _mark(self, estimates):
        for e in estimates:
            e.aux = {"face": self.schedule(self.frame), "pose": np.array([10.0, -5.0, 3.0])}
        return estimates

    def start(self, image, boxes, points5=None):
        return self._mark(self.engine.start(image, boxes, points5))

    def step(self, image, previous):
        self.frame += 1
        return self._mark(self.engine.step(image, previous))

    def reset(self, estimate):
        return self.engine.reset(estimate)


def track(fakes, engine, frames, **config):
    tracker = FaceTracker(engine, fakes.BlobDetector(), None,
                          TrackerConfig(verify_every=0, idle_detect_every=1, **config))
    return [tracker.update(f, t / 30) for t, f in enumerate(frames)], tracker


def test_atpn_check_drops_the_face_below_its_threshold(fakes):
    frames = fakes.moving_video(20, SIZE, [lambda t: (100 + 2 * t, 100)])
    engine = WithHead(fakes.blob_engine(), lambda frame: 0.9 if frame < 10 else 0.6)
    results, _ = track(fakes, engine, frames, face_check="atpn")
    assert all(len(f) == 1 for f in results[:8]) and not any(results[12:])
    assert np.allclose(results[0][0].pose, [10.0, -5.0, 3.0])  # the model's own pose, not the PnP fit
    engine = WithHead(fakes.blob_engine(), lambda frame: 0.9 if frame < 10 else 0.6)
    results, _ = track(fakes, engine, frames, face_check="validator")  # the same faces pass the landmark check
    assert all(len(f) == 1 for f in results)


def test_atpn_check_needs_the_head_and_a_known_switch(fakes):
    frames = fakes.moving_video(3, SIZE, [lambda t: (100, 100)])
    with pytest.raises(ModelError, match="tracking head"):
        track(fakes, fakes.blob_engine(), frames, face_check="atpn")
    with pytest.raises(ValueError, match="face_check"):
        TrackerConfig(face_check="nope")
    assert TrackerConfig(face_check="atpn").threshold == 0.7 and TrackerConfig().threshold == 0.3


def test_every_tracked_face_has_a_pose(fakes):
    results, _ = track(fakes, fakes.blob_engine(), fakes.moving_video(3, SIZE, [lambda t: (100, 100)]))
    assert results[0][0].pose is not None and results[0][0].pose.shape == (3,)
