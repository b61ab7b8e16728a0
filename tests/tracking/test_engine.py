from __future__ import annotations

import numpy as np

from facetrack.data.transforms import face_roll, upright_box
from facetrack.schemes import get_scheme
from facetrack.tracking.engine import FaceEstimate


def test_start_refines_detector_box_and_step_follows(fakes):
    engine = fakes.blob_engine(refine=1)
    frame = fakes.draw_frame((300, 200), [(100, 90, 30)])
    loose = np.array([[55.0, 40.0, 150.0, 150.0]])  # a detector box, larger and off-centre
    (est,) = engine.start(frame, loose)
    assert est.state is None and est.landmarks.shape == (68, 2) and est.confidences.shape == (68,)
    np.testing.assert_allclose(est.extent, fakes.blob_box(100, 90, 30), atol=1.5)
    assert engine.landmarker.model.calls == 2  # the detector box, then one landmark-extent re-crop

    moved = fakes.draw_frame((300, 200), [(108, 94, 30)])
    (nxt,) = engine.step(moved, [est])
    np.testing.assert_allclose(nxt.extent, fakes.blob_box(108, 94, 30), atol=1.5)
    # the crop came from the previous landmarks, turned by their roll, through the crop smoothing
    roll = engine.crop_smoothing.next_roll(est.roll, face_roll(est.landmarks, get_scheme("ibug68")))
    assert nxt.roll == roll
    np.testing.assert_allclose(nxt.box, engine.crop_smoothing.next_box(est.box, upright_box(est.landmarks, roll)))
    assert engine.step(moved, []) == [] and engine.start(moved, np.zeros((0, 4))) == []


def test_all_faces_in_one_call(fakes):
    engine = fakes.blob_engine(refine=0)
    frame = fakes.draw_frame((300, 200), [(60, 100, 25), (220, 100, 25)])
    ests = engine.start(frame, [fakes.blob_box(60, 100, 25), fakes.blob_box(220, 100, 25)])
    assert engine.landmarker.model.batch_sizes == [2]
    assert ests[0].extent[0] < 100 < ests[1].extent[0]


def test_reset_drops_state():
    est = FaceEstimate(np.zeros((3, 2)), np.ones(3), np.array([0, 0, 1, 1.0]), state={"memory": 1})
    from facetrack.tracking.engine import LandmarkerEngine

    assert LandmarkerEngine.reset(None, est).state is None  # type: ignore[arg-type]
