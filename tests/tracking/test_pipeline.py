from __future__ import annotations

import numpy as np
import pytest

from facetrack.tracking.pipeline import FaceTracker, TrackerConfig, combined_score

SIZE = (320, 200)


def run(fakes, frames, **config):
    # the original loop: detection only when needed (the re-check and idle cadence have tests of their own)
    config = {"verify_every": 0, "idle_detect_every": 1, **config}
    detector = fakes.BlobDetector()
    engine = fakes.blob_engine()
    tracker = FaceTracker(engine, detector, None, TrackerConfig(**config))
    results = [tracker.update(f, t / 30) for t, f in enumerate(frames)]
    return results, tracker, detector, engine


def test_tracks_through_motion_without_detector(fakes):
    path = lambda t: (60 + 4 * t, 100 + 20 * np.sin(t / 6))  # noqa: E731
    results, tracker, detector, _ = run(fakes, fakes.moving_video(45, SIZE, [path]))
    assert detector.calls == 1  # only the first frame: every later crop came from the previous landmarks
    assert all(len(faces) == 1 and faces[0].track_id == 0 for faces in results)
    for t, faces in enumerate(results):
        np.testing.assert_allclose(faces[0].box, fakes.blob_box(*path(t), 30), atol=2.5)
        assert faces[0].landmarks.shape == (68, 2) and faces[0].confidences.shape == (68,)


def test_face_that_leaves_and_returns_gets_new_id_after_gap(fakes):
    # Exits on the right around frame 25, comes back on the left from frame 45.
    path = lambda t: (150 + 12 * t, 100) if t < 30 else ((t - 45) * 6 + 40, 100) if t >= 45 else None  # noqa: E731
    results, tracker, detector, _ = run(fakes, fakes.moving_video(60, SIZE, [path]), reid_gap=5)
    ids = [faces[0].track_id if faces else None for faces in results]
    assert ids[0] == 0 and ids[-1] == 1
    gone = [t for t, i in enumerate(ids) if i is None]
    assert gone and min(gone) < 30 and max(gone) >= 44
    assert detector.calls > 10  # re-detection runs on every frame while the face is away


def test_short_loss_near_last_box_keeps_id(fakes):
    # The face vanishes for 3 frames (e.g. a blink of occlusion) and reappears where it was.
    path = lambda t: None if 10 <= t < 13 else (120 + t, 100)  # noqa: E731
    results, tracker, _, _ = run(fakes, fakes.moving_video(25, SIZE, [path]), reid_gap=10)
    assert [len(f) for f in results[10:13]] == [0, 0, 0]
    assert {f[0].track_id for f in results if f} == {0}
    assert tracker.stats.reidentified == 1


def test_waiting_face_does_not_jump_to_a_far_face_within_the_gap(fakes):
    # CRCT's T_B: with one face allowed, a face far from the lost one is not taken while waiting.
    a = lambda t: (60, 100) if t < 5 else None  # noqa: E731
    b = lambda t: (260, 100) if t >= 5 else None  # noqa: E731
    results, _, _, _ = run(fakes, fakes.moving_video(20, SIZE, [a, b]), reid_gap=8, max_faces=1)
    assert all(not f for f in results[5:14])
    assert results[-1] and results[-1][0].track_id == 1


def test_two_faces_keep_their_ids(fakes):
    # They pass each other (x crosses at frame 33) on separate rows; ids must follow the faces, not the order.
    a = lambda t: (60 + 3 * t, 50)  # noqa: E731
    b = lambda t: (260 - 3 * t, 150)  # noqa: E731
    results, _, detector, engine = run(fakes, fakes.moving_video(45, SIZE, [a, b]), max_faces=2)
    centre = lambda box: 0.5 * (box[:2] + box[2:])  # noqa: E731
    first = {f.track_id: (a if centre(f.box)[1] < 100 else b) for f in results[0]}
    assert sorted(first) == [0, 1] and len(set(first.values())) == 2
    for t, faces in enumerate(results):
        assert [f.track_id for f in faces] == [0, 1]
        for f in faces:
            assert np.hypot(*(centre(f.box) - first[f.track_id](t))) < 3
    assert detector.calls == 1
    assert max(engine.landmarker.model.batch_sizes) == 2  # both faces of a frame in one model call


