"""300VW (68-point iBUG markup on 114 videos) in the official layout or with extracted frames.

Layouts, per video folder ``<root>/<vid>/`` (``<root>`` may also hold ``300VW_Dataset_2015_12_14/``)::

    vid.avi + annot/000001.pts ...       official release; annotation k is video frame k-1 (0-based)
    imgs/000001.jpg|png + annot/...      frames extracted as mmpose does (ffmpeg -start_number 1)

When both exist the extracted frames are used (exact random access, no decoder in the loop).

Test categories follow the challenge (and mmpose's ``300vw2coco.py``): S1 = 31 videos in well-lit
laboratory/naturalistic conditions, S2 = 19 in real-world human-computer interaction, S3 = 14 in
arbitrary conditions; the other 50 are training videos.

Some frames' annotations are unreliable. Published numbers usually drop mmpose's ``broken_frames`` list
(``tests/data/300vw/broken_frames.npy`` in mmpose; about 1,900 frames in 16 videos): convert it to JSON
``{"401": [722, ...], ...}`` and pass it as ``skip_frames``. Results with a different (or no) skip list
are not comparable with those papers; record which list was used next to every result.
"""
from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrack.data.catalog import DatasetSpec, register_dataset
from facetrack.data.sample import FaceSample, read_image
from facetrack.data.skipping import Skips
from facetrack.errors import DataError
from facetrack.io.pts import read_pts
from facetrack.io.video import IMAGE_EXTENSIONS, VideoFileSource, open_source

logger = logging.getLogger(__name__)

NUM_POINTS = 68
RELEASE_FOLDER = "300VW_Dataset_2015_12_14"

# mmpose Base300VW.videos_full: the 114 annotated videos of the release.
ALL_VIDEOS: tuple[str, ...] = tuple("""
001 002 003 004 007 009 010 011 013 015 016 017 018 019 020 022 025 027 028 029 031 033 034 035 037 039
041 043 044 046 047 048 049 053 057 059 112 113 114 115 119 120 123 124 125 126 138 143 144 150 158 160
203 204 205 208 211 212 213 214 218 223 224 225 401 402 403 404 405 406 407 408 409 410 411 412 505 506
507 508 509 510 511 514 515 516 517 518 519 520 521 522 524 525 526 528 529 530 531 533 537 538 540 541
546 547 548 550 551 553 557 558 559 562
""".split())
CATEGORY_S1: tuple[str, ...] = tuple("""
114 124 125 126 150 158 401 402 505 506 507 508 509 510 511 514 515 518 519 520 521 522 524 525 537 538
540 541 546 547 548""".split())
CATEGORY_S2: tuple[str, ...] = tuple("""
203 208 211 212 213 214 218 224 403 404 405 406 407 408 409 412 550 551 553""".split())
CATEGORY_S3: tuple[str, ...] = tuple("""
410 411 516 517 526 528 529 530 531 533 557 558 559 562""".split())
_TEST = set(CATEGORY_S1) | set(CATEGORY_S2) | set(CATEGORY_S3)
TRAIN_VIDEOS: tuple[str, ...] = tuple(v for v in ALL_VIDEOS if v not in _TEST)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "S1": CATEGORY_S1, "S2": CATEGORY_S2, "S3": CATEGORY_S3, "train": TRAIN_VIDEOS,
    "test": CATEGORY_S1 + CATEGORY_S2 + CATEGORY_S3, "all": ALL_VIDEOS,
}


def category_of(video_id: str | int) -> str:
    """"S1", "S2", "S3" or "train" for a 300VW video id; "unknown" for ids outside the release."""
    vid = _video_id(video_id)
    for name in ("S1", "S2", "S3", "train"):
        if vid in CATEGORIES[name]:
            return name
    return "unknown"


def _video_id(value: str | int) -> str:
    text = str(value).strip()
    return f"{int(text):03d}" if text.isdigit() else text


@dataclass
class VideoFrameSample(FaceSample):
    """A FaceSample whose image is frame ``frame_index`` (0-based) of the video at ``image_path``."""

    frame_index: int = 0

    def load_image(self) -> np.ndarray:
        with VideoFileSource(self.image_path) as source:
            return source.read(self.frame_index)


