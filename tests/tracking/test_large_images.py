"""Large photos: the face detector searches coarse to fine at bounded resolution, so one face that fills a
phone photo is one box (was: 3 boxes at 2000 px, 6 at 4032x3024, 41 at 8000x6000) and memory stays bounded."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import facetrack.tracking.detectors.base as base
from facetrack.tracking.detectors import list_detectors


def _astronaut_head(width: int, height: int) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(image[20:260, 120:320], (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.mark.skipif(list_detectors()["retinaface"] is not None, reason="retinaface not available")
@pytest.mark.parametrize("size", [(2000, 2400), (3024, 4032)])
def test_a_face_filling_a_large_photo_is_one_box(size):
    from facetrack.tracking.detectors import build_detector

    frame = _astronaut_head(*size)
    found = build_detector("retinaface").detect(frame)
    assert len(found) == 1
    x0, y0, x1, y1 = found.boxes[0]
    assert (x1 - x0) > 0.35 * size[0] and (y1 - y0) > 0.35 * size[1]  # the whole face, not a part of it


def test_passes_and_tiles_are_bounded_whatever_the_frame_size():
    seen = []

    def run(image):
        seen.append(image.shape[:2])
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))

    frame = np.zeros((6000, 8000, 3), np.uint8)
    base.detect_bounded(frame, 1.0, 40.0, run, 0.4)
    assert max(h * w for h, w in seen) <= max(base.MAX_PASS_PIXELS, base.TILE_SIDE ** 2)
    assert max(seen[0]) <= base.COARSE_SIDE  # the first pass sees the whole photo small
    assert base.pass_scales(360, 640, 1.0) == [1.0]  # ordinary video frames: one pass, as before
    windows = base.tiles(6000, 8000, base.TILE_SIDE, 256)
    covered = np.zeros((6000, 8000), bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_finer_passes_add_small_faces_and_drop_parts_of_large_ones():
    def run(image):  # the coarse pass finds one large face; finer passes "find" its parts and a small face
        h, w = image.shape[:2]
        if max(h, w) <= base.COARSE_SIDE:
            boxes = np.array([[0.1 * w, 0.1 * h, 0.6 * w, 0.6 * h]])
        else:
            boxes = np.array([[0.2 * w, 0.2 * h, 0.2 * w + 60, 0.2 * h + 60], [0.9 * w, 0.9 * h, 0.9 * w + 40, 0.9 * h + 40]])
        return boxes, np.full(len(boxes), 0.99), np.zeros((len(boxes), 5, 2))

    boxes, scores, _ = base.detect_bounded(np.zeros((1200, 1200, 3), np.uint8), 1.0, 40.0, run, 0.4)
    assert len(boxes) == 2
    assert boxes[0][2] - boxes[0][0] > 500 and boxes[1][2] - boxes[1][0] < 50
