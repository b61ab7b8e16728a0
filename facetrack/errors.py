"""Errors facetrack raises on bad input: each names the file (and line) that is wrong."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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


def read_text(path: str | Path, missing: str, unreadable: str) -> str:
    """The UTF-8 text of a user-supplied file: DataError ``missing`` when it does not exist, ``unreadable (why)``
    when it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"{unreadable} ({exc})") from None


def read_json(path: str | Path, missing: str, unreadable: str) -> Any:
    """``read_text`` parsed as JSON; invalid JSON is ``unreadable (why)`` too."""
    text = read_text(path, missing, unreadable)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DataError(path, f"{unreadable} ({exc})") from None
    except RecursionError:
        raise DataError(path, f"{unreadable} (JSON nested too deeply)") from None
