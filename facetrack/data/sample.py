"""The one record every dataset reader returns: an annotated face in an image (or a video frame)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facetrack.errors import DataError


@dataclass
class FaceSample:
    """One annotated face.

    ``landmarks`` are 0-based pixels of the original image in the order of ``scheme``. ``bbox`` is the
    dataset's own face box ``[x0, y0, x1, y1]`` when it has one. ``subject`` groups faces of one identity
    (or source photograph) so that validation splits never share an identity with training.
    """

    image_path: Path
    landmarks: np.ndarray
    scheme: str
    bbox: np.ndarray | None = None
    visible: np.ndarray | None = None
    attributes: dict[str, int] = field(default_factory=dict)
    subject: str = ""
    source: str = ""

    def load_image(self) -> np.ndarray:
        """The image as BGR uint8 (H, W, 3); grayscale and RGBA are converted, 16-bit scaled down."""
        return read_image(self.image_path)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8 (H, W, 3), raising DataError naming the file when it cannot."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(path, "cannot decode image (corrupt or unsupported format)")
    return to_bgr8(image)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Normalise any decoded frame (gray, BGRA, 16-bit, float) to contiguous BGR uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] == 1:
        image = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image)