def test_max_faces_keeps_the_largest(fakes):
    frames = [fakes.draw_frame(SIZE, [(60, 100, 20), (200, 100, 40)], seed=t) for t in range(3)]
    results, _, _, _ = run(fakes, frames, max_faces=1)
    assert len(results[0]) == 1 and results[0][0].box[0] > 150


def test_max_faces_zero_tracks_every_face(fakes):
    frames = [fakes.draw_frame(SIZE, [(60, 100, 20), (200, 100, 40), (280, 60, 16)], seed=t) for t in range(3)]
    results, _, _, _ = run(fakes, frames, max_faces=0)
    assert all(len(faces) == 3 for faces in results)
    assert [f.track_id for f in results[-1]] == [0, 1, 2]


def test_detect_every_picks_up_a_face_that_enters(fakes):
    a = lambda t: (60, 100)  # noqa: E731
    b = lambda t: (250, 100) if t >= 7 else None  # noqa: E731
    frames = fakes.moving_video(20, SIZE, [a, b])
    only_needed, _, _, _ = run(fakes, frames, max_faces=2, detect_every=0)
    periodic, _, detector, _ = run(fakes, frames, max_faces=2, detect_every=5)
    assert len(only_needed[-1]) == 1
    assert len(periodic[-1]) == 2 and len(periodic[9]) == 1 and len(periodic[10]) == 2
    assert detector.calls == 3  # frames 0, 5 and 10; not 15: with max_faces tracked there is no room to fill


def test_no_face_and_tiny_faces(fakes):
    results, tracker, detector, _ = run(fakes, [fakes.draw_frame(SIZE, [], seed=t) for t in range(5)])
    assert all(r == [] for r in results) and detector.calls == 5
    tiny = [fakes.draw_frame(SIZE, [(100, 100, 8)], seed=t) for t in range(3)]  # 16 px < 24 px
    results, tracker, _, _ = run(fakes, tiny)
    assert all(r == [] for r in results) and tracker.stats.tiny_faces_skipped == 3


def test_low_validator_score_loses_the_track(fakes):
    class Rejects:
        def __init__(self):
            self.frames = 0

        def score(self, image, landmarks):
            self.frames += 1
            return np.full(len(landmarks), 0.0 if self.frames > 3 else 1.0)

    frames = fakes.moving_video(6, SIZE, [lambda t: (100, 100)])
    tracker = FaceTracker(fakes.blob_engine(), fakes.BlobDetector(), Rejects(), TrackerConfig())
    counts = [len(tracker.update(f, t / 30)) for t, f in enumerate(frames)]
    assert counts[:3] == [1, 1, 1] and counts[3:] == [0, 0, 0]


def test_smoothing_reduces_jitter_of_a_still_face(fakes):
    rng = np.random.default_rng(0)
    frames = [fakes.draw_frame(SIZE, [(150 + rng.normal(0, 1.5), 100, 30)], seed=t) for t in range(40)]
    raw, _, _, _ = run(fakes, frames)
    smooth, _, _, _ = run(fakes, frames, smoothing={"method": "one-euro", "min_cutoff": 0.5, "beta": 0.0})
    jitter = lambda res: np.std([r[0].landmarks[:, 0].mean() for r in res[10:]])  # noqa: E731
    assert jitter(smooth) < 0.6 * jitter(raw)
    # the aligned filter is wired per track too: it averages the shape, and its centroid follows the raw
    # one exactly (aligned past shapes share the current centroid), so the blob's translation costs no lag
    aligned, _, _, _ = run(fakes, frames, smoothing=True)
    assert len(aligned) == len(raw)
    assert any(not np.allclose(a[0].landmarks, r[0].landmarks) for a, r in zip(aligned, raw))
    for a, r in zip(aligned, raw):
        np.testing.assert_allclose(a[0].landmarks.mean(0), r[0].landmarks.mean(0), atol=1e-6)


