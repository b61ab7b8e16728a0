"""Every input form of facetrack.Detector / facetrack.Tracker, per-call boxes, clear errors, conversions and
drawing (facetrack/api.py, facetrack/drawing.py, facetrack/data/sample.py)."""
from __future__ import annotations

import struct
import sys

import cv2
import numpy as np
import pytest
import torch

import facetrack
from facetrack.api import Detector, Faces, Tracker, to_frame
from facetrack.data.sample import exif_orientation, read_image, read_image_oriented, to_bgr8
from facetrack.errors import ModelError

SIZE = (320, 200)


def blob_detector(fakes, **kw):
    return Detector(model=fakes.blob_engine(), detector=fakes.BlobDetector(), **kw)


def picture(fakes):
    """Two discs off-centre (so that a turned image puts them elsewhere) on a dark background."""
    return fakes.draw_frame(SIZE, [(70, 60, 25), (230, 120, 40)])


def boxes_of(faces):
    return np.array([f.box for f in faces])


def with_exif_orientation(jpeg: bytes, orientation: int, big_endian: bool) -> bytes:
    """A JPEG with an APP1 Exif segment holding only IFD0's Orientation tag, as a phone camera writes."""
    order = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(order + "HI", 42, 8)
    tiff += struct.pack(order + "H", 1) + struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(order + "I", 0)
    app1 = b"Exif\x00\x00" + tiff
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