@dataclass
class VideoSequence:
    """One annotated 300VW video: 1-based ``frame_numbers`` (T,) and ``landmarks`` (T, 68, 2), 0-based px.

    ``frames()`` streams the annotated frames in the order of ``frame_numbers``, so
    ``zip(seq.frames(), seq.landmarks)`` pairs each image with its ground truth.
    """

    video_id: str
    category: str
    folder: Path
    frame_numbers: np.ndarray
    landmarks: np.ndarray
    video_path: Path | None = None
    frame_files: dict[int, Path] | None = None
    skipped_frames: tuple[int, ...] = ()
    _source: VideoFileSource | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.frame_numbers)

    def read_frame(self, number: int) -> np.ndarray:
        """The image of annotation ``number`` (1-based, as in ``annot/000001.pts``)."""
        number = int(number)
        if self.frame_files is not None:
            if number not in self.frame_files:
                raise DataError(self.folder / "imgs", f"no image for frame {number:06d}")
            return read_image(self.frame_files[number])
        if self._source is None:
            self._source = VideoFileSource(self._video())
        return self._source.read(number - 1)

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame_number, image)`` for each annotated frame, decoded one at a time."""
        if self.frame_files is not None:
            for number in self.frame_numbers:
                yield int(number), self.read_frame(int(number))
            return
        wanted = [int(n) for n in self.frame_numbers]
        position = 0
        with open_source(self._video()) as source:
            for index, _, image in source:
                if position == len(wanted):
                    break
                if index + 1 == wanted[position]:
                    position += 1
                    yield wanted[position - 1], image
                    if position == len(wanted):
                        break
        if position < len(wanted):
            raise DataError(self._video(), f"video {self.video_id} ends before annotated frame {wanted[position]}")

    def samples(self) -> list[FaceSample]:
        """One FaceSample per annotated frame (for frame-level training and evaluation)."""
        common = dict(scheme="ibug68", subject=f"300vw/{self.video_id}", source="300vw")
        if self.frame_files is not None:
            return [FaceSample(image_path=self.frame_files[int(n)], landmarks=pts, **common)
                    for n, pts in zip(self.frame_numbers, self.landmarks)]
        return [VideoFrameSample(image_path=self._video(), landmarks=pts, frame_index=int(n) - 1, **common)
                for n, pts in zip(self.frame_numbers, self.landmarks)]

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def _video(self) -> Path:
        if self.video_path is None:
            raise DataError(self.folder, "no vid.avi for this sequence")
        return self.video_path


def load_skip_frames(spec: Mapping[str | int, Iterable[int]] | str | Path | None) -> dict[str, frozenset[int]]:
    """Normalise a skip list (dict or JSON file of video id -> 1-based frame numbers) to {"401": {...}}."""
    if spec is None:
        return {}
    source: Path | None = None
    if isinstance(spec, (str, Path)):
        source = Path(spec)
        if not source.is_file():
            raise DataError(source, "skip-frames file not found")
        try:
            spec = json.loads(source.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(source, f"not valid JSON ({exc})") from None
    if not isinstance(spec, Mapping):
        raise DataError(source or "skip_frames", "expected an object mapping video ids to lists of frame numbers")
    result: dict[str, frozenset[int]] = {}
    for key, numbers in spec.items():
        try:
            result[_video_id(key)] = frozenset(int(n) for n in numbers)
        except (TypeError, ValueError):
            raise DataError(source or "skip_frames", f"video {key!r}: frame numbers must be integers") from None
    return result


def load_300vw(root: str | Path, videos: str | Iterable[str | int] = "test",
               skip_frames: Mapping[str | int, Iterable[int]] | str | Path | None = None,
               skip_invalid: bool = False) -> list[VideoSequence]:
    """Load 300VW videos: a category ("S1", "S2", "S3", "train", "test", "all") or a list of ids.

    Videos absent from a partial copy are reported in one warning; none at all is a DataError. A video
    whose annotation count differs from its frame count raises DataError naming it (``skip_invalid``:
    logged, counted and left out, as are malformed .pts files).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "300VW folder not found")
    if (root / RELEASE_FOLDER).is_dir() and not any((root / v).is_dir() for v in ALL_VIDEOS):
        root = root / RELEASE_FOLDER
    if isinstance(videos, str):
        if videos not in CATEGORIES:
            raise ValueError(f"unknown 300VW video set {videos!r}; expected one of {sorted(CATEGORIES)} or ids")
        wanted = list(CATEGORIES[videos])
    else:
        wanted = [_video_id(v) for v in videos]
    skip = load_skip_frames(skip_frames)
    present = [v for v in wanted if (root / v).is_dir()]
    missing = [v for v in wanted if v not in present]
    if not present:
        raise DataError(root, f"none of the requested 300VW videos is here ({len(wanted)} asked)")
    if missing:
        message = f"{root}: {len(missing)} of {len(wanted)} requested 300VW videos are missing: {' '.join(missing)}"
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    sequences: list[VideoSequence] = []
    skipped_videos = 0
    for vid in present:
        try:
            sequences.append(_load_video(root / vid, vid, skip.get(vid, frozenset()), skip_invalid))
        except DataError as exc:
            if not skip_invalid:
                raise
            skipped_videos += 1
            logger.warning("skipping 300VW video %s: %s", vid, exc)
    if skipped_videos:
        logger.warning("%s: skipped %d invalid video(s)", root, skipped_videos)
    return sequences


