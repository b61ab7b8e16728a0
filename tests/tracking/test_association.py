from __future__ import annotations

import numpy as np

from facetrack.tracking.association import Identities, box_iou, distance_ratio, match_boxes


def test_box_iou():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[5, 0, 15, 10], [100, 100, 101, 101]])
    iou = box_iou(a, b)
    np.testing.assert_allclose(iou, [[50 / 150, 0], [0, 0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 2)
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0  # degenerate boxes do not divide by zero


def test_distance_ratio_is_crct_eq8():
    prev = np.array([0, 0, 30, 40])  # diagonal 50, centre (15, 20)
    ratios = distance_ratio(prev, np.array([[15, 20, 45, 60], [0, 0, 30, 40]]))
    np.testing.assert_allclose(ratios, [25 / 50, 0.0])


def test_match_boxes_is_one_to_one_and_thresholded():
    tracks = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    dets = np.array([[21, 0, 31, 10], [1, 0, 11, 10], [50, 50, 60, 60]])
    assert sorted(match_boxes(tracks, dets, 0.3)) == [(0, 1), (1, 0)]
    assert match_boxes(tracks, dets[2:], 0.3) == []


def test_identities_reclaim_within_ratio_and_gap():
    ids = Identities(reid_gap=5, max_ratio=0.5)
    a, b = ids.new_id(), ids.new_id()
    assert (a, b) == (0, 1)
    ids.lose(a, [0, 0, 40, 40], frame=10)
    ids.lose(b, [100, 0, 140, 40], frame=10)
    dets = np.array([[105, 2, 145, 42], [300, 0, 340, 40]])
    assert ids.reclaim(dets) == {0: b}  # the far detection is nobody's
    assert ids.waiting() == 2  # reclaimed faces wait until the tracker confirms them
    ids.forget(b)
    assert [f.track_id for f in ids.lost] == [a]
    ids.expire(15)
    assert ids.waiting() == 1
    ids.expire(16)
    assert ids.waiting() == 0 and ids.reclaim(dets) == {}
    assert ids.new_id() == 2  # ids are never reused
