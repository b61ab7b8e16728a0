"""Face detector plug-ins: the interface, the registry, and each available detector on pasted real faces."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.data.sample import read_image, to_bgr8
from facetrack.errors import ModelError
from facetrack.io.pts import read_pts
from facetrack.tracking.detectors import (
    DEFAULT_DETECTOR,
    Detections,
    FaceDetector,
    build_detector,
    check_frame,
    list_detectors,
    nms,
)
from facetrack.tracking.detectors.base import finalize, pyramid_scale

AVAILABLE = [name for name, reason in list_detectors().items() if reason is None]
CANVAS = (360, 480)  # height, width
OFFSET = np.array([200.0, 80.0])  # where the pasted face region's top-left corner lands
FACE_SCALE = 0.75

_cache: dict[str, FaceDetector] = {}


def detector(name: str, min_size: float | None = None) -> FaceDetector:
    """One instance per detector and size for the whole module (building MTCNN reads weights)."""
    key = f"{name}@{min_size}"
    if key not in _cache:
        _cache[key] = build_detector(name) if min_size is None else build_detector(name, min_size=min_size)
    return _cache[key]


@pytest.fixture
def pasted(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real 300W face scaled by 0.75 and pasted at a known offset into a larger flat canvas; its landmarks."""
    pts = sorted((shared_data / "300w" / "helen" / "trainset").glob("*.pts"))[0]
    image, points = read_image(pts.with_suffix(".jpg")), read_pts(pts)
    lo, hi = points.min(0), points.max(0)
    centre, side = (lo + hi) / 2, 1.6 * (hi - lo).max()
    x0, y0 = np.maximum(np.round(centre - side / 2).astype(int), 0)
    x1, y1 = np.minimum(np.round(centre + side / 2).astype(int), image.shape[1::-1])
    patch = cv2.resize(image[y0:y1, x0:x1], None, fx=FACE_SCALE, fy=FACE_SCALE, interpolation=cv2.INTER_AREA)
    canvas = np.full((*CANVAS, 3), 120, dtype=np.uint8)
    ox, oy = OFFSET.astype(int)
    canvas[oy:oy + patch.shape[0], ox:ox + patch.shape[1]] = patch
    sx, sy = patch.shape[1] / (x1 - x0), patch.shape[0] / (y1 - y0)
    # Pixel centres map as (u + 0.5) * s - 0.5 under a resize.
    moved = np.stack([(points[:, 0] - x0 + 0.5) * sx - 0.5, (points[:, 1] - y0 + 0.5) * sy - 0.5], axis=1)
    return canvas, moved + OFFSET


# --- interface and registry --------------------------------------------------------------------------------


def test_registry_lists_every_detector_and_builds_by_name() -> None:
    listed = list_detectors()
    assert set(listed) == {"mtcnn", "retinaface", "dlib_hog"}
    assert listed["mtcnn"] is None  # pure torch with packaged weights: always available
    assert DEFAULT_DETECTOR in listed and listed[DEFAULT_DETECTOR] is None
    with pytest.raises(ModelError, match="known: dlib_hog, mtcnn, retinaface"):
        build_detector("haar")


def test_missing_dependency_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dlib" else real(name, *a))
    assert "pip install dlib-bin" in list_detectors()["dlib_hog"]
    with pytest.raises(ModelError, match="pip install dlib-bin"):
        build_detector("dlib_hog")


def test_detections_validates_shapes_and_sizes() -> None:
    found = Detections([[0, 0, 10, 20]], [0.9])
    assert found.boxes.shape == (1, 4) and found.points5 is None and len(found) == 1
    assert found.sizes.tolist() == [20.0]
    with pytest.raises(ValueError, match="1 boxes but 2 scores"):
        Detections([[0, 0, 10, 20]], [0.9, 0.8])
    with pytest.raises(ValueError, match="point sets"):
        Detections([[0, 0, 10, 20]], [0.9], np.zeros((2, 5, 2)))
    assert Detections.empty(with_points=True).points5.shape == (0, 5, 2)


def test_finalize_thresholds_filters_small_faces_and_sorts() -> None:
    boxes = np.array([[0, 0, 30, 30], [0, 0, 50, 40], [0, 0, 10, 10], [0, 0, 60, 60]], dtype=float)
    points = np.arange(4 * 10, dtype=float).reshape(4, 5, 2)
    out = finalize(boxes, [0.8, 0.95, 0.99, 0.5], points, min_size=20, score_threshold=0.6, with_points=True)
    assert out.scores.tolist() == [0.95, 0.8]  # 10-px face and 0.5 score dropped, best first
    assert out.boxes.tolist() == [[0, 0, 50, 40], [0, 0, 30, 30]]
    np.testing.assert_array_equal(out.points5, points[[1, 0]])


def test_nms_union_and_min() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 81 / 119 > 0.5; box 3 lies inside boxes 0 and 1 with IoU 0.16 and 0.16.
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [3, 2]  # 3 lies inside 0 and 1: min-overlap 1
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match="mode"):
        nms(boxes, scores, 0.5, mode="max")


