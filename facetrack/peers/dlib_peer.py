"""dlib as users run it: the HOG frontal face detector, then the 68-point shape predictor
(Kazemi & Sullivan 2014, an ensemble of regression trees) from ``face-recognition-models``.

Its 68 points are in iBUG order. dlib returns integer pixel indices (the tree cascade's estimate rounded), in
the same 0-based, pixel-centre convention as facetrack: no offset is applied. The mean residual measured on
the shared 300-W *training* crops is recorded in ``data/dlib_boxes.json`` (under a pixel in x, ~0 in y: a
model bias, not a convention shift, since a 1-based/0-based mix-up would move x and y alike).

The shape predictor expects boxes like its own detector's (brow to lower lip, not the landmark extent). For
the ground-truth-box protocol ``from_boxes`` turns a landmark-extent box into that shape with the median
relation fitted on training faces where the detector fires (``data/dlib_boxes.json``).
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrack.errors import ModelError
from facetrack.io.results import FacePrediction
from facetrack.peers.outputs import TrackIds

DATA = Path(__file__).resolve().parent / "data"
BOX_FIT = DATA / "dlib_boxes.json"


def predictor_path() -> Path:
    """The 68-point model file shipped by ``face-recognition-models`` (found without importing it: its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("dlib's 68-point model needs: pip install face-recognition-models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall face-recognition-models")
    return path


def box_relation(path: Path = BOX_FIT) -> np.ndarray:
    """``[a0, b0, a1, b1]``: dlib box = extent box + (a0 w, b0 h, a1 w, b1 h) (w, h of the extent box)."""
    if not path.is_file():
        return np.zeros(4)
    return np.asarray(json.loads(path.read_text(encoding="utf-8"))["relative_offsets"], dtype=np.float64)


class DlibPeer:
    """dlib's HOG detector + 68-point shape predictor writing facetrack's output types.

    ``upsample``: dlib's pyramid upsampling count (0 finds faces of at least ~80 px; each +1 halves that
    and costs ~4x time). ``max_faces``: keep the largest K faces per frame (0 = all).
    """

    name = "dlib-68"
    detector_name = "dlib_hog"
    scheme = "ibug68"
    num_points = 68
    accepts_boxes = True

    def __init__(self, upsample: int = 0, max_faces: int = 0, model_path: str | Path | None = None) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ModelError("the dlib peer needs: pip install dlib-bin face-recognition-models") from exc
        self._dlib = dlib
        self.upsample = int(upsample)
        self.max_faces = int(max_faces)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_path or predictor_path()))
        self._relation = box_relation()

    # -- building blocks ---------------------------------------------------------------------------------

    def find_faces(self, rgb: np.ndarray) -> tuple[list[Any], list[float]]:
        """dlib rectangles and SVM scores, largest first (``max_faces`` kept)."""
        rects, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
        order = sorted(range(len(rects)), key=lambda i: -rects[i].area())
        if self.max_faces > 0:
            order = order[: self.max_faces]
        return [rects[i] for i in order], [float(scores[i]) for i in order]

    def shape(self, rgb: np.ndarray, rect: Any) -> np.ndarray:
        """68 points (float64, 0-based pixels) inside one dlib rectangle."""
        parts = self._predictor(rgb, rect).parts()
        return np.array([[p.x, p.y] for p in parts], dtype=np.float64)

    def rect_from_box(self, box: np.ndarray) -> Any:
        """A facetrack box (the landmark extent, as ``--boxes`` gives) -> the dlib rectangle it expects."""
        x0, y0, x1, y1 = np.asarray(box, dtype=np.float64).reshape(4)
        w, h = x1 - x0, y1 - y0
        a0, b0, a1, b1 = self._relation
        return self._dlib.rectangle(int(round(x0 + a0 * w)), int(round(y0 + b0 * h)),
                                    int(round(x1 + a1 * w)), int(round(y1 + b1 * h)))

    @staticmethod
    def rect_box(rect: Any) -> np.ndarray:
        # dlib rectangles are inclusive pixel indices: the same numbers in facetrack's convention
        return np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64)

    # -- the peer interface --------------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[FacePrediction]:
        """Every face of a BGR image: detector boxes and their 68 points."""
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        rects, scores = self.find_faces(rgb)
        return [FacePrediction(self.rect_box(r), self.shape(rgb, r), s, None) for r, s in zip(rects, scores)]

    def from_boxes(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[FacePrediction]:
        """68 points inside given (landmark-extent) boxes: no face detection."""
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return [FacePrediction(np.asarray(b, dtype=np.float64), self.shape(rgb, self.rect_from_box(b)), None, None)
                for b in boxes]

    def video(self) -> _DlibVideo:
        """Per-frame detection + shape (dlib has no tracker); ids by box overlap with the previous frame."""
        return _DlibVideo(self)


class _DlibVideo:
    def __init__(self, peer: DlibPeer) -> None:
        self.peer = peer
        self.ids = TrackIds()

    def process(self, frame: np.ndarray) -> tuple[list[tuple[int, FacePrediction]], dict[str, float]]:
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        rects, scores = self.peer.find_faces(rgb)
        t1 = time.perf_counter()
        faces = [FacePrediction(self.peer.rect_box(r), self.peer.shape(rgb, r), s, None) for r, s in zip(rects, scores)]
        t2 = time.perf_counter()
        ids = self.ids.assign(np.array([f.bbox for f in faces]).reshape(-1, 4))
        return list(zip(ids, faces)), {"detection": 1000.0 * (t1 - t0), "landmarks": 1000.0 * (t2 - t1)}

    def close(self) -> None:
        pass


def fit_box_relation(peer: DlibPeer, samples: Any, description: str = "") -> dict[str, Any]:
    """Fit how dlib's detector boxes sit on the landmark extent, on ``samples`` (*training* faces), and
    measure dlib's mean point residual with its own boxes there. Returns the JSON written to
    ``data/dlib_boxes.json``: medians of (box - extent) / extent size, per side."""
    rel, residuals, missed = [], [], 0
    for sample in samples:
        gt = np.asarray(sample.landmarks, dtype=np.float64)
        x0, y0 = gt.min(axis=0)
        x1, y1 = gt.max(axis=0)
        rgb = cv2.cvtColor(sample.load_image(), cv2.COLOR_BGR2RGB)
        rects, _ = peer.find_faces(rgb)
        hits = [r for r in rects if r.left() <= gt[:, 0].mean() <= r.right() and r.top() <= gt[:, 1].mean() <= r.bottom()]
        if not hits:
            missed += 1
            continue
        r = hits[0]
        w, h = x1 - x0, y1 - y0
        rel.append([(r.left() - x0) / w, (r.top() - y0) / h, (r.right() - x1) / w, (r.bottom() - y1) / h])
        residuals.append((peer.shape(rgb, r) - gt).mean(axis=0))
    if not rel:
        raise ModelError("dlib's detector found none of the faces: cannot fit its box relation")
    res = np.asarray(residuals)
    return {
        "relative_offsets": [round(float(v), 5) for v in np.median(np.asarray(rel), axis=0)],
        "form": "dlib box = landmark extent box + (a0*w, b0*h, a1*w, b1*h), w/h of the extent; medians",
        "data": description, "faces_offered": len(samples), "faces_detected": len(rel), "faces_missed": missed,
        "upsample": peer.upsample,
        "mean_residual_px": [round(float(v), 3) for v in res.mean(axis=0)],
        "median_residual_px": [round(float(v), 3) for v in np.median(res, axis=0)],
        "residual_note": "dlib points minus GT with dlib's own boxes (0-based pixels of 384 px crops); no offset "
                         "is applied: x and y differ, so this is model bias, not a coordinate convention",
    }
