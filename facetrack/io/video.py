"""Frame sources (video file, folder of frames, camera) behind one streaming interface, and a video writer.

The tracker and the 300VW reader only see ``FrameSource``: iterate it for ``(index, time_s, frame)``
with frames decoded one at a time (never the whole video in memory), or ``read(i)`` for random access.
Every frame comes out as BGR uint8 (H, W, 3) through ``facetrack.data.sample.to_bgr8``. ``time_s`` is
the decoder's timestamp relative to the first frame (right for variable-frame-rate phone videos);
``index / fps`` for frame folders and whenever the caller gives ``fps``; the wall clock for cameras.

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
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any
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


class FrameSource(ABC):
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

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield ``(index, time_s, frame)`` from the first frame, decoding one frame at a time."""

    @abstractmethod
    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as BGR uint8."""

    def iter_from(self, start: int) -> Iterator[Frame]:
        """Like iteration, from frame ``start`` on (a resumed run); frames before it are not converted."""
        for item in self:
            if item[0] >= start:
                yield item

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
    """A video file decoded by OpenCV (FFmpeg backend): streamed iteration and verified seeking.

    Seeking is trusted only while it proves itself: after each seek the decoded frame's timestamp must
    match frame ``i`` (the timestamps recorded by a full pass, else ``i / fps``) within half a frame.
    Variable-frame-rate files fail that check, and from then on ``read`` decodes sequentially.

    Containers often estimate their frame count; a pass that ends short of it by less than half a second
    and 5% of the count corrects ``frame_count`` instead of reporting truncation.
    """

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
        self._pts0_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
        if not (math.isfinite(self._pts0_ms) and self._pts0_ms >= 0):
            self._pts0_ms = 0.0
        header_fps = float(cap.get(cv2.CAP_PROP_FPS))
        self._use_timestamps = fps is None
        self._header_fps = header_fps if _valid_fps(header_fps) else None
        if fps is not None:
            self.fps = float(fps)
        elif self._header_fps is not None:
            self.fps = self._header_fps
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
        self._seek_reliable = self._header_fps is not None
        self._pts_ms: list[float] | None = None  # decoder timestamps of every frame, after a full pass

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise DataError(self.path, "cannot open video (unreadable, truncated header or unsupported codec)")
        return cap

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[Frame]:
        # A fresh decoder per pass: iteration never depends on where read() left the shared one. Frames before
        # ``start`` are only grabbed (decoded, never converted), which keeps decoder timestamps exact.
        cap = self._open()
        index = 0
        pts: list[float] = []
        try:
            while True:
                try:
                    if index < start:
                        ok, frame = cap.grab(), None
                        if ok:
                            ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                            pts.append(ms if math.isfinite(ms) and ms >= 0 and (not pts or ms > pts[-1]) else math.nan)
                            self.frames_read = max(self.frames_read, index + 1)
                            index += 1
                            continue
                        break
                    ok, frame = cap.read()
                except cv2.error as exc:  # a damaged packet can surface as an exception
                    logger.warning("%s: decoder error at frame %d: %s", self.path, index, exc)
                    ok, frame = False, None
                if not ok or frame is None:
                    break
                ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                if not (math.isfinite(ms) and ms >= 0 and (not pts or ms > pts[-1])):
                    ms = math.nan
                pts.append(ms)
                self.frames_read = max(self.frames_read, index + 1)
                # Decoder timestamps keep variable-frame-rate videos in real time; an explicit fps wins.
                if self._use_timestamps and math.isfinite(ms):
                    time_s = (ms - self._pts0_ms) / 1000.0
                else:
                    time_s = index / self.fps
                yield index, time_s, to_bgr8(frame)
                index += 1
        finally:
            cap.release()
        if all(math.isfinite(v) for v in pts):
            self._pts_ms = pts
        self._end_of_pass(index)

    def _end_of_pass(self, decoded: int) -> None:
        if self.frame_count is None or decoded >= self.frame_count:
            if self.frame_count is None:
                self.frame_count = decoded
            return
        shortfall = self.frame_count - decoded
        if not self.truncated and shortfall <= min(0.5 * self.fps, 0.05 * self.frame_count):
            logger.info("%s: header announced %d frames, %d decode; using %d",
                        self.path, self.frame_count, decoded, decoded)
            self.frame_count = decoded
            return
        self.truncated = True
        message = (f"{self.path}: decoding stopped at frame {decoded} of {self.frame_count} "
                   "announced by the header (truncated or damaged file)")
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based): seek when seeking has proved exact, else decode sequentially."""
        index = self._check_index(index)
        if self._cap is None:
            self._restart()
        near_ahead = self._next <= index < self._next + _MAX_FORWARD_GRAB
        if not near_ahead:
            if self._seek_reliable:
                frame = self._read_by_seek(index)
                if frame is not None:
                    return frame
            if index < self._next:
                self._restart()
        cap = self._cap
        while self._next < index:
            if not cap.grab():
                raise DataError(self.path, f"cannot reach frame {index}: decoding stops at frame {self._next}")
            self._next += 1
        ok, frame = cap.read()
        if not ok or frame is None:
            raise DataError(self.path, f"cannot decode frame {index} (truncated or damaged file?)")
        self._next = index + 1
        return to_bgr8(frame)

    def _restart(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = self._open()
        self._next = 0

    def _read_by_seek(self, index: int) -> np.ndarray | None:
        """Seek and verify the frame reached; None (and no more seeking) when it cannot be trusted."""
        cap = self._cap
        reason = ""
        if not cap.set(cv2.CAP_PROP_POS_FRAMES, float(index)):
            reason = "the decoder refused to seek"
        elif int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) != index:
            reason = f"seek to frame {index} reported position {cap.get(cv2.CAP_PROP_POS_FRAMES):.0f}"
        else:
            ok, frame = cap.read()
            if not ok or frame is None:
                reason = f"no frame after seeking to {index}"
            else:
                got = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                expected = self._expected_ms(index)
                if abs(got - expected) <= 0.5 * 1000.0 / self._header_fps:
                    self._next = index + 1
                    return to_bgr8(frame)
                reason = f"seek to frame {index} decoded the frame at {got:.1f} ms, expected {expected:.1f} ms"
        self._seek_reliable = False
        logger.warning("%s: %s; reading sequentially from now on", self.path, reason)
        self._restart()
        return None

    def _expected_ms(self, index: int) -> float:
        if self._pts_ms is not None and index < len(self._pts_ms):
            return self._pts_ms[index]
        return self._pts0_ms + index * 1000.0 / self._header_fps

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
        self.bad_frames: list[int] = []
        self.bad_frame_reasons: dict[int, str] = {}
        first = None
        for index, path in enumerate(self.files):  # the first readable frame gives the size
            try:
                first = read_image(path)
                break
            except DataError as exc:
                self._record_bad(index, exc)
        if first is None:
            raise DataError(self.folder, f"none of the {len(self.files)} frame images can be decoded")
        self.size = (int(first.shape[1]), int(first.shape[0]))
        self.fps = float(fps) if fps is not None else DEFAULT_FPS
        self.frame_count = len(self.files)
        self.truncated = False
        self.frames_read = 0

    def _record_bad(self, index: int, exc: Exception) -> None:
        if index not in self.bad_frames:
            self.bad_frames.append(index)
        self.bad_frame_reasons[index] = str(exc)

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[Frame]:
        from facetrack.io.validation import image_problem

        for index in range(max(0, int(start)), len(self.files)):
            path = self.files[index]
            try:
                problem = image_problem(path)
                if problem is not None:
                    raise DataError(path, problem)
                frame = read_image(path)
            except DataError as exc:
                self._record_bad(index, exc)
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

    def iter_from(self, start: int) -> Iterator[Frame]:
        if start:
            raise ValueError(f"{self.name}: a live camera cannot resume from frame {start}")
        return iter(self)

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


