"""MTCNN (Zhang et al., IEEE SPL 2016) in plain torch + numpy, with the original Caffe weights.

The three networks and the layer names are those of facenet-pytorch, whose converted weights we ship
(facetrack/weights/mtcnn.safetensors, made by tools/convert_mtcnn.py). The cascade follows the authors'
MATLAB ``detect_face.m``: scale pyramid with factor 0.709 from ``12 / min_size``; P-Net proposals, NMS 0.5 per
scale and 0.7 over scales, box regression, squaring; R-Net on 24x24 crops (zero padded outside the frame),
NMS 0.7, regression, squaring; O-Net on 48x48 crops, regression, 5 points, NMS 0.7 on the smaller area.
Internally boxes are the original's 1-based inclusive pixels; ``detect`` returns 0-based ones.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from facetrack.errors import ModelError
from facetrack.tracking.detectors.base import Detections, check_frame, finalize, nms, weights_dir

WEIGHTS = "mtcnn.safetensors"


class PNet(nn.Module):
    """Proposal net: fully convolutional, a 12x12 window per output cell (stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # Caffe flattened the transposed (W, H) blob: permute so the dense weights line up.
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net on 48x48 crops: score, box regression and five points."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def load_nets(path: str | Path | None = None) -> tuple[PNet, RNet, ONet]:
    """The three networks with the packaged weights, in eval mode; ModelError when the file is wrong."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else weights_dir() / WEIGHTS
    if not path.is_file():
        raise ModelError(f"{path}: MTCNN weights not found (reinstall facetrack)")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise ModelError(f"{path}: cannot read MTCNN weights ({exc})") from exc
    nets = (PNet(), RNet(), ONet())
    for prefix, net in zip(("pnet.", "rnet.", "onet."), nets):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{path}: weights do not match MTCNN's {prefix[:-1]} ({exc})") from exc
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
    return nets


def _normalise(batch: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) RGB uint8/float -> (B, 3, H, W) float32 in [-1, 1] as the nets were trained."""
    t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
    return (t - 127.5) * 0.0078125


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (``rerec``)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + 0.5 * w - 0.5 * side
    out[:, 1] = boxes[:, 1] + 0.5 * h - 0.5 * side
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray, inclusive: bool = True) -> np.ndarray:
    """Apply box offsets (fractions of the box size); ``inclusive`` uses x1 - x0 + 1 like ``bbreg``."""
    out = boxes.copy()
    extra = 1.0 if inclusive else 0.0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    out[:, 0:4] = boxes[:, 0:4] + reg * np.stack([w, h, w, h], axis=1)
    return out


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square crops of 1-based inclusive boxes (truncated to ints), zero outside the frame, resized."""
    height, width = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    ib = np.trunc(boxes[:, :4]).astype(np.int64)
    for k, (x0, y0, x1, y1) in enumerate(ib):
        w, h = x1 - x0 + 1, y1 - y0 + 1
        if w < 1 or h < 1:
            continue
        patch = np.zeros((h, w, 3), dtype=np.uint8)
        sx0, sy0 = max(x0, 1), max(y0, 1)
        sx1, sy1 = min(x1, width), min(y1, height)
        if sx1 >= sx0 and sy1 >= sy0:
            patch[sy0 - y0:sy1 - y0 + 1, sx0 - x0:sx1 - x0 + 1] = rgb[sy0 - 1:sy1, sx0 - 1:sx1]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


class MTCNNDetector:
    """MTCNN face detector; ``detect`` gives boxes (square-ish, brows to chin), scores and five points.

    ``min_size`` (pixels) sets the first pyramid scale, so larger values are faster; ``thresholds`` are the
    P-Net and R-Net score thresholds of the original (0.6, 0.7); ``score_threshold`` is O-Net's (0.7).
    ``batch_size`` bounds R-Net/O-Net batches (memory); ``num_threads``, when given, sets torch's (process-wide)
    thread count on each call.
    """

    name = "mtcnn"

    def __init__(self, min_size: float = 20.0, score_threshold: float = 0.7,
                 thresholds: tuple[float, float] = (0.6, 0.7), factor: float = 0.709,
                 batch_size: int = 256, num_threads: int | None = None,
                 weights: str | Path | None = None) -> None:
        if min_size < 12:
            raise ValueError(f"MTCNN cannot find faces smaller than its 12-pixel window, min_size={min_size}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"pyramid factor must be in (0, 1), got {factor}")
        self.min_size = float(min_size)
        self.score_threshold = float(score_threshold)
        self.thresholds = (float(thresholds[0]), float(thresholds[1]))
        self.factor = float(factor)
        self.batch_size = int(batch_size)
        self.num_threads = num_threads
        self.pnet, self.rnet, self.onet = load_nets(weights)

    def scales(self, height: int, width: int) -> list[float]:
        """The pyramid: from 12 / min_size down while the shorter side still holds a 12-pixel window."""
        m = 12.0 / self.min_size
        shorter = min(height, width) * m
        scales, scale = [], m
        while shorter >= 12:
            scales.append(scale)
            scale *= self.factor
            shorter *= self.factor
        return scales

    @torch.inference_mode()
    def detect(self, frame: np.ndarray) -> Detections:
        """Faces in a BGR uint8 frame (0-based pixel boxes and points), best first."""
        check_frame(frame)
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        boxes = self._stage1(rgb)
        if len(boxes):
            boxes = self._stage2(rgb, boxes)
        points = np.zeros((0, 5, 2))
        if len(boxes):
            boxes, points = self._stage3(rgb, boxes)
        # 1-based inclusive pixels -> 0-based: the first pixel (1) is at 0, the last (x1) at x1 - 1.
        out = boxes[:, :4] - 1.0 if len(boxes) else np.zeros((0, 4))
        scores = boxes[:, 4] if len(boxes) else np.zeros(0)
        return finalize(out, scores, points, self.min_size, self.score_threshold, with_points=True)

    def _batched(self, net: nn.Module, crops: np.ndarray) -> list[np.ndarray]:
        outs: list[list[np.ndarray]] = []
        for start in range(0, len(crops), self.batch_size):
            result = net(_normalise(crops[start:start + self.batch_size]))
            outs.append([r.numpy() for r in result])
        return [np.concatenate(parts, axis=0) for parts in zip(*outs)]

    def _stage1(self, rgb: np.ndarray) -> np.ndarray:
        """P-Net proposals over the pyramid: (K, 5) boxes + score, regressed and squared."""
        height, width = rgb.shape[:2]
        found = []
        for scale in self.scales(height, width):
            hs, ws = int(height * scale + 1), int(width * scale + 1)
            image = cv2.resize(rgb, (ws, hs), interpolation=cv2.INTER_AREA)
            reg, prob = self.pnet(_normalise(image[None]))
            prob, reg = prob[0, 1].numpy(), reg[0].numpy()
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if len(ys) == 0:
                continue
            # (the original's nms.m counts inclusive widths, hence offset=1 throughout)
            # Cell (y, x) sees the 12x12 window at (2x, 2y) of the scaled image; back to 1-based frame pixels.
            q0 = np.floor((2.0 * np.stack([xs, ys], axis=1) + 1) / scale)
            q1 = np.floor((2.0 * np.stack([xs, ys], axis=1) + 12) / scale)
            cand = np.concatenate([q0, q1, prob[ys, xs, None], reg[:, ys, xs].T], axis=1)
            found.append(cand[nms(cand[:, :4], cand[:, 4], 0.5, offset=1.0)])
        if not found:
            return np.zeros((0, 5))
        cand = np.concatenate(found, axis=0)
        cand = cand[nms(cand[:, :4], cand[:, 4], 0.7, offset=1.0)]
        boxes = _regress(cand[:, :5], cand[:, 5:9], inclusive=False)
        return _square(boxes)

    def _stage2(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """R-Net re-scores and refines the proposals."""
        reg, prob = self._batched(self.rnet, _crops(rgb, boxes, 24))
        keep = prob[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg = reg[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, offset=1.0)
        boxes = _regress(boxes[pick], reg[pick])
        return _square(boxes)

    def _stage3(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net: final scores, boxes and five points (kept above ``score_threshold`` by ``finalize``)."""
        reg, pts, prob = self._batched(self.onet, _crops(rgb, boxes, 48))
        # Like the original, candidates below the threshold go before NMS (they never suppress a face).
        keep = prob[:, 1] > self.score_threshold
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg, pts = reg[keep], pts[keep]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        px = w[:, None] * pts[:, 0:5] + boxes[:, 0:1] - 1
        py = h[:, None] * pts[:, 5:10] + boxes[:, 1:2] - 1
        points = np.stack([px, py], axis=2)
        boxes = _regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min", offset=1.0)
        return boxes[pick], points[pick]