def test_pyramid_scale_only_shrinks() -> None:
    assert pyramid_scale(80, 20) == 0.25
    assert pyramid_scale(10, 20) == 1.0
    assert pyramid_scale(0, 20) == 1.0


def test_frames_other_than_bgr8_are_refused_with_the_fix() -> None:
    """Gray/RGBA/float frames are the caller's job (to_bgr8): detectors refuse them instead of guessing."""
    for bad in (np.zeros((20, 30), np.uint8), np.zeros((20, 30, 4), np.uint8), np.zeros((20, 30, 3), np.float32)):
        with pytest.raises(ValueError, match="to_bgr8"):
            check_frame(bad)
    assert check_frame(to_bgr8(np.zeros((20, 30, 4), np.uint8))).shape == (20, 30, 3)


# --- every available detector ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", AVAILABLE)
def test_conforms_to_the_interface_and_finds_nothing_on_a_blank_frame(name: str) -> None:
    det = detector(name)
    assert isinstance(det, FaceDetector) and det.name == name
    for frame in (np.full((*CANVAS, 3), 120, np.uint8), np.zeros((97, 131, 3), np.uint8)):
        found = det.detect(frame)
        assert isinstance(found, Detections) and len(found) == 0
        assert found.boxes.shape == (0, 4) and found.scores.shape == (0,)
    with pytest.raises(ValueError, match="to_bgr8"):
        det.detect(np.zeros(CANVAS, np.uint8))


@pytest.mark.shared_data
@pytest.mark.parametrize("min_size", [None, 100.0])
@pytest.mark.parametrize("name", AVAILABLE)
def test_box_covers_a_pasted_face_in_frame_pixels(name: str, min_size: float | None,
                                                  pasted: tuple[np.ndarray, np.ndarray]) -> None:
    """Default size, and min_size=100 (the face is ~145 px): detectors then run on a shrunk frame (RetinaFace
    at 0.2x, dlib at 0.8x, MTCNN's pyramid from 0.12x) and must still answer in the frame's pixels."""
    canvas, points = pasted
    found = detector(name, min_size).detect(canvas)
    assert len(found) >= 1
    assert np.all(np.diff(found.scores) <= 0)
    box = found.boxes[0]
    lo, hi = points.min(0), points.max(0)
    centroid, side = points.mean(0), (hi - lo).max()
    assert box[0] <= centroid[0] <= box[2] and box[1] <= centroid[1] <= box[3]
    box_centre = (box[:2] + box[2:]) / 2
    assert np.abs(box_centre - (lo + hi) / 2).max() < 0.25 * side  # on the face, not near it
    assert 0.6 < max(box[2] - box[0], box[3] - box[1]) / side < 1.6
    if found.points5 is not None:
        eyes = np.stack([points[36:42].mean(0), points[42:48].mean(0)])
        mouth = points[[48, 54]]
        np.testing.assert_allclose(found.points5[0, [0, 1]], eyes, atol=0.08 * side)
        np.testing.assert_allclose(found.points5[0, 2], points[30], atol=0.1 * side)
        np.testing.assert_allclose(found.points5[0, [3, 4]], mouth, atol=0.08 * side)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", AVAILABLE)
def test_gray_frame_through_to_bgr8_and_min_size(name: str, pasted: tuple[np.ndarray, np.ndarray]) -> None:
    canvas, points = pasted
    gray = cv2.cvtColor(canvas, cv2.COLOR_BGR2GRAY)
    found = detector(name).detect(to_bgr8(gray))
    assert len(found) >= 1
    centroid = points.mean(0)
    assert found.boxes[0, 0] <= centroid[0] <= found.boxes[0, 2]
    side = (points.max(0) - points.min(0)).max()
    big = build_detector(name, min_size=3 * side)  # the pasted face is far below this size
    assert len(big.detect(canvas)) == 0


@pytest.mark.shared_data
@pytest.mark.skipif("mtcnn" not in AVAILABLE, reason="mtcnn unavailable")
def test_mtcnn_is_deterministic_and_its_pyramid_starts_at_min_size(pasted: tuple[np.ndarray, np.ndarray]) -> None:
    canvas, _ = pasted
    det = detector("mtcnn")
    first, second = det.detect(canvas), det.detect(canvas.copy())
    np.testing.assert_array_equal(first.boxes, second.boxes)
    np.testing.assert_array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(first.points5, second.points5)
    scales = det.scales(360, 480)
    assert scales[0] == pytest.approx(12 / det.min_size)
    assert 360 * scales[-1] >= 12 > 360 * scales[-1] * det.factor


def test_default_prefers_retinaface_and_falls_back_to_mtcnn(monkeypatch: pytest.MonkeyPatch) -> None:
    import facetrack.tracking.detectors as detectors

    expected = "retinaface" if list_detectors()["retinaface"] is None else "mtcnn"
    assert detectors.DEFAULT_DETECTOR == expected
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    try:
        assert importlib.reload(detectors).DEFAULT_DETECTOR == "mtcnn"
    finally:
        monkeypatch.undo()
        importlib.reload(detectors)