def test_tracker_state_holds_no_frames(fakes):
    import gc
    import weakref

    frames = fakes.moving_video(6, SIZE, [lambda t: (100 + 2 * t, 100)])
    refs = [weakref.ref(f) for f in frames]
    tracker = FaceTracker(fakes.blob_engine(), fakes.BlobDetector(), None, TrackerConfig())

    def stream():
        while frames:
            yield frames.pop(0)

    t = 0
    for frame in stream():  # not enumerate(): its reused result tuple would keep the last frame alive
        tracker.update(frame, t / 30)
        del frame
        gc.collect()
        assert all(r() is None for r in refs[:t + 1]), f"a frame up to {t} is still referenced"
        t += 1
    assert t == 6


def test_combined_score_needs_both(fakes):
    conf = [np.ones(5), np.full(5, 0.04), np.array([np.nan] * 5)]
    np.testing.assert_allclose(combined_score(None, conf, 0.5), [1.0, 0.04, 0.0])
    np.testing.assert_allclose(combined_score(np.array([0.04, 1.0, 1.0]), conf, 0.5), [0.2, 0.2, 0.0])
    with pytest.raises(ValueError):
        TrackerConfig(max_faces=-1)


class _Drifting:
    """Wraps an engine: from frame ``after`` on, every stepped shape is ``distort``-ed (a tracker gone wrong)."""

    def __init__(self, engine, distort, after: int = 3) -> None:
        self.engine, self.distort, self.after, self.steps = engine, distort, after, 0
        self.name, self.scheme, self.num_points = engine.name, engine.scheme, engine.num_points

    def start(self, image, boxes, points5=None):
        return self.engine.start(image, boxes, points5)

    def step(self, image, previous):
        self.steps += 1
        out = self.engine.step(image, previous)
        if self.steps >= self.after:
            for est in out:
                est.landmarks = self.distort(est.landmarks)
        return out

    def reset(self, estimate):
        return self.engine.reset(estimate)


def _stretch(points):
    centre = points.mean(axis=0)
    return (points - centre) * np.array([2.2, 1.0]) + centre  # over the face and its neighbour's place


def test_a_face_the_detector_no_longer_supports_is_redetected(fakes):
    frames = fakes.moving_video(30, SIZE, [lambda t: (160, 100)])
    detector = fakes.BlobDetector()
    engine = _Drifting(fakes.blob_engine(), _stretch, after=3)
    tracker = FaceTracker(engine, detector, None, TrackerConfig(verify_every=5, verify_misses=2))
    results = [tracker.update(f, t / 30) for t, f in enumerate(frames)]
    assert tracker.stats.unsupported >= 2  # lost at the second unsupported check, restarted, lost again...
    assert {f[0].track_id for f in results if f} == {0}  # ...under its old id (CRCT Eq. 8)
    # without the re-check the stretched shape would have been kept on every frame
    engine = _Drifting(fakes.blob_engine(), _stretch, after=3)
    quiet = FaceTracker(engine, fakes.BlobDetector(), None, TrackerConfig(verify_every=0))
    assert all(len(quiet.update(f, 0.0)) == 1 for f in frames) and quiet.stats.unsupported == 0


def test_shape_check_fails_a_scattered_shape(fakes):
    from facetrack.tracking.plausibility import load_shape_check

    frames = fakes.moving_video(8, SIZE, [lambda t: (160, 100)])
    scatter = lambda p: p + np.random.default_rng(0).normal(0, 12, p.shape)  # noqa: E731
    engine = _Drifting(fakes.blob_engine(), scatter, after=3)
    tracker = FaceTracker(engine, fakes.BlobDetector(), None, TrackerConfig(verify_every=0), load_shape_check())
    results = [tracker.update(f, 0.0) for f in frames]
    assert len(results[1]) == 1  # the undistorted template is face-like
    assert tracker.stats.implausible > 0 and tracker.stats.tracks_lost > 0


