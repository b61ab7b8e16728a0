"""The one record every dataset reader returns: an annotated face in an image (or a video frame)."""
from __future__ import annotations

import struct
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
    """Read an image file as BGR uint8 (H, W, 3), upright: a JPEG/PNG/WebP EXIF orientation tag (phone
    photos) is applied, as every viewer does. Raises DataError naming the file when it cannot be read."""
    return read_image_oriented(path)[0]


def read_image_oriented(path: str | Path) -> tuple[np.ndarray, int]:
    """``(image, orientation)``: the upright BGR uint8 image and the EXIF orientation (1-8) that was applied
    to the stored pixels to make it so (1 when the file has none), so that outputs can report it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    # IMREAD_UNCHANGED keeps 16-bit and alpha but ignores EXIF orientation: apply it here, once.
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:  # OpenCV 5 fails on some rotated TIFFs unless it applies their orientation itself
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            return np.ascontiguousarray(image), 1
    if image is None:
        raise DataError(path, "cannot decode image (corrupt or unsupported format)")
    orientation = exif_orientation(path)
    return apply_orientation(to_bgr8(image), orientation), orientation


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag (0x0112) of an image file, 1 (upright) when absent or unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 17)  # EXIF lives in the first 64 KiB of a JPEG
    except OSError:
        return 1
    tiff = _exif_block(head)
    if tiff is None or len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for k in range(count):
            tag, kind, _, value = struct.unpack_from(order + "HHI4s", tiff, ifd + 2 + 12 * k)
            if tag == 0x0112 and kind == 3:  # SHORT
                (orientation,) = struct.unpack_from(order + "H", value, 0)
                return int(orientation) if 1 <= orientation <= 8 else 1
    except struct.error:
        return 1
    return 1


def _exif_block(head: bytes) -> bytes | None:
    """The TIFF-structured EXIF payload of a JPEG (APP1), PNG (eXIf) or WebP (EXIF chunk), None otherwise."""
    if head[:2] == b"\xff\xd8":  # JPEG: walk the marker segments up to the image data
        pos = 2
        while pos + 4 <= len(head) and head[pos] == 0xFF:
            marker = head[pos + 1]
            if marker in (0xD9, 0xDA):
                break
            (length,) = struct.unpack_from(">H", head, pos + 2)
            if marker == 0xE1 and head[pos + 4:pos + 10] == b"Exif\x00\x00":
                return head[pos + 10:pos + 2 + length]
            pos += 2 + length
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        while pos + 8 <= len(head):
            (length,) = struct.unpack_from(">I", head, pos)
            if head[pos + 4:pos + 8] == b"eXIf":
                return head[pos + 8:pos + 8 + length]
            if head[pos + 4:pos + 8] == b"IDAT":
                break
            pos += 12 + length
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        pos = 12
        while pos + 8 <= len(head):
            chunk, (length,) = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)
            if chunk == b"EXIF":
                data = head[pos + 8:pos + 8 + length]
                return data[6:] if data.startswith(b"Exif\x00\x00") else data
            pos += 8 + length + (length & 1)
        return None
    return None  # TIFF: OpenCV's reader applies the orientation itself


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for an EXIF orientation 1-8 (TIFF 6.0; 6 = rotate 90 degrees clockwise)."""
    if orientation in (5, 7):  # transpose (5), transverse (7)
        image = np.ascontiguousarray(np.swapaxes(image, 0, 1))
        return cv2.rotate(image, cv2.ROTATE_180) if orientation == 7 else image
    rotations = {3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE, 8: cv2.ROTATE_90_COUNTERCLOCKWISE}
    if orientation in rotations:
        return cv2.rotate(image, rotations[orientation])
    if orientation in (2, 4):  # mirrored left-right (2), top-bottom (4)
        return cv2.flip(image, 1 if orientation == 2 else 0)
    return image


def to_bgr8(image: np.ndarray, color: str = "bgr") -> np.ndarray:
    """Normalise any decoded frame (gray, BGRA, 16-bit, float in [0, 1]) to contiguous BGR uint8.

    ``color`` says the channel order of a 3/4-channel ``image``: "bgr" (OpenCV's, the default) or "rgb"
    (PIL, imageio, matplotlib). A float image must hold values in [0, 1]: one in 0-255 would silently
    saturate to white, so it is refused with a ValueError.
    """
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype.kind == "f":
        if image.size:
            low, high = float(np.nanmin(image)), float(np.nanmax(image))
            if low < -1e-3 or high > 1.0 + 1e-3:
                raise ValueError(f"a float image must hold values in [0, 1], got [{low:g}, {high:g}]: "
                                 "divide by 255 or pass uint8")
        image = np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {image.dtype}: expected uint8, uint16 or float in [0, 1]")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"an image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGR if color == "rgb" else cv2.COLOR_BGRA2BGR)
    elif color == "rgb":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)
