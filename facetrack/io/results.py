"""Result files of ``facetrack detect`` (PRED.json) and ``facetrack track`` (landmarks.csv, summary.json).

These formats are a public contract (shared/DESIGN.md): other tools read them, and ``facetrack evaluate``
scores any file that follows it, ours or a peer method's. Readers therefore validate everything and name
the file plus the JSON path (or CSV line) of what is wrong; writers are atomic or flush row by row so an
interrupted run leaves readable output.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.errors import DataError

# ---------------------------------------------------------------------------------------------- writing


def _json_safe(value: Any) -> Any:
    """Turn numpy values into JSON ones and non-finite floats into null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def readable_by_all(path: str | Path) -> None:
    """Give a temporary file (mkstemp makes them 0600) the mode of any new file, 0644 under the usual umask,
    before it is renamed into place as an output."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file next to ``path`` and rename it over ``path``: readers never see
    a half-written file, even if the process is killed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        readable_by_all(tmp)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cut_tail(path: str | Path, keep: Callable[[bytes], bool], block: int = 1 << 16) -> list[bytes]:
    """Truncate a line-oriented file after its last complete line for which ``keep`` is True (a partial last
    line, left by a killed writer, always goes); returns the complete lines cut, in file order. The file is read
    backwards from its end, block by block: the cost is that of the part cut, not of the file."""
    path = Path(path)
    removed: list[bytes] = []
    with path.open("r+b") as fh:
        end = pos = fh.seek(0, os.SEEK_END)
        carry, first = b"", True
        while True:
            start = max(0, pos - block)
            fh.seek(start)
            data = fh.read(pos - start) + carry
            pos = start
            lines = data.split(b"\n")
            carry = lines[0] if start > 0 else b""
            body = lines[1:] if start > 0 else lines
            if first:
                if not body:  # no newline in this block yet: keep reading backwards
                    continue
                end -= len(body.pop())  # after the last newline: empty, or a partial line
                first = False
            for line in reversed(body):
                if keep(line):
                    fh.truncate(end)
                    return removed[::-1]
                removed.append(line)
                end -= len(line) + 1
            if start == 0:
                fh.truncate(0)
                return removed[::-1]


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Atomically write ``obj`` as JSON (numpy values converted, NaN/inf written as null)."""
    return atomic_write_text(path, json.dumps(_json_safe(obj), indent=indent, allow_nan=False) + "\n")


def write_summary_json(path: str | Path, summary: dict[str, Any]) -> Path:
    """Atomically write ``track``'s summary.json (frames, tracks, model, detector, timings)."""
    return write_json(path, summary, indent=2)


# ------------------------------------------------------------------------------------------- PRED.json


@dataclass
class FacePrediction:
    """One predicted face: box ``[x0, y0, x1, y1]``, detector score, landmarks ``(N, 2)`` and their
    confidences ``(N,)`` (None when the method gives none), all in 0-based pixels of the image."""

    bbox: np.ndarray
    landmarks: np.ndarray
    score: float | None = None
    landmark_scores: np.ndarray | None = None
    pose: np.ndarray | None = None  # (yaw, pitch, roll) degrees (facetrack.pose), None when unknown

    def __post_init__(self) -> None:
        self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64).reshape(-1, 2)
        if self.landmark_scores is not None:
            self.landmark_scores = np.asarray(self.landmark_scores, dtype=np.float64).reshape(-1)
        if self.pose is not None:
            self.pose = np.asarray(self.pose, dtype=np.float64).reshape(3)


@dataclass
class ImagePrediction:
    """The faces predicted in one image; ``path`` as given to ``detect`` (or found in a folder)."""

    path: str
    width: int
    height: int
    faces: list[FacePrediction] = field(default_factory=list)
    orientation: int = 1  # EXIF orientation applied to read the image upright; written when not 1


@dataclass
class Prediction:
    """A whole PRED.json: which model, in which landmark scheme, and the images."""

    model: str
    scheme: str
    images: list[ImagePrediction] = field(default_factory=list)

    def by_path(self) -> dict[str, ImagePrediction]:
        return {img.path: img for img in self.images}


