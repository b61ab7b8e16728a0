"""Errors facetrack raises on bad input: each names the file (and line) that is wrong."""
from __future__ import annotations

from pathlib import Path


class FacetrackError(Exception):
    """Base class of every error facetrack raises on purpose."""


class DataError(FacetrackError, ValueError):
    """An input file is missing, unreadable or malformed.

    The message always starts with the file (and line, when there is one) so a user can fix it.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {message}")


class ModelError(FacetrackError):
    """A model name, weight file or model card is wrong or does not match the architecture."""
