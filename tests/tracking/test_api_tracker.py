"""facetrack.Tracker / facetrack.Detector facades (facetrack/api.py) on every kind of source and bad input."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from facetrack.api import Detector, FrameResult, Tracker, resolve_engine
from facetrack.errors import DataError, ModelError
from facetrack.io.video import write_video

SIZE = (320, 200)


def make_tracker(fakes, **kw):
    return Tracker(model=fakes.blob_engine(), detector=fakes.BlobDetector(), validator=None, **kw)


def test_track_video_file_yields_one_result_per_frame(fakes, tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, fakes.moving_video(20, SIZE, [lambda t: (80 + 5 * t, 100)]), fps=25, fourcc="MJPG")
    tracker = make_tracker(fakes)
    results = list(tracker.track(str(path)))
    assert [r.index for r in results] == list(range(20))
    assert all(isinstance(r, FrameResult) and r.image is None for r in results)
    assert results[3].time_s == pytest.approx(3 / 25)
    assert all(len(r.faces) == 1 and r.faces[0].track_id == 0 for r in results)
    np.testing.assert_allclose(results[-1].faces[0].box, fakes.blob_box(80 + 5 * 19, 100, 30), atol=2.5)
    assert set(results[0].timings) == {"decode", "detection", "landmarks", "total"}
    assert tracker.stats.frames == 20 and tracker.stats.frames_with_face == 20


def test_frames_of_any_dtype_and_channels(fakes, tmp_path):
    base = fakes.draw_frame(SIZE, [(150, 100, 30)])
    gray = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)
    variants = [gray, cv2.cvtColor(base, cv2.COLOR_BGR2BGRA), base.astype(np.uint16) * 257, gray[..., None]]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate(variants[:3]):
        assert cv2.imwrite(str(folder / f"f{i + 1}.png"), img)
    for source in (folder, variants):
        results = list(make_tracker(fakes).track(source))
        assert len(results) == len(list(source.iterdir()) if hasattr(source, "iterdir") else source)
        for r in results:
            np.testing.assert_allclose(r.faces[0].box, fakes.blob_box(150, 100, 30), atol=2.0)


def test_4k_frames(fakes):
    frame = fakes.draw_frame((3840, 2160), [(2000, 1000, 300)])
    results = list(make_tracker(fakes).track([frame, frame]))
    # The fake model finds the blob on its 64 px crop: one crop pixel is ~12 image pixels here.
    np.testing.assert_allclose(results[1].faces[0].box, fakes.blob_box(2000, 1000, 300), atol=24)


def test_no_face_frames_give_empty_lists(fakes):
    results = list(make_tracker(fakes).track([fakes.draw_frame(SIZE, [], seed=i) for i in range(4)]))
    assert [r.faces for r in results] == [[], [], [], []]


def test_bad_sources(fakes, tmp_path):
    tracker = make_tracker(fakes)
    with pytest.raises(DataError, match="not found"):
        list(tracker.track(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DataError):
        list(tracker.track(junk))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError):
        list(tracker.track(empty))
    with pytest.raises(TypeError, match="Detector"):
        list(tracker.track(fakes.draw_frame(SIZE, [])))


def test_truncated_video_keeps_the_frames_before_the_damage(fakes, tmp_path):
    path = tmp_path / "cut.avi"
    write_video(path, fakes.moving_video(30, SIZE, [lambda t: (100, 100)]), fps=30, fourcc="MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    tracker = make_tracker(fakes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = list(tracker.track(path))
    assert 0 < len(results) < 30 and all(r.faces for r in results)
    assert tracker.truncated


def test_with_frames_and_smoothing_flag(fakes):
    frames = fakes.moving_video(3, SIZE, [lambda t: (100, 100)])
    assert make_tracker(fakes).config.smoothing == {"method": "aligned", "window": 5, "decay": 0.7}  # the default
    assert make_tracker(fakes, smoothing=None).config.smoothing is None
    assert make_tracker(fakes, smoothing="one-euro").config.smoothing["method"] == "one-euro"
    tracker = make_tracker(fakes, smoothing=True)
    assert tracker.config.smoothing is not None
    results = list(tracker.track(frames, with_frames=True))
    assert results[0].image.shape == (200, 320, 3)


def test_default_validator_missing_warns(fakes, monkeypatch, tmp_path):
    from facetrack.tracking import validator as fv

    monkeypatch.setattr(fv, "DEFAULT_PATH", tmp_path / "absent")
    with pytest.warns(RuntimeWarning, match="validator"):
        tracker = Tracker(model=fakes.blob_engine(), detector=fakes.BlobDetector())
    assert tracker.validator is None


def test_model_argument_forms(fakes, tmp_path):
    from facetrack.landmarker import Landmarker
    from facetrack.models import build_model, save_model

    import torch

    torch.manual_seed(0)
    tiny = build_model("aohr-lite-128", input_size=64, head_channels=16,
                       backbone={"name": "lite", "channels": [8, 8, 16, 16], "out_channels": 16, "blocks": [1, 1, 1]})
    save_model(tiny, tmp_path / "tiny")
    for model in (tiny, Landmarker(tiny), str(tmp_path / "tiny")):
        engine = resolve_engine(model)
        assert engine.num_points == 68 and hasattr(engine, "step")
    with pytest.raises(ModelError):
        resolve_engine(str(tmp_path / "nope"))
    with pytest.raises(ModelError):
        resolve_engine(3.5)
    # a random model runs end to end (its landmarks are meaningless; the control flow is what is tested)
    tracker = Tracker(model=str(tmp_path / "tiny"), detector=fakes.BlobDetector(), validator=None, keep_threshold=0.0,
                      min_face=0.0)  # random landmarks may collapse to a point
    results = list(tracker.track(fakes.moving_video(3, SIZE, [lambda t: (100, 100)])))
    assert all(r.faces and r.faces[0].landmarks.shape == (68, 2) for r in results)


def test_detector_facade_on_still_images(fakes, tmp_path):
    image = fakes.draw_frame(SIZE, [(60, 100, 20), (200, 100, 40)])
    detector = Detector(model=fakes.blob_engine(), detector=fakes.BlobDetector())
    faces = detector(image)
    assert len(faces) == 2 and faces[0].box[0] > 150  # largest first
    np.testing.assert_allclose(faces[1].landmarks.min(axis=0), [40, 80], atol=1.5)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), image)
    assert len(Detector(model=fakes.blob_engine(), detector=fakes.BlobDetector(), max_faces=1)(path)) == 1
    assert detector(fakes.draw_frame(SIZE, [])) == []


class _ThreadRecordingEngine:
    """A fake engine that notes which thread ran each step (the tracker steps ahead on its own thread)."""

    def __init__(self, engine):
        self.engine, self.threads = engine, []
        self.name, self.scheme, self.num_points = engine.name, engine.scheme, engine.num_points

    def start(self, image, boxes, points5=None):
        return self.engine.start(image, boxes, points5)

    def step(self, image, previous):
        import threading

        self.threads.append(threading.current_thread().name)
        return self.engine.step(image, previous)

    def reset(self, estimate):
        return self.engine.reset(estimate)


def _summary(results):
    return [[(f.track_id, f.landmarks.round(9).tolist(), f.score, f.detected) for f in r.faces] for r in results]


def test_stepping_ahead_gives_the_same_results(fakes):
    # two faces, one leaving for a while (a lost track, a re-detection), one entering: every path of the guess
    paths = [lambda t: (60 + 4 * t, 100), lambda t: None if 8 <= t < 14 else (260 - 3 * t, 90)]
    frames = fakes.moving_video(24, SIZE, paths, radius=25)
    ahead = _ThreadRecordingEngine(fakes.blob_engine())
    plain = _ThreadRecordingEngine(fakes.blob_engine())
    with_lookahead = list(Tracker(model=ahead, detector=fakes.BlobDetector(), validator=None).track(frames))
    without = list(Tracker(model=plain, detector=fakes.BlobDetector(), validator=None).track(iter(frames)))
    assert _summary(with_lookahead) == _summary(without)
    assert any(name.startswith("facetrack-step") for name in ahead.threads)  # the guess was made and used ...
    assert not any(name.startswith("facetrack-step") for name in plain.threads)  # ... and only with lookahead
    assert not any(t.name.startswith("facetrack-step") and t.is_alive() for t in __import__("threading").enumerate())


def test_read_error_after_frames_keeps_them(fakes):
    frames = fakes.moving_video(5, SIZE, [lambda t: (100, 100)])

    class Source(list):
        def __iter__(self):
            yield from frames[:3]
            raise OSError("disk went away")

    got = []
    with pytest.raises(OSError, match="disk went away"):
        for result in make_tracker(fakes).track(Source(frames)):
            got.append(result.index)
    assert got == [0, 1, 2]