def prediction_to_dict(pred: Prediction) -> dict[str, Any]:
    """The JSON object of DESIGN.md for ``pred``."""
    return {
        "model": pred.model,
        "scheme": pred.scheme,
        "images": [
            {
                "path": img.path,
                "width": int(img.width),
                "height": int(img.height),
                **({"exif_orientation": int(img.orientation)} if img.orientation != 1 else {}),
                "faces": [
                    {
                        "bbox": [float(v) for v in face.bbox],
                        "score": None if face.score is None else float(face.score),
                        "landmarks": [[float(x), float(y)] for x, y in face.landmarks],
                        "landmark_scores": (
                            None if face.landmark_scores is None else [float(s) for s in face.landmark_scores]
                        ),
                        **({} if face.pose is None else {"pose": pose_json(face.pose)}),
                    }
                    for face in img.faces
                ],
            }
            for img in pred.images
        ],
    }


def pose_json(pose: np.ndarray | Sequence[float] | None) -> dict[str, float | None] | None:
    """``{"yaw", "pitch", "roll"}`` in degrees (null where unknown), or None for no pose at all."""
    if pose is None:
        return None
    values = np.asarray(pose, dtype=np.float64).reshape(3)
    return {k: (round(float(v), 3) if math.isfinite(v) else None) for k, v in zip(POSE_COLUMNS, values)}


def write_predictions(path: str | Path, pred: Prediction) -> Path:
    """Atomically write PRED.json; refuses non-finite coordinates (they would not be valid JSON)."""
    for i, img in enumerate(pred.images):
        _check_finite(i, img)
    text = json.dumps(prediction_to_dict(pred), allow_nan=False, separators=(",", ":"))
    return atomic_write_text(path, text + "\n")


def _image_dict(img: ImagePrediction) -> dict[str, Any]:
    return prediction_to_dict(Prediction("", "", [img]))["images"][0]


def _check_finite(i: int, img: ImagePrediction) -> None:
    for j, face in enumerate(img.faces):
        if not (np.all(np.isfinite(face.landmarks)) and np.all(np.isfinite(face.bbox))):
            raise ValueError(f"images[{i}].faces[{j}] ({img.path}): non-finite box or landmarks")


