"""iBUG ``.pts`` landmark files (300W, 300VW, Talking Face, menpo).

On disk the coordinates are 1-based (the iBUG tools are MATLAB); in memory facetrack uses 0-based pixel
coordinates with a pixel's centre at integer values. The conversion happens here and nowhere else.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from facetrack.errors import DataError

_ONE_BASED_OFFSET = 1.0


def read_pts(path: str | Path, num_points: int | None = None) -> np.ndarray:
    """Read a ``.pts`` file into an (N, 2) float64 array of 0-based pixel coordinates.

    Raises DataError naming the file and line for a missing file, a bad header, text where numbers belong,
    non-finite values, or a point count that differs from the header (or from ``num_points``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise DataError(path, "landmark file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read landmark file ({exc})") from None
    lines = text.splitlines()
    declared: int | None = None
    i = 0
    while i < len(lines) and lines[i].strip() != "{":
        line = lines[i].strip()
        if line.lower().startswith("n_points"):
            try:
                declared = int(line.split(":", 1)[1])
            except (IndexError, ValueError):
                raise DataError(path, f"bad n_points header {line!r}", i + 1) from None
        elif line and not line.lower().startswith("version"):
            raise DataError(path, f"unexpected header line {line!r}", i + 1)
        i += 1
    if i == len(lines):
        raise DataError(path, "no '{' opening the point list")
    points: list[tuple[float, float]] = []
    closed = False
    for j in range(i + 1, len(lines)):
        line = lines[j].strip()
        if line == "}":
            closed = True
            break
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(path, f"expected 'x y', got {line!r}", j + 1)
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise DataError(path, f"not a number in {line!r}", j + 1) from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError(path, f"non-finite coordinate in {line!r}", j + 1)
        points.append((x - _ONE_BASED_OFFSET, y - _ONE_BASED_OFFSET))
    if not closed:
        raise DataError(path, "no '}' closing the point list (truncated file?)")
    if declared is not None and declared != len(points):
        raise DataError(path, f"header says n_points: {declared} but the file has {len(points)} points")
    if num_points is not None and len(points) != num_points:
        raise DataError(path, f"expected {num_points} points, found {len(points)}")
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write (N, 2) 0-based coordinates as an iBUG ``.pts`` file (1-based on disk)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"refusing to write non-finite landmarks to {path}")
    body = "\n".join(f"{x + _ONE_BASED_OFFSET:.3f} {y + _ONE_BASED_OFFSET:.3f}" for x, y in pts)
    Path(path).write_text(f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n", encoding="utf-8")