@pytest.mark.parametrize("orientation, stored_from_upright", [
    (6, lambda im: cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE)),  # phone held upright: sensor is landscape
    (8, lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE)),
    (3, lambda im: cv2.rotate(im, cv2.ROTATE_180)),
    (2, lambda im: cv2.flip(im, 1)),
])
def test_rotated_phone_jpeg_is_read_upright(fakes, tmp_path, orientation, stored_from_upright):
    upright = picture(fakes)
    ok, encoded = cv2.imencode(".jpg", stored_from_upright(upright), [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    path = tmp_path / "phone.jpg"
    path.write_bytes(with_exif_orientation(encoded.tobytes(), orientation, big_endian=orientation % 2 == 0))
    assert exif_orientation(path) == orientation
    image, applied = read_image_oriented(path)
    assert applied == orientation and image.shape == upright.shape
    assert np.abs(image.astype(int) - upright).mean() < 3  # JPEG noise only
    detector = blob_detector(fakes)
    from_file, from_array = detector(path), detector(upright)
    assert from_file.orientation == orientation and from_array.orientation == 1
    np.testing.assert_allclose(boxes_of(from_file), boxes_of(from_array), atol=1.5)
    np.testing.assert_allclose(from_file[0].landmarks, from_array[0].landmarks, atol=1.5)


def test_images_without_orientation(fakes, tmp_path):
    upright = picture(fakes)
    for name in ("plain.jpg", "plain.png"):
        assert cv2.imwrite(str(tmp_path / name), upright)
        assert exif_orientation(tmp_path / name) == 1 and read_image(tmp_path / name).shape == upright.shape
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00")  # a truncated header is no orientation
    assert exif_orientation(tmp_path / "junk.jpg") == 1


def test_every_still_input_form_gives_the_same_faces(fakes, tmp_path):
    from PIL import Image

    bgr = picture(fakes)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    path = tmp_path / "still.png"
    assert cv2.imwrite(str(path), bgr)
    detector = blob_detector(fakes)
    reference = detector(bgr)
    assert isinstance(reference, Faces) and isinstance(reference, list) and len(reference) == 2
    for form in (str(path), path, Image.fromarray(rgb), bgr.astype(np.float32) / 255, bgr.astype(np.uint16) * 257):
        faces = detector(form)
        np.testing.assert_allclose(boxes_of(faces), boxes_of(reference), atol=0.5)
    np.testing.assert_allclose(boxes_of(detector(rgb, color="rgb")), boxes_of(reference), atol=0.5)
    # batches: a list of paths, a list of mixed forms, a stacked array; one Faces per image
    for batch in ([str(path), str(path)], [path, Image.fromarray(rgb), bgr], np.stack([bgr, bgr])):
        out = detector(batch)
        assert isinstance(out, list) and len(out) == len(batch)
        assert all(isinstance(f, Faces) and len(f) == 2 for f in out)


def test_color_order_is_honoured():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    rgb = bgr[:, :, ::-1]
    assert np.array_equal(to_frame(rgb, "rgb")[0], bgr) and np.array_equal(to_frame(bgr)[0], bgr)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(to_bgr8(rgba, color="rgb"), bgr)
    from PIL import Image

    assert np.array_equal(to_frame(Image.fromarray(rgb))[0], bgr)  # PIL is RGB by nature
    assert np.array_equal(to_frame(Image.fromarray(rgba, "RGBA"))[0], bgr)
    with pytest.raises(ValueError, match="color"):
        to_frame(bgr, "hsv")


def test_clear_errors_for_bad_images(fakes):
    detector = blob_detector(fakes)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        detector(picture(fakes).astype(np.float32))  # 0-255 floats would silently find no face
    with pytest.raises(TypeError, match="path"):
        to_frame(np.array(["a.jpg"]))
    with pytest.raises(ValueError, match="shape"):
        to_frame(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        to_frame(np.zeros((4, 5, 3), np.int64))


def test_per_call_boxes_skip_the_detector(fakes):
    class NoDetector:
        def detect(self, frame):
            raise AssertionError("the detector must not run when boxes are given")

    image = picture(fakes)
    detector = Detector(model=fakes.blob_engine(), detector=NoDetector())
    faces = detector(image, boxes=[fakes.blob_box(230, 120, 40)])
    assert len(faces) == 1 and faces[0].score is None
    np.testing.assert_allclose(faces[0].box, fakes.blob_box(230, 120, 40))
    single = detector(image, boxes=fakes.blob_box(70, 60, 25))  # one box without the outer list
    assert len(single) == 1
    batch = detector([image, image], boxes=[[fakes.blob_box(70, 60, 25)], []])
    assert [len(f) for f in batch] == [1, 0]
    with pytest.raises(ValueError, match="x1 > x0"):
        detector(image, boxes=[[10, 10, 5, 20]])
    with pytest.raises(ValueError, match="one list per image"):
        detector([image, image], boxes=[[fakes.blob_box(70, 60, 25)]])


def test_devices_that_do_not_exist(fakes):
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="not available"):
            Detector(model=fakes.blob_engine(), detector=fakes.BlobDetector(), device="cuda")
        with pytest.raises(ModelError, match="device='cpu'"):
            Tracker(model=fakes.blob_engine(), detector=fakes.BlobDetector(), validator=None, device="cuda:0")
    with pytest.raises(ModelError, match="unknown device"):
        Detector(model=fakes.blob_engine(), detector=fakes.BlobDetector(), device="gpu-please")


def test_results_to_numpy_and_pandas(fakes, monkeypatch):
    faces = blob_detector(fakes)(picture(fakes))
    arrays = faces.to_numpy()
    assert arrays["boxes"].shape == (2, 4) and arrays["landmarks"].shape == (2, 68, 2)
    assert arrays["confidences"].shape == (2, 68) and arrays["scores"].shape == (2,)
    empty = blob_detector(fakes)(fakes.draw_frame(SIZE, []))
    assert empty.to_numpy()["landmarks"].shape == (0, 68, 2)
    results = list(Tracker(model=fakes.blob_engine(), detector=fakes.BlobDetector(), validator=None).track(
        fakes.moving_video(3, SIZE, [lambda t: (100, 100), lambda t: (250, 100)])))
    assert results[0].to_numpy()["track_ids"].tolist() == [0, 1]
    pd = pytest.importorskip("pandas")
    table = faces.to_pandas()
    assert len(table) == 2 and list(table.columns[:6]) == ["image", "box_x0", "box_y0", "box_x1", "box_y1", "score"]
    assert table["x_67"].tolist() == arrays["landmarks"][:, 67, 0].tolist()
    frames = facetrack.to_pandas(results)
    assert len(frames) == 6 and list(frames.columns[:3]) == ["frame", "time_s", "track_id"]
    assert isinstance(frames, pd.DataFrame)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        faces.to_pandas()


def test_tracker_input_forms_and_first_frame_boxes(fakes, tmp_path):
    from PIL import Image

    frames = fakes.moving_video(4, SIZE, [lambda t: (80 + 4 * t, 100)])
    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(tmp_path / f"{i}.png"))
        assert cv2.imwrite(paths[-1], frame)
    make = lambda: Tracker(model=fakes.blob_engine(), detector=fakes.BlobDetector(), validator=None)  # noqa: E731
    expected = [r.faces[0].box for r in make().track(frames)]
    for source, color in ((paths, "bgr"), (np.stack(frames), "bgr"), ([Image.fromarray(f[:, :, ::-1]) for f in frames],
                          "bgr"), ([f[:, :, ::-1] for f in frames], "rgb")):
        got = [r.faces[0].box for r in make().track(source, color=color)]
        np.testing.assert_allclose(got, expected, atol=0.5)
    tracker = make()
    results = list(tracker.track(frames, boxes=[fakes.blob_box(80, 100, 30)]))
    assert tracker.detector.calls == 0 and all(len(r.faces) == 1 for r in results)
    with pytest.raises(TypeError, match="Detector"):
        list(make().track(Image.fromarray(frames[0])))


def test_draw_any_result(fakes):
    image = picture(fakes)
    faces = blob_detector(fakes)(image)
    drawn = facetrack.draw(image, faces)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert not np.array_equal(drawn, image) and np.array_equal(image, picture(fakes))  # a copy
    green = (drawn[..., 1] > 200) & (drawn[..., 0] < 50)  # the largest face's colour
    assert green.any()
    result = next(Tracker(model=fakes.blob_engine(), detector=fakes.BlobDetector(), validator=None).track([image]))
    assert not np.array_equal(facetrack.draw(image, result), image)
    assert np.array_equal(facetrack.draw(image, []), image)
    rgb = facetrack.draw(image[:, :, ::-1], faces, color="rgb")
    np.testing.assert_array_equal(rgb, drawn)


def test_detector_reads_a_rejected_face_again_turned_half_a_turn(fakes):
    """The validator prefers the half-turned reading (as for an upside-down face whose detector points are named as
    if upright): the Detector keeps that one."""
    from facetrack.api import Detector
    from facetrack.data.transforms import face_roll
    from facetrack.schemes import get_scheme

    class WithPoints(fakes.BlobDetector):
        def detect(self, frame):
            found = super().detect(frame)
            lo, hi = found.boxes[:, None, :2], found.boxes[:, None, 2:]
            found.points5 = lo + fakes.TEMPLATE[[36, 45, 30, 48, 54]][None] * (hi - lo)
            return found

    class PrefersUpsideDown:
        def score(self, image, landmarks):
            return np.array([1.0 if abs(face_roll(p, get_scheme("ibug68"))) > 150 else 0.1 for p in landmarks])

    frame = fakes.draw_frame(SIZE, [(150, 100, 30)])
    plain = Detector(model=fakes.blob_engine(), detector=WithPoints(), validator=None)(frame)
    checked = Detector(model=fakes.blob_engine(), detector=WithPoints(), validator=PrefersUpsideDown())(frame)
    assert abs(face_roll(plain[0].landmarks, get_scheme("ibug68"))) < 30
    assert abs(face_roll(checked[0].landmarks, get_scheme("ibug68"))) > 150