class PredictionWriter:
    """PRED.json written image by image: each finished image goes at once to ``PATH.partial.jsonl`` (one JSON
    object a line, flushed: a killed run keeps every finished image there); ``close`` assembles PRED.json from
    it, streaming, atomically, adds the images that failed (``"failed": [{"path", "reason"}]``, an extension
    readers ignore) and removes the partial file. ``path`` ``-`` writes PRED.json to standard output at the end."""

    def __init__(self, path: str | Path, model: str, scheme: str) -> None:
        self.stdout = str(path) == "-"
        self.path = Path(path)
        self.model, self.scheme = model, scheme
        self.failed: list[dict[str, str]] = []
        self.count = 0
        if self.stdout:
            fd, name = tempfile.mkstemp(prefix="facetrack-pred.", suffix=".partial.jsonl")
            os.close(fd)
            self.partial = Path(name)
        else:
            self.partial = self.path.with_name(self.path.name + ".partial.jsonl")
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.partial.open("w", encoding="utf-8")

    def add(self, img: ImagePrediction) -> None:
        """One image's faces (refuses non-finite coordinates: they would not be valid JSON)."""
        _check_finite(self.count, img)
        self._fh.write(json.dumps(_image_dict(img), allow_nan=False, separators=(",", ":")) + "\n")
        self._fh.flush()
        self.count += 1

    def fail(self, path: str, reason: str) -> None:
        """An image that could not be processed, and why."""
        self.failed.append({"path": str(path), "reason": str(reason)})

    def close(self) -> Path:
        """Write PRED.json (to a temporary file renamed over ``path``) and remove the partial file."""
        import sys

        self._fh.close()
        head = json.dumps({"model": self.model, "scheme": self.scheme}, separators=(",", ":"))[:-1]
        tail = "]" + (',"failed":' + json.dumps(self.failed, separators=(",", ":")) if self.failed else "") + "}\n"

        def emit(out: Any) -> None:
            out.write(head + ',"images":[')
            with self.partial.open("r", encoding="utf-8") as src:
                for k, line in enumerate(src):
                    out.write(("," if k else "") + line.rstrip("\n"))
            out.write(tail)

        if self.stdout:
            emit(sys.stdout)
            sys.stdout.flush()
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                readable_by_all(tmp)
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                    emit(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self.partial.unlink(missing_ok=True)
        return self.path


def check_writable(path: str | Path) -> None:
    """Fail early (DataError) when ``path`` cannot be written: before hours of work, not after."""
    if str(path) == "-":
        return
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder; --out takes a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as exc:
        raise DataError(path, f"cannot write the output here ({exc.strerror or exc})") from None


class _Validator:
    """Checks one JSON document, raising DataError(file, '<json path>: <problem>')."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> DataError:
        return DataError(self.path, f"{where}: {message}" if where else message)

    def obj(self, value: Any, where: str, keys: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where or "top level", f"expected an object, got {type(value).__name__}")
        missing = [k for k in keys if k not in value]
        if missing:
            raise self.fail(where or "top level", f"missing key(s) {', '.join(map(repr, missing))}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(where, f"expected a positive integer, got {value!r}")
        return value

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(where, f"expected a finite number, got {value!r}")
        return float(value)

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value


def _expected_points(scheme: str) -> int | None:
    """Points per face of a scheme: a named one's, or N of "points:N:<label>" (positions asked of a TUFA model)."""
    from facetrack.schemes import get_scheme

    if scheme.startswith("points:"):
        count = scheme.split(":")[1]
        return int(count) if count.isdigit() and int(count) > 0 else None
    try:
        return int(get_scheme(scheme).num_points)
    except KeyError:
        return None


def read_predictions(path: str | Path, num_points: int | None = None) -> Prediction:
    """Read and validate a PRED.json.

    The number of landmarks per face must match the scheme's (or ``num_points``); ``landmark_scores`` may
    be missing or null (peer methods without confidences) but when present must have one value per
    landmark. Image paths must be unique. Every problem raises DataError with its JSON path.
    """
    from facetrack.io.validation import load_json

    path = Path(path)
    doc = load_json(path, "prediction file")
    v = _Validator(path)
    v.obj(doc, "", ("model", "scheme", "images"))
    model = v.string(doc["model"], "model")
    scheme = v.string(doc["scheme"], "scheme")
    if num_points is None:
        num_points = _expected_points(scheme)
        if num_points is None:
            raise v.fail("scheme", f"unknown landmark scheme {scheme!r}")
    images: list[ImagePrediction] = []
    seen: dict[str, int] = {}
    for i, img in enumerate(v.array(doc["images"], "images")):
        w = f"images[{i}]"
        v.obj(img, w, ("path", "width", "height", "faces"))
        img_path = v.string(img["path"], f"{w}.path")
        if img_path in seen:
            raise v.fail(f"{w}.path", f"{img_path!r} repeats images[{seen[img_path]}]")
        seen[img_path] = i
        faces: list[FacePrediction] = []
        for j, face in enumerate(v.array(img["faces"], f"{w}.faces")):
            fw = f"{w}.faces[{j}]"
            v.obj(face, fw, ("bbox", "landmarks"))
            bbox = [v.number(x, f"{fw}.bbox[{k}]") for k, x in enumerate(v.array(face["bbox"], f"{fw}.bbox"))]
            if len(bbox) != 4:
                raise v.fail(f"{fw}.bbox", f"expected [x0, y0, x1, y1], got {len(bbox)} values")
            if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
                raise v.fail(f"{fw}.bbox", f"x1 < x0 or y1 < y0 in {bbox}")
            score = face.get("score")
            if score is not None:
                score = v.number(score, f"{fw}.score")
            lms = v.array(face["landmarks"], f"{fw}.landmarks")
            if len(lms) != num_points:
                raise v.fail(f"{fw}.landmarks", f"expected {num_points} points, got {len(lms)}")
            points = []
            for k, pt in enumerate(lms):
                pw = f"{fw}.landmarks[{k}]"
                pt = v.array(pt, pw)
                if len(pt) != 2:
                    raise v.fail(pw, f"expected [x, y], got {len(pt)} values")
                points.append((v.number(pt[0], pw), v.number(pt[1], pw)))
            scores = face.get("landmark_scores")
            if scores is not None:
                items = v.array(scores, f"{fw}.landmark_scores")
                scores = [v.number(s, f"{fw}.landmark_scores[{k}]") for k, s in enumerate(items)]
                if len(scores) != num_points:
                    raise v.fail(f"{fw}.landmark_scores", f"expected {num_points} values, got {len(scores)}")
            conf = None if scores is None else np.array(scores)
            faces.append(FacePrediction(np.array(bbox), np.array(points), score, conf))
        images.append(
            ImagePrediction(
                img_path, v.integer(img["width"], f"{w}.width"), v.integer(img["height"], f"{w}.height"), faces
            )
        )
    return Prediction(model, scheme, images)


# ------------------------------------------------------------------------------------------ landmarks.csv


POSE_COLUMNS = ("yaw", "pitch", "roll")


def landmarks_csv_header(num_points: int, pose: bool = True) -> list[str]:
    """The column names of DESIGN.md: frame, time_s, track_id, box, score, x_i/y_i pairs, conf_i, then the head
    pose yaw, pitch, roll in degrees (appended last, so readers by position keep working; ``pose=False``: the
    header of files written before it)."""
    cols = ["frame", "time_s", "track_id", "box_x0", "box_y0", "box_x1", "box_y1", "score"]
    for i in range(num_points):
        cols += [f"x_{i}", f"y_{i}"]
    cols += [f"conf_{i}" for i in range(num_points)]
    return cols + list(POSE_COLUMNS) if pose else cols


def _fmt(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}f}"