class OverlayWriter:
    """overlay.mp4, opened on the first frame at the source's rate (later frames of another size are resized to
    it): H.264 through imageio-ffmpeg's bundled ffmpeg when it is installed (``pip install "facetrack[video]"``;
    browsers and every player play it), else OpenCV's MPEG-4 Part 2 (mp4v: not in browsers nor in many players).
    ``codec`` ("h264" or "mp4v") says which was used, for the summary."""

    def __init__(self, path: str | Path, fps: float, prefer_h264: bool = True) -> None:
        self.path, self.fps = Path(path), float(fps) if _valid_fps(float(fps)) else DEFAULT_FPS
        self.codec = "h264" if prefer_h264 and h264_available() else "mp4v"
        self.size: tuple[int, int] | None = None
        self._cv: cv2.VideoWriter | None = None
        self._ffmpeg: Any = None

    def write(self, image: np.ndarray) -> None:
        if self.size is None:
            self.size = (image.shape[1], image.shape[0])
            self._open()
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self._ffmpeg is not None:
            w, h = self.size  # yuv420p needs even sides: repeat the last row/column when odd
            image = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
            self._ffmpeg.send(np.ascontiguousarray(image))
        else:
            assert self._cv is not None
            self._cv.write(image)

    def _open(self) -> None:
        assert self.size is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.codec == "h264":
            import imageio_ffmpeg

            w, h = self.size
            self._ffmpeg = imageio_ffmpeg.write_frames(
                str(self.path), (w + w % 2, h + h % 2), fps=self.fps, codec="libx264", pix_fmt_in="bgr24",
                pix_fmt_out="yuv420p", quality=None, bitrate=None, macro_block_size=1,
                output_params=["-crf", "20", "-preset", "veryfast", "-movflags", "+faststart"], ffmpeg_log_level="error")
            self._ffmpeg.send(None)  # start the encoder
            return
        self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not self._cv.isOpened():
            raise DataError(self.path, "OpenCV cannot open an mp4v video writer")

    def close(self) -> None:
        if self._ffmpeg is not None:
            self._ffmpeg.close()
            self._ffmpeg = None
        if self._cv is not None:
            self._cv.release()
            self._cv = None


def h264_available() -> bool:
    """True when imageio-ffmpeg (with its bundled ffmpeg) is installed: overlays are then H.264."""
    try:
        import imageio_ffmpeg

        return bool(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError, OSError):
        return False
