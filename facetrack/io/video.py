"""Frame sources (video file, folder of frames, camera) behind one streaming interface, and a video writer.

The tracker and the 300VW reader only see ``FrameSource``: iterate it for ``(index, time_s, frame)``
with frames decoded one at a time (never the whole video in memory), or ``read(i)`` for random access.
Every frame comes out as BGR uint8 (H, W, 3) through ``facetrack.data.sample.to_bgr8``.

A video that stops decoding before the frame count its header announces (a truncated download, a
damaged file) does not raise inside the caller's loop: iteration ends, ``truncated`` becomes True,
``frames_read`` says where it stopped, and a warning names the file and the frame.
"""
from __future__ import annotations

import logging
import math
import re
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from facetrack.data.sample import read_image, to_bgr8
from facetrack.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
DEFAULT_FPS = 30.0  # for frame folders and files whose header has no usable rate
_MAX_FORWARD_GRAB = 64  # below this distance, grabbing forward is cheaper and safer than seeking

Frame = tuple[int, float, np.ndarray]


class FrameSource:
    """A stream of frames: ``for index, time_s, frame in source`` plus ``read(i)``, ``fps``, ``size``.

    ``frame_count`` is None when it is unknown in advance (a camera). Use as a context manager, or call
    ``close()``, to release the decoder.
    """

    name: str
    fps: float
    frame_count: int | None
    size: tuple[int, int]  # (width, height) of the frames
    truncated: bool
    frames_read: int

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the decoder; the default has nothing to release."""

    def __len__(self) -> int:
        if self.frame_count is None:
            raise TypeError(f"{self.name}: the number of frames is unknown (live source)")
        return self.frame_count

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0 or (self.frame_count is not None and index >= self.frame_count):
            raise IndexError(f"{self.name}: frame {index} out of range (0..{self.frame_count})")
        return index


def open_source(spec: str | Path | int, fps: float | None = None) -> FrameSource:
    """Open a video file, a folder of frames or a camera index (an int, or a string of digits).

    ``fps`` overrides the rate used for ``time_s`` (frame folders have none; DEFAULT_FPS otherwise).
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit() and not Path(spec).exists()):
        return CameraSource(int(spec))
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, fps=fps)
    return VideoFileSource(path, fps=fps)


def _valid_fps(value: float) -> bool:
    return math.isfinite(value) and 0.0 < value < 1000.0


