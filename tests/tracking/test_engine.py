from __future__ import annotations

import numpy as np

from facetrack.data.transforms import face_roll, upright_box
from facetrack.schemes import get_scheme
from facetrack.tracking.engine import MIN_CROP_SIDE, FaceEstimate


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


def test_unsure_first_pass_tries_every_eighth_turn_on_the_detector_box(fakes):
    """A face lying upside down with the detector's points read as if upright (what RetinaFace does)."""

    class UprightOnly:
        """Confident only when the crop is turned by about 180 degrees (the face in the frame is upside down)."""

        def __init__(self, landmarker):
            self.inner, self.rolls = landmarker, []
            self.model, self.refine, self.name = landmarker.model, landmarker.refine, landmarker.name
            self.scheme, self.num_points = landmarker.scheme, landmarker.num_points

        def predict_boxes(self, image, boxes, rolls=None):
            points, conf = self.inner.predict_boxes(image, boxes, rolls)
            rolls = np.zeros(len(boxes)) if rolls is None else np.asarray(rolls)
            self.rolls.append(rolls.copy())
            conf = conf * (np.abs((rolls + 180.0) % 360.0 - 180.0) > 150)[:, None]
            return points, conf

    engine = fakes.blob_engine(refine=1)
    engine.landmarker = UprightOnly(engine.landmarker)
    frame = fakes.draw_frame((300, 200), [(150, 100, 30)])
    engine.start(frame, [fakes.blob_box(150, 100, 30)], np.array([fakes.TEMPLATE[[36, 45, 30, 48, 54]] * 60 + 120]))
    first, tried, again = engine.landmarker.rolls[:3]
    assert len(first) == 1 and sorted(np.round(tried) % 360) == sorted(np.round(first[0] + np.arange(0, 360, 45)) % 360)
    assert len(again) == 2 and np.isclose(np.abs(again), 180.0, atol=1.0).any()  # the two best, re-cropped
    final = engine.landmarker.rolls[-1]
    assert np.isclose(abs(final[0]), 180.0, atol=1.0)  # the face is read upside down, as it is


def test_a_shape_collapsed_to_one_point_still_gives_a_crop(fakes):
    """A failed model may put every landmark on one spot: the next crop is a small box there, not an exception,
    and the face checks then lose the face."""
    engine = fakes.blob_engine(refine=0)
    frame = fakes.draw_frame((300, 200), [(100, 90, 30)])
    (est,) = engine.start(frame, [fakes.blob_box(100, 90, 30)])
    collapsed = FaceEstimate(np.full((68, 2), 100.0), est.confidences, est.box, est.state, 0.0)
    (nxt,) = engine.step(frame, [collapsed])
    assert np.isfinite(nxt.landmarks).all() and np.isfinite(nxt.box).all()
    boxes, _ = engine._recrop(np.full((1, 68, 2), 100.0))  # a re-crop pass after a collapsed first pass
    assert (boxes[:, 2:] - boxes[:, :2] >= MIN_CROP_SIDE - 1e-9).all()