def test_face_free_frames_run_the_detector_at_the_idle_cadence(fakes):
    enters = 13
    frames = fakes.moving_video(20, SIZE, [lambda t: (160, 100) if t >= enters else None])
    results, tracker, detector, _ = run(fakes, frames, idle_detect_every=4)
    assert detector.calls <= 1 + enters // 4 + 2
    found = next(t for t, f in enumerate(results) if f)
    assert enters <= found <= enters + 3  # picked up within idle_detect_every - 1 frames


def test_a_shrunk_detection_maps_back_to_frame_pixels(fakes):
    frame = fakes.draw_frame(SIZE, [(160, 100, 30)])
    tracker = FaceTracker(fakes.blob_engine(), fakes.BlobDetector(), None, TrackerConfig())
    full, _, _ = tracker._detect(frame)
    half, _, _ = tracker._detect(frame, 0.5)
    np.testing.assert_allclose(half, full, atol=2.5)  # the same face, to the shrunk frame's resolution


class _Recording:
    """A detector that records the size of each image it is given."""

    def __init__(self, detector):
        self.detector, self.sizes = detector, []

    def detect(self, frame):
        self.sizes.append(frame.shape[:2])
        return self.detector.detect(frame)


@pytest.mark.parametrize("neighbour_x", [250, 140])  # far from the face; cut by the re-check's region
def test_re_checks_search_around_the_faces_and_the_whole_frame_every_few(fakes, neighbour_x):
    # margin 1 (default): face a's landmark box (about 60 px) grown by 60 px on each side
    a = lambda t: (60, 100)  # noqa: E731
    b = lambda t: (neighbour_x, 100) if t >= 3 else None  # noqa: E731
    frames = fakes.moving_video(17, SIZE, [a, b])
    runs = {}
    for search_every in (1, 3):
        detector = _Recording(fakes.BlobDetector())
        tracker = FaceTracker(fakes.blob_engine(), detector, None,
                              TrackerConfig(max_faces=0, verify_every=5, search_every=search_every))
        runs[search_every] = ([len(tracker.update(f, t / 30)) for t, f in enumerate(frames)], detector.sizes)
    counts, sizes = runs[1]
    assert counts[4] == 1 and counts[5] == 2  # every re-check searched the whole frame: found at the first one
    assert sizes == [(200, 320)] * 4
    counts, sizes = runs[3]
    # re-checks 5 and 10 look around face a only (x up to about 60 + 30 + 60 = 150), re-check 15 the whole frame
    assert counts[14] == 1 and counts[15] == 2
    assert sizes[0] == sizes[3] == (200, 320) and all(h < 200 and w <= 160 for h, w in sizes[1:3])


def test_a_face_the_re_check_region_holds_starts_a_track_and_one_it_cuts_waits_for_the_search(fakes):
    # face b appears at frame 3 just above face a (touching it); the re-checks at 5 and 10 look around a only
    frames = fakes.moving_video(17, (320, 260), [lambda t: (60, 130), lambda t: (60, 60) if t >= 3 else None])
    counts = {}
    for margin in (0.5, 1.5):  # b lies partly / wholly in the region
        detector = _Recording(fakes.BlobDetector())
        tracker = FaceTracker(fakes.blob_engine(), detector, None,
                              TrackerConfig(max_faces=0, verify_every=5, search_every=3,
                                            verify_margin=margin))
        counts[margin] = [len(tracker.update(f, t / 30)) for t, f in enumerate(frames)]
        assert detector.sizes[1][1] < 320  # a re-check on part of the frame
    assert counts[1.5][4] == 1 and counts[1.5][5] == 2
    assert counts[0.5][14] == 1 and counts[0.5][15] == 2  # cut by the region: found by the whole-frame search