class LandmarksCSVWriter:
    """Writes ``landmarks.csv`` one row per frame and face, flushing each row so a crash or Ctrl-C keeps
    every processed frame. With ``append=True`` an existing file is continued (resume): its header must
    match, and a partial last line left by a killed process is cut off."""

    def __init__(self, path: str | Path, num_points: int, append: bool = False) -> None:
        self.path = Path(path)
        self.num_points = int(num_points)
        self.header = landmarks_csv_header(self.num_points)
        self.last_frame: int | None = None  # the last frame already in the file (resume from the next)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append and self.path.exists() and self.path.stat().st_size > 0:
            self._prepare_append()
            self._fh = self.path.open("a", encoding="utf-8", newline="")
        else:
            self._fh = self.path.open("w", encoding="utf-8", newline="")
            self._fh.write(",".join(self.header) + "\n")
            self._fh.flush()
        self.rows_written = 0

    def _prepare_append(self) -> None:
        # Only the header and the tail are read: resuming costs the same for a short and an hour-long file.
        cut_tail(self.path, lambda line: True)  # a partial last line left by a killed process goes
        with self.path.open("rb") as fh:
            first = fh.readline(1 << 20).decode("utf-8", "replace").rstrip("\r\n")
            if first.split(",") != self.header:
                raise DataError(
                    self.path, f"cannot append: header is not that of a {self.num_points}-point landmarks.csv", 1
                )
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - (1 << 20)))
            tail = fh.read().splitlines()
        if size > len(first) + 1 and tail:
            try:
                self.last_frame = int(tail[-1].split(b",", 1)[0])
            except ValueError:
                raise DataError(self.path, "cannot append: bad frame number in the last row") from None

    def write(
        self,
        frame: int,
        time_s: float,
        track_id: int,
        bbox: Sequence[float] | np.ndarray,
        score: float | None,
        landmarks: np.ndarray,
        conf: np.ndarray | None = None,
        pose: np.ndarray | None = None,
    ) -> list[str]:
        """Append one row (landmarks ``(N, 2)`` frame pixels, ``conf`` ``(N,)``, ``pose`` (yaw, pitch, roll)
        degrees or None) and flush it; returns its cells."""
        pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
        if len(pts) != self.num_points:
            raise ValueError(f"expected {self.num_points} landmarks, got {len(pts)}")
        box = np.asarray(bbox, dtype=np.float64).reshape(4)
        c = np.full(self.num_points, np.nan) if conf is None else np.asarray(conf, dtype=np.float64).reshape(-1)
        if len(c) != self.num_points:
            raise ValueError(f"expected {self.num_points} confidences, got {len(c)}")
        cells = [str(int(frame)), _fmt(float(time_s), 6), str(int(track_id))]
        cells += [_fmt(float(b), 2) for b in box]
        cells.append(_fmt(None if score is None else float(score), 4))
        cells += [_fmt(float(x), 3) for x in pts.ravel()]
        cells += [_fmt(float(s), 4) for s in c]
        angles = np.full(3, np.nan) if pose is None else np.asarray(pose, dtype=np.float64).reshape(3)
        cells += [_fmt(float(a), 2) for a in angles]
        self._fh.write(",".join(cells) + "\n")
        self._fh.flush()
        self.rows_written += 1
        self.last_frame = int(frame)
        return cells

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> LandmarksCSVWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class LandmarksTable:
    """The rows of a landmarks.csv as arrays (R rows, N points); empty cells are NaN."""

    frame: np.ndarray  # (R,) int
    time_s: np.ndarray  # (R,)
    track_id: np.ndarray  # (R,) int
    boxes: np.ndarray  # (R, 4)
    scores: np.ndarray  # (R,)
    landmarks: np.ndarray  # (R, N, 2)
    conf: np.ndarray  # (R, N)
    pose: np.ndarray | None = None  # (R, 3) yaw, pitch, roll degrees; NaN in files written before the columns

    def __len__(self) -> int:
        return len(self.frame)

    def index(self) -> dict[tuple[int, int], int]:
        """Row number of each ``(frame, track_id)``."""
        return {(int(f), int(t)): i for i, (f, t) in enumerate(zip(self.frame, self.track_id))}

    def track(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``(T,)`` and landmarks ``(T, N, 2)`` of one track, in frame order."""
        sel = np.flatnonzero(self.track_id == track_id)
        sel = sel[np.argsort(self.frame[sel], kind="stable")]
        return self.frame[sel], self.landmarks[sel]

    def rows(self) -> Iterator[int]:
        return iter(range(len(self)))


def read_landmarks_csv(path: str | Path, num_points: int | None = None) -> LandmarksTable:
    """Read a landmarks.csv of ``track``; DataError names the line of a malformed row or repeated
    ``(frame, track_id)``. The number of points comes from the header (checked against ``num_points``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "landmarks file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read landmarks file ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV header ({exc})", 1) from None
    if not header:
        raise DataError(path, "empty file (no header)", 1)
    n = sum(1 for c in header if c.startswith("conf_"))
    if header not in (landmarks_csv_header(n), landmarks_csv_header(n, pose=False)):
        raise DataError(
            path, "header does not follow frame,time_s,track_id,box_x0..box_y1,score,x_i,y_i...,conf_i...,"
                  "yaw,pitch,roll", 1
        )
    if num_points is not None and n != num_points:
        raise DataError(path, f"expected {num_points} points, the header has {n}", 1)
    width = len(header)
    ints: list[tuple[int, int]] = []
    floats: list[list[float]] = []
    seen: dict[tuple[int, int], int] = {}
    rows = iter(reader)
    lineno = 1
    while True:
        lineno += 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # a field over the csv module's limit, a NUL byte, ...
            raise DataError(path, f"malformed CSV ({exc})", reader.line_num) from None
        if not row:
            continue
        if len(row) != width:
            raise DataError(path, f"expected {width} columns, got {len(row)}", lineno)
        try:
            key = (int(row[0]), int(row[2]))
            values = [float(c) if c != "" else math.nan for c in (row[1], *row[3:])]
        except ValueError as exc:
            raise DataError(path, f"not a number ({exc})", lineno) from None
        if not (0 <= key[0] < 2**62 and -(2**62) < key[1] < 2**62):
            raise DataError(path, f"frame {row[0]:.20} or track_id {row[2]:.20} out of range", lineno)
        if any(math.isinf(x) for x in values):
            raise DataError(path, "infinite value (write an empty cell for a missing one)", lineno)
        if key in seen:
            raise DataError(path, f"frame {key[0]} track {key[1]} repeats line {seen[key]}", lineno)
        seen[key] = lineno
        ints.append(key)
        floats.append(values)
    ia = np.asarray(ints, dtype=np.int64).reshape(-1, 2)
    fa = np.asarray(floats, dtype=np.float64).reshape(-1, width - 2)
    return LandmarksTable(
        frame=ia[:, 0],
        time_s=fa[:, 0],
        track_id=ia[:, 1],
        boxes=fa[:, 1:5],
        scores=fa[:, 5],
        landmarks=fa[:, 6 : 6 + 2 * n].reshape(-1, n, 2),
        conf=fa[:, 6 + 2 * n : 6 + 3 * n],
        pose=fa[:, 6 + 3 * n :] if width > 8 + 3 * n else np.full((len(fa), 3), np.nan),
    )
