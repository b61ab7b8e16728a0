"""One validation layer for every file a user hands facetrack: JSON documents, face boxes, model cards, images.

Every check happens before the value is used, and every failure is the project's own error naming the file and
the field: ``DataError`` for data (boxes, predictions, results, images), ``ModelError`` for model cards and
weights. Why: a NaN box, a nested-list bomb or a card that points at ``/dev/zero`` must end in one clear line,
not in a traceback, an endless read or a terabyte allocation.
"""
from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facetrack.errors import DataError, ModelError

MAX_JSON_BYTES = 1 << 30  # PRED.json of a large benchmark is tens of MB
MAX_CARD_BYTES = 4 << 20
MAX_DEPTH = 64  # our formats nest at most ~6 levels
MAX_COORD = 1e6  # pixels: larger than any image OpenCV decodes
MAX_BOXES_PER_IMAGE = 1000
MAX_INPUT_SIZE = 1024  # a card's crop side (the packaged models use 128-160)
MAX_CHANNELS = 4096
MAX_CONFIG_INT = 1 << 16
MAX_POINTS = 1000

Fail = Callable[..., Exception]


def data_error(path: Path, message: str, line: int | None = None) -> Exception:
    return DataError(path, message, line)


def model_error(path: Path, message: str, line: int | None = None) -> Exception:
    return ModelError(f"{path}: {message}")


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def check_regular_file(path: str | Path, what: str = "file", max_bytes: int | None = None,
                       fail: Fail = data_error) -> Path:
    """``path`` exists, is a regular file (not a device, fifo or folder) and is at most ``max_bytes`` long."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise fail(path, f"{what} not found") from None
    except OSError as exc:
        raise fail(path, f"cannot read {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise fail(path, f"{what} is not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise fail(path, f"{what} is {st.st_size} bytes, over the limit of {max_bytes}")
    return path


def load_json(path: str | Path, what: str = "file", max_bytes: int = MAX_JSON_BYTES, fail: Fail = data_error) -> Any:
    """Parse a JSON file with bounded size and nesting; every problem is ``fail(path, message)``."""
    path = check_regular_file(path, what, max_bytes, fail)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(path, f"cannot read {what} ({exc})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if fail is data_error:
            raise DataError(path, f"invalid JSON ({exc.msg}, column {exc.colno})", exc.lineno) from None
        raise fail(path, f"cannot read {what}: invalid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise fail(path, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if _depth(value) > MAX_DEPTH:
        raise fail(path, f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def integer(value: Any, path: str | Path, field: str, low: int | None = 0, high: int | None = None,
            fail: Fail = data_error) -> int:
    """An int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(Path(path), f"{field}: expected an integer, got {value!r:.80}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail(Path(path), f"{field}: {value} is outside [{low}, {high}]")
    return value


def number(value: Any, path: str | Path, field: str, low: float | None = None, high: float | None = None,
           fail: Fail = data_error) -> float:
    """A finite int or float (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(Path(path), f"{field}: expected a number, got {value!r:.80}")
    try:
        f = float(value)
    except OverflowError:
        raise fail(Path(path), f"{field}: {value!r:.40} is too large") from None
    if not math.isfinite(f):
        raise fail(Path(path), f"{field}: expected a finite number, got {value!r}")
    if (low is not None and f < low) or (high is not None and f > high):
        raise fail(Path(path), f"{field}: {f} is outside [{low}, {high}]")
    return f


def box(value: Any, path: str | Path, field: str, fail: Fail = data_error) -> list[float]:
    """``[x0, y0, x1, y1]``: four finite numbers within +-MAX_COORD, x1 > x0 and y1 > y0 (a non-empty box)."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise fail(Path(path), f"{field}: expected [x0, y0, x1, y1], got {value!r:.80}")
    x0, y0, x1, y1 = (number(v, path, f"{field}[{k}]", -MAX_COORD, MAX_COORD, fail) for k, v in enumerate(value))
    if x1 <= x0 or y1 <= y0:
        raise fail(Path(path), f"{field}: empty or inverted box {value!r} (needs x1 > x0 and y1 > y0)")
    return [x0, y0, x1, y1]


def box_problem(b: list[float], width: int, height: int) -> str | None:
    """Why a box cannot be a face of a ``width`` x ``height`` image (None when it can): it must overlap the image
    and be at most four times the image's larger side."""
    x0, y0, x1, y1 = b
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return f"box {b} lies outside the {width}x{height} image"
    if max(x1 - x0, y1 - y0) > 4 * max(width, height):
        return f"box {b} is far larger than the {width}x{height} image"
    return None


def read_boxes(path: str | Path, max_per_image: int = MAX_BOXES_PER_IMAGE) -> dict[str, list[list[float]]]:
    """A ``--boxes`` file: ``{image path: [[x0, y0, x1, y1], ...]}``, every box checked (``box``), at most
    ``max_per_image`` per image."""
    path = Path(path)
    raw = load_json(path, "boxes file")
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object mapping image paths to lists of boxes")
    out: dict[str, list[list[float]]] = {}
    for key, value in raw.items():
        if not key:
            raise DataError(path, "an empty image path as key")
        if not isinstance(value, list):
            raise DataError(path, f"{key!r}: expected a list of [x0, y0, x1, y1] boxes, got {type(value).__name__}")
        if len(value) > max_per_image:
            raise DataError(path, f"{key!r}: {len(value)} boxes, over the limit of {max_per_image} per image")
        out[key] = [box(b, path, f"{key!r}[{i}]") for i, b in enumerate(value)]
    return out


# ------------------------------------------------------------------------------------------------ model cards


def _check_config(value: Any, path: Path, where: str) -> None:
    stack = [(value, where)]
    while stack:
        item, field = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{field}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{field}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            name = field.rsplit(".", 1)[-1]
            high = MAX_INPUT_SIZE if name == "input_size" else MAX_CHANNELS if "channels" in name else MAX_CONFIG_INT
            integer(item, path, field, -MAX_CONFIG_INT, high, model_error)
        elif isinstance(item, float):
            number(item, path, field, fail=model_error)
        else:
            raise model_error(path, f"{field}: unexpected value {item!r:.80}")


def check_card(card: Any, path: str | Path) -> dict[str, Any]:
    """Types and ranges of a model card's fields, before anything is built from them (``ModelError``)."""
    path = Path(path)
    if not isinstance(card, dict):
        raise model_error(path, "a model card must be a JSON object")
    if not isinstance(card.get("arch"), str) or not card["arch"]:
        raise model_error(path, "model card needs an 'arch' string")
    if not isinstance(card.get("config"), dict):
        raise model_error(path, "model card needs a 'config' object")
    _check_config(card["config"], path, "config")
    if "input_size" in card:
        integer(card["input_size"], path, "input_size", 8, MAX_INPUT_SIZE, model_error)
    if "num_points" in card:
        integer(card["num_points"], path, "num_points", 1, MAX_POINTS, model_error)
    for key in ("name", "scheme", "weights", "sha256"):
        if key in card and not isinstance(card[key], str):
            raise model_error(path, f"{key}: expected a string, got {card[key]!r:.80}")
    sha = card.get("sha256")
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        raise model_error(path, "sha256: expected 64 hexadecimal digits")
    crop = card.get("crop")
    if crop is not None:
        if not isinstance(crop, dict):
            raise model_error(path, f"crop: expected an object, got {type(crop).__name__}")
        if "scale" in crop:
            number(crop["scale"], path, "crop.scale", 0.1, 10.0, model_error)
    cal = card.get("calibration")
    if cal is not None:
        if not isinstance(cal, dict):
            raise model_error(path, f"calibration: expected an object, got {type(cal).__name__}")
        offsets = cal.get("offsets_px")
        if offsets is not None:
            if not isinstance(offsets, dict):
                raise model_error(path, f"calibration.offsets_px: expected an object, got {type(offsets).__name__}")
            for mode, rows in offsets.items():
                if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 2 for r in rows):
                    raise model_error(path, f"calibration.offsets_px.{mode}: expected a list of [dx, dy]")
                for i, r in enumerate(rows):
                    for k, v in enumerate(r):
                        number(v, path, f"calibration.offsets_px.{mode}[{i}][{k}]", -1e4, 1e4, model_error)
    return card