def _count_decoded_frames(path: Path) -> int:
    """Frames the decoder actually delivers (grab only, no colour conversion)."""
    cap = cv2.VideoCapture(str(path))
    count = 0
    try:
        while cap.grab():
            count += 1
    finally:
        cap.release()
    return count


def _load_video(folder: Path, vid: str, skip: frozenset[int], skip_invalid: bool) -> VideoSequence:
    annot = folder / "annot"
    if not annot.is_dir():
        raise DataError(annot, f"video {vid}: annotation folder not found")
    numbered: dict[int, Path] = {}
    for path in annot.iterdir():
        if path.suffix.lower() != ".pts":
            continue
        if not path.stem.isdigit():
            raise DataError(path, f"video {vid}: annotation name is not a frame number")
        numbered[int(path.stem)] = path
    if not numbered:
        raise DataError(annot, f"video {vid}: no .pts annotations")
    frame_files, video_path, frame_count = None, None, 0
    imgs = folder / "imgs"
    if imgs.is_dir():
        frame_files = {int(p.stem): p for p in imgs.iterdir()
                       if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem.isdigit()}
        frame_count, counted = len(frame_files), imgs
    elif (folder / "vid.avi").is_file():
        video_path = folder / "vid.avi"
        with VideoFileSource(video_path) as source:
            frame_count = source.frame_count or 0
        if frame_count != len(numbered):
            frame_count = _count_decoded_frames(video_path)  # headers can estimate; count before failing
        counted = video_path
    else:
        raise DataError(folder, f"video {vid}: neither imgs/ nor vid.avi found")
    if frame_count != len(numbered):
        raise DataError(counted, f"video {vid}: {len(numbered)} annotations but {frame_count} frames")
    numbers, points = [], []
    skip_pts = Skips(skip_invalid, logger, "300VW annotation", "annotation(s)")
    for number in sorted(numbered):
        if number < 1 or (frame_files is not None and number not in frame_files) or (
                frame_files is None and number > frame_count):
            raise DataError(numbered[number], f"video {vid}: annotation for frame {number} has no frame")
        if number in skip:
            continue
        try:
            points.append(read_pts(numbered[number], num_points=NUM_POINTS))
        except DataError as exc:
            skip_pts(exc)
            continue
        numbers.append(number)
    skip_pts.report(f"video {vid}")
    return VideoSequence(
        video_id=vid,
        category=category_of(vid),
        folder=folder,
        frame_numbers=np.asarray(numbers, dtype=np.int64),
        landmarks=np.asarray(points, dtype=np.float64).reshape(-1, NUM_POINTS, 2),
        video_path=video_path if video_path is not None else (
            folder / "vid.avi" if (folder / "vid.avi").is_file() else None),
        frame_files=frame_files,
        skipped_frames=tuple(sorted(n for n in numbered if n in skip)),
    )


def _truth_300vw(root: str | Path, splits: Iterable[str] = (), skip_frames: Any = None) -> dict[str, list[Any]]:
    """Ground-truth videos by table column (default S1, S2, S3), frames numbered as ``facetrack track`` does."""
    from facetrack.data.video_truth import VideoTruth

    out: dict[str, list[Any]] = {}
    for split in splits or ("S1", "S2", "S3"):
        videos = []
        for seq in load_300vw(root, split, skip_frames=skip_frames):
            numbers = np.asarray(seq.frame_numbers, dtype=np.int64)
            videos.append(VideoTruth(seq.video_id, split, numbers - 1, [f"{n:06d}" for n in numbers], seq.landmarks))
        out[split] = videos
    return out


def _clips_300vw(data: Any, source: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Clips of the 300VW training videos for fine-tuning; ``data.val_fraction`` of the videos held out."""
    from facetrack.data.sequences import VideoClipSource

    clips = data.clips
    videos = load_300vw(data.root, data.split or "train")
    order = np.random.default_rng(data.seed).permutation(len(videos))
    n_val = max(1, int(round(data.val_fraction * len(videos)))) if len(videos) > 1 else 0
    val_videos = [videos[i] for i in sorted(order[:n_val])]
    train_videos = [videos[i] for i in sorted(order[n_val:])] or videos
    if not val_videos:
        raise DataError(data.root, "300VW fine-tuning needs at least two videos (one is held out for validation)")
    train_source = VideoClipSource(train_videos, clips.num_frames, clips.clips)
    val_source = VideoClipSource(val_videos, clips.num_frames, clips.val_clips)
    info = {"train_videos": [v.video_id for v in train_videos], "val_videos": [v.video_id for v in val_videos]}
    return train_source, val_source, info


register_dataset(DatasetSpec(
    name="300vw", kind="video", scheme="ibug68",
    description="300VW: 114 videos, test categories S1/S2/S3, 50 training videos",
    splits=("S1", "S2", "S3", "train", "test", "all"), default_split="S1,S2,S3",  # one table column each
    truth=_truth_300vw, clips=_clips_300vw, subject="video",
    terms="300VW (Shen et al. 2015): research use only",
))