class VideoFileSource(FrameSource):
    """A video file decoded by OpenCV (FFmpeg backend): streamed iteration and verified seeking."""

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise DataError(self.path, "video file not found")
        cap = self._open()
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise DataError(self.path, "the video has no decodable frames")
        header_fps = float(cap.get(cv2.CAP_PROP_FPS))
        if fps is not None:
            self.fps = float(fps)
        elif _valid_fps(header_fps):
            self.fps = header_fps
        else:
            logger.warning("%s: no usable frame rate in the header (%r); assuming %s fps",
                           self.path, header_fps, DEFAULT_FPS)
            self.fps = DEFAULT_FPS
        first = to_bgr8(first)
        self.size = (int(first.shape[1]), int(first.shape[0]))
        self.frame_count = count if count > 0 else None
        self.truncated = False
        self.frames_read = 0
        self._cap: cv2.VideoCapture | None = cap
        self._next = 1  # index of the frame the random-access capture returns on its next read
        self._seek_reliable = True

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise DataError(self.path, "cannot open video (unreadable, truncated header or unsupported codec)")
        return cap

    def __iter__(self) -> Iterator[Frame]:
        # A fresh decoder per pass: iteration never depends on where read() left the shared one.
        cap = self._open()
        index = 0
        try:
            while True:
                try:
                    ok, frame = cap.read()
                except cv2.error as exc:  # a damaged packet can surface as an exception
                    logger.warning("%s: decoder error at frame %d: %s", self.path, index, exc)
                    ok, frame = False, None
                if not ok or frame is None:
                    break
                self.frames_read = max(self.frames_read, index + 1)
                yield index, index / self.fps, to_bgr8(frame)
                index += 1
        finally:
            cap.release()
        if self.frame_count is not None and index < self.frame_count:
            self.truncated = True
            message = (f"{self.path}: decoding stopped at frame {index} of {self.frame_count} "
                       "announced by the header (truncated or damaged file)")
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) by seeking; falls back to sequential grabbing when seeking lies."""
        index = self._check_index(index)
        if self._cap is None:
            self._cap = self._open()
            self._next = 0
        cap = self._cap
        near_ahead = self._next <= index < self._next + _MAX_FORWARD_GRAB
        seeked = not near_ahead and self._seek_reliable and self._seek(cap, index)
        if not near_ahead and not seeked and index < self._next:
            # Sequential fallback for a frame behind the decoder: restart and grab forward.
            cap.release()
            cap = self._cap = self._open()
            self._next = 0
        while self._next < index:
            if not cap.grab():
                raise DataError(self.path, f"cannot reach frame {index}: decoding stops at frame {self._next}")
            self._next += 1
        ok, frame = cap.read()
        if not ok or frame is None:
            raise DataError(self.path, f"cannot decode frame {index} (truncated or damaged file?)")
        self._next = index + 1
        if self._seek_reliable:
            reported = int(round(cap.get(cv2.CAP_PROP_POS_FRAMES)))
            if reported != index + 1:
                # The container's position bookkeeping cannot be trusted: stop seeking from now on and
                # decode this frame again the slow, certain way.
                self._seek_reliable = False
                logger.warning("%s: seeking is unreliable (asked %d, decoder at %d); using sequential reads",
                               self.path, index, reported - 1)
                cap.release()
                self._cap = None
                return self.read(index)
        return to_bgr8(frame)

    def _seek(self, cap: cv2.VideoCapture, index: int) -> bool:
        """Seek and check the decoder reports the frame asked for; False means 'do not trust seeking'."""
        if not cap.set(cv2.CAP_PROP_POS_FRAMES, float(index)):
            self._seek_reliable = False
            return False
        reported = int(round(cap.get(cv2.CAP_PROP_POS_FRAMES)))
        if reported != index:
            self._seek_reliable = False
            logger.warning("%s: seek to frame %d landed on %d; using sequential reads", self.path, index, reported)
            return False
        self._next = index
        return True

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _natural_key(path: Path) -> tuple:
    """Order frame files by the numbers in their names ('f2' before 'f10'), then by name."""
    parts = re.split(r"(\d+)", path.name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p), path.name


class ImageFolderSource(FrameSource):
    """A folder of frame images, ordered naturally by the number in each file name.

    An unreadable frame is skipped with a warning (its index stays reserved, so indices keep matching the
    file order) and recorded in ``bad_frames``.
    """

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        if not self.folder.is_dir():
            raise DataError(self.folder, "frame folder not found")
        self.files = sorted(
            (p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=_natural_key,
        )
        if not self.files:
            raise DataError(self.folder, f"no image frames ({', '.join(sorted(IMAGE_EXTENSIONS))}) in the folder")
        first = read_image(self.files[0])
        self.size = (int(first.shape[1]), int(first.shape[0]))
        self.fps = float(fps) if fps is not None else DEFAULT_FPS
        self.frame_count = len(self.files)
        self.truncated = False
        self.frames_read = 0
        self.bad_frames: list[int] = []

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            try:
                frame = read_image(path)
            except DataError as exc:
                if index not in self.bad_frames:
                    self.bad_frames.append(index)
                message = f"skipping frame {index}: {exc}"
                logger.warning(message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                continue
            self.frames_read = max(self.frames_read, index + 1)
            yield index, index / self.fps, frame

    def read(self, index: int) -> np.ndarray:
        return read_image(self.files[self._check_index(index)])


class CameraSource(FrameSource):
    """A live camera: endless iteration, ``time_s`` from the wall clock, no random access."""

    def __init__(self, index: int) -> None:
        self.index = int(index)
        self.name = f"camera {self.index}"
        self._cap = cv2.VideoCapture(self.index)
        if not self._cap.isOpened():
            self._cap.release()
            raise DataError(self.name, "cannot open camera (no such device, or it is busy)")
        rate = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.fps = rate if _valid_fps(rate) else DEFAULT_FPS
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.frame_count = None
        self.truncated = False
        self.frames_read = 0

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while self._cap is not None:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                logger.warning("%s: stopped delivering frames after %d", self.name, index)
                break
            self.frames_read = index + 1
            yield index, time.monotonic() - start, to_bgr8(frame)
            index += 1

    def read(self, index: int) -> np.ndarray:
        raise ValueError(f"{self.name}: a live camera has no random access")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# The architecture page calls the file reader VideoReader; keep that name importable.
VideoReader = VideoFileSource


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, fourcc: str = "mp4v") -> int:
    """Write frames (any dtype/channels ``to_bgr8`` accepts) to a video file; returns the number written.

    All frames must have the first frame's size. mp4v in .mp4 plays everywhere OpenCV does; pass
    ``fourcc="MJPG"`` with an .avi path for near-lossless test clips.
    """
    path = Path(path)
    if not (_valid_fps(float(fps))):
        raise ValueError(f"fps must be in (0, 1000), got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: cv2.VideoWriter | None = None
    size: tuple[int, int] | None = None
    count = 0
    try:
        for frame in frames:
            image = to_bgr8(np.asarray(frame))
            if writer is None:
                size = (int(image.shape[1]), int(image.shape[0]))
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), size)
                if not writer.isOpened():
                    raise DataError(path, f"cannot open a video writer (fourcc {fourcc!r})")
            elif (image.shape[1], image.shape[0]) != size:
                raise ValueError(f"{path}: frame {count} is {image.shape[1]}x{image.shape[0]}, "
                                 f"the video is {size[0]}x{size[1]}")
            writer.write(image)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        raise ValueError(f"{path}: no frames to write")
    return count