def card_weights_path(card: dict[str, Any], card_path: str | Path) -> Path:
    """The weight file a card names: a plain file name in the card's own folder, and a regular file there
    (not a link out of it, a device or a folder)."""
    card_path = Path(card_path)
    name = card.get("weights", card_path.with_suffix(".safetensors").name)
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or os.sep in name or (os.altsep and os.altsep in name) or Path(name).is_absolute()):
        raise model_error(card_path, f"weights: {name!r} must be a plain file name next to the card")
    weights = card_path.parent / name
    folder = card_path.parent.resolve()
    if weights.exists() and weights.resolve().parent != folder:
        raise model_error(card_path, f"weights: {name!r} leads out of the card's folder ({weights.resolve()})")
    check_regular_file(weights, "weight file", fail=model_error)
    return weights


# ------------------------------------------------------------------------------------------------ images


def image_problem(path: str | Path, data: bytes | None = None) -> str | None:
    """Why an image file is damaged, when that can be seen without decoding it (None otherwise): an empty file,
    a JPEG without its end-of-image marker after the scan (truncated: decoders fill the rest with grey), a PNG
    without its IEND chunk."""
    path = Path(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            return f"cannot read ({exc.strerror or exc})"
    if not data:
        return "empty file"
    if data[:2] == b"\xff\xd8":
        scan = _jpeg_scan_start(data)
        if scan is None or data.find(b"\xff\xd9", scan) < 0:
            return "truncated JPEG (no end-of-image marker after the image data)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < 0:
            return "truncated PNG (no IEND chunk)"
    return None


def _jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first start-of-scan segment, walking the marker segments (an EXIF thumbnail's own
    end-of-image marker lies inside an APP segment and is skipped)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:
            return pos
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None
