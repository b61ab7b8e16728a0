"""FGNET Talking Face: one 5,000-frame video of one subject, 68 points per frame in its *own* markup.

Files come as ``franck_00000.jpg`` + ``franck_00000.pts`` (the image and point archives may be unpacked into
one folder or into separate sub-folders of ``root``; files are paired by stem). The TF 68-point markup is the
FGNET/XM2VTS AAM markup, not iBUG-68: only 7 points are comparable with iBUG-trained models, so evaluation
maps TF points to the ``common7`` scheme through an index table that the caller may override.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facetrack.data.catalog import DatasetSpec, register_dataset
from facetrack.errors import DataError
from facetrack.io.pts import read_pts

log = logging.getLogger(__name__)

NUM_POINTS = 68
EXPECTED_FRAMES = 5000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# UNVERIFIED against TF data. Indices into the TF 68-point markup of the 7 common points, in the order of
# facetrack.schemes.COMMON7_FROM_68 (subject's right-eye outer, right-eye inner, left-eye inner, left-eye
# outer, nose tip, right mouth corner, left mouth corner). Derived by assuming TF uses the FGNET XM2VTS
# 68-point markup, whose table (Stasm's landmarks.hpp, "left/right wrt the viewer") gives eye corners
# 27 (L outer), 29 (L inner), 34 (R inner), 32 (R outer), nose tip 67 and mouth corners 48/54; the viewer's
# left is the subject's right. The FHR code that defined the 7-point protocol does not list TF indices.
# Check on a TF frame (e.g. draw the 7 points) before reporting numbers, and pass the verified table.
TF68_TO_COMMON7: tuple[int, ...] = (27, 29, 34, 32, 67, 48, 54)

_FRAME_NAME = re.compile(r"^(?P<prefix>.+?)_(?P<number>\d+)$")


@dataclass
class TalkingFaceVideo:
    """The TF sequence: frames in order, with ``landmarks`` (T, 68, 2) in 0-based pixels, TF markup."""

    frame_paths: list[Path]
    frame_numbers: np.ndarray  # (T,) int, the number in each file name
    landmarks: np.ndarray  # (T, 68, 2) float64
    common7_indices: tuple[int, ...] = TF68_TO_COMMON7

    def __len__(self) -> int:
        return len(self.frame_paths)

    def common7(self) -> np.ndarray:
        """Landmarks (T, 7, 2) in ``common7`` order, to score against iBUG-68 predictions subset to common7."""
        return self.landmarks[:, list(self.common7_indices), :]


def _frame_number(path: Path) -> int:
    match = _FRAME_NAME.match(path.stem)
    if match is None:
        raise DataError(path, "file name is not '<name>_<frame number>' (e.g. franck_00000)")
    return int(match.group("number"))


def load_talking_face(
    root: str | Path,
    common7_indices: Sequence[int] = TF68_TO_COMMON7,
    skip_invalid: bool = False,
) -> TalkingFaceVideo:
    """Load the TF frames and points under ``root`` (searched recursively), sorted by frame number.

    Raises DataError naming the file for a .pts without image, an image without .pts, a bad file name or a
    malformed .pts (with ``skip_invalid`` those are logged, counted and skipped). A frame count other than
    5,000 or gaps in the numbering only log a warning, so a partial copy still loads.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "Talking Face folder not found")
    indices = tuple(int(i) for i in common7_indices)
    if len(indices) != 7 or not all(0 <= i < NUM_POINTS for i in indices):
        raise ValueError(f"common7_indices must be 7 indices into the 68 TF points, got {indices}")
    pts_files: dict[str, Path] = {}
    images: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        suffix = path.suffix.lower()
        if not path.is_file() or (suffix != ".pts" and suffix not in IMAGE_SUFFIXES):
            continue
        table = pts_files if suffix == ".pts" else images
        if path.stem in table:
            raise DataError(path, f"duplicate frame {path.stem!r} (also {table[path.stem]})")
        table[path.stem] = path
    if not pts_files:
        raise DataError(root, "no .pts files found (expected franck_00000.pts ...)")
    problems: list[DataError] = [
        DataError(images[stem], "frame image has no .pts with the same name")
        for stem in sorted(set(images) - set(pts_files))
    ]
    frames: list[tuple[int, Path, np.ndarray]] = []
    for stem, pts_path in pts_files.items():
        try:
            if stem not in images:
                raise DataError(pts_path, "annotation has no frame image with the same name")
            number = _frame_number(pts_path)
            frames.append((number, images[stem], read_pts(pts_path, num_points=NUM_POINTS)))
        except DataError as exc:
            problems.append(exc)
    if problems and not skip_invalid:
        raise problems[0]
    for problem in problems:
        log.warning("skipping invalid Talking Face file: %s", problem)
    if problems:
        log.warning("Talking Face: skipped %d invalid files, loaded %d frames", len(problems), len(frames))
    if not frames:
        raise DataError(root, "no valid Talking Face frames")
    frames.sort(key=lambda item: item[0])
    numbers = np.array([f[0] for f in frames], dtype=np.int64)
    if len(set(numbers.tolist())) != len(numbers):
        dup = int(numbers[np.flatnonzero(np.diff(numbers) == 0)[0]])
        raise DataError(root, f"frame number {dup} appears in two files")
    if len(frames) != EXPECTED_FRAMES or np.any(np.diff(numbers) != 1):
        log.warning(
            "%s: %d frames numbered %d..%d; the full Talking Face video has %d consecutive frames",
            root, len(frames), numbers[0], numbers[-1], EXPECTED_FRAMES,
        )
    return TalkingFaceVideo(
        frame_paths=[f[1] for f in frames],
        frame_numbers=numbers,
        landmarks=np.stack([f[2] for f in frames]),
        common7_indices=indices,
    )


def _truth_tf(root: str | Path, splits: Sequence[str] = (), skip_frames: object = None) -> dict[str, list]:
    """The one TF video on its 7 common points; ``facetrack track`` on the frame folder numbers frames by
    position in name order."""
    from facetrack.data.video_truth import VideoTruth

    tf = load_talking_face(root)
    return {"TF": [VideoTruth("tf", "TF", np.arange(len(tf)), [p.stem for p in tf.frame_paths], tf.common7())]}


register_dataset(DatasetSpec(
    name="tf", kind="video", scheme="common7",
    description="FGNET Talking Face: one 5,000-frame video, scored on the 7 points common with iBUG-68",
    truth=_truth_tf, subject="one subject", terms="FGNET Talking Face: research use",
))
