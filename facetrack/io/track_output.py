"""The one output sink of ``facetrack track`` (ours and the peers'): a folder that never loses or fakes a result.

``TrackOutput`` writes ``landmarks.csv`` (flushed per frame), ``landmarks.jsonl``, ``landmarks.npz`` and the 300VW
``annot/*.pts`` (``--format``) and ``summary.json``. It also makes the folder resumable and self-describing:

- ``summary.json`` carries ``provenance``: what made the folder (the source's path, size, mtime and a hash of its
  head and tail; the model and its weights' sha256; detector, formats and options). ``plan`` compares it with a
  new run's: an exact, completed match is skipped, an exact unfinished one is resumed, anything else is refused
  unless the caller forces a fresh run.
- A checkpoint (every ``CHECKPOINT_ROWS`` rows or ``CHECKPOINT_S`` seconds, at a frame boundary) moves the rows
  gathered since the last one into a small ``.landmarks.parts/part_*.npz`` and records in summary.json the last
  frame whose outputs are all on disk. A resumed run cuts every file back to that frame (reading only the files'
  tails) and goes on from the next frame. Temporal models keep per-face state: a resumed run starts with no
  track and re-detects at the resume frame; its new tracks get ids after the highest id already written.
- ``landmarks.npz`` is assembled from the parts, streaming one part at a time into the zip (memory bounded by a
  part, never by re-reading the CSV), atomically: after a checkpoint whenever the rows have doubled since the
  last assembly, and at the end. A kill at any moment leaves a valid (possibly shorter) npz, a CSV and a JSONL
  whose last line at worst is partial (cut off on resume), and a valid summary.json.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.errors import DataError
from facetrack.io.pts import write_pts
from facetrack.io.results import LandmarksCSVWriter, cut_tail, pose_json, write_summary_json

FORMATS = ("csv", "jsonl", "npz", "pts")
CHECKPOINT_ROWS = 2048  # rows per npz part (about 3.5 MB for 68 points)
CHECKPOINT_S = 5.0  # at most this long between checkpoints (the work a kill can cost)
PARTS_DIR = ".landmarks.parts"
NPZ_KEYS = ("frame", "time_s", "track_id", "boxes", "scores", "landmarks", "confidences", "poses")
_HASH_BYTES = 1 << 20


@dataclass
class FaceRow:
    """One face of one frame as every writer takes it."""

    track_id: int
    box: np.ndarray
    score: float | None
    landmarks: np.ndarray
    confidences: np.ndarray | None
    pose: np.ndarray | None = None  # (yaw, pitch, roll) degrees


# ------------------------------------------------------------------------------------------------ provenance


def source_label(source: Any) -> str:
    """A source as summary.json names it: a path in full (a ``Path``'s ``name`` would be only its last part), else
    a frame source's ``name``, else its text (a camera index)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", source))


def source_fingerprint(source: Any) -> dict[str, Any]:
    """What identifies a source's content: path, size, mtime and a sha256 of its first and last MiB (a file);
    the frame files' names, sizes and mtimes (a folder); the index (a camera, never matched)."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit() and not Path(source).exists()):
        return {"camera": int(source)}
    path = Path(source_label(source))
    if path.is_dir():
        digest = hashlib.sha256()
        count = 0
        for item in sorted(path.iterdir()):
            if item.is_file():
                st = item.stat()
                digest.update(f"{item.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
                count += 1
        return {"path": str(path.resolve()), "kind": "folder", "files": count, "listing_sha256": digest.hexdigest()}
    if not path.is_file():
        return {"path": str(path.resolve()), "kind": "missing"}
    st = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        digest.update(fh.read(_HASH_BYTES))
        if st.st_size > _HASH_BYTES:
            fh.seek(max(_HASH_BYTES, st.st_size - _HASH_BYTES))
            digest.update(fh.read(_HASH_BYTES))
    return {"path": str(path.resolve()), "kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "head_tail_sha256": digest.hexdigest()}


def _normal(value: Any) -> Any:
    """The JSON form of ``value`` (what a summary.json gives back), for exact comparison."""
    from facetrack.io.results import _json_safe

    return json.loads(json.dumps(_json_safe(value), sort_keys=True))


def read_summary(out_dir: str | Path) -> dict[str, Any] | None:
    """The folder's summary.json as a dict, or None when it is missing or unreadable."""
    from facetrack.io.validation import load_json

    try:
        doc = load_json(Path(out_dir) / "summary.json")
    except DataError:
        return None
    return doc if isinstance(doc, dict) else None


@dataclass
class Plan:
    """What to do with an output folder: ``action`` is "run", "skip", "resume" or "refuse"; ``message`` says why."""

    action: str
    message: str = ""


def plan(out_dir: str | Path, provenance: dict[str, Any], force: bool = False, resumable: bool = True) -> Plan:
    """Compare the folder's record with ``provenance``: skip an exact completed match, resume an exact unfinished
    one (when ``resumable``), run into an empty folder; refuse a folder made by anything else unless ``force``."""
    out = Path(out_dir)
    if force:
        return Plan("run", "--force: starting over")
    summary = read_summary(out)
    if summary is None:
        if any((out / name).exists() for name in ("landmarks.csv", "landmarks.jsonl", "landmarks.npz")):
            return Plan("refuse", f"{out} holds landmark files but no readable summary.json: they are not ours to "
                                  "overwrite (use --force to replace them, or another --out)")
        return Plan("run")
    old = summary.get("provenance")
    new = _normal(provenance)
    progress = summary.get("progress") if isinstance(summary.get("progress"), dict) else {}
    if summary.get("completed") is not True and summary.get("frames_read") == 0 and \
            progress.get("last_frame", -1) == -1 and progress.get("rows", 0) == 0:
        return Plan("run")  # an earlier attempt that tracked nothing (e.g. the source could not be opened)
    if old != new:
        return Plan("refuse", f"{out} holds results of {_describe_difference(old, new)}; use --force to "
                              "replace them, or another --out")
    if summary.get("completed") is True:
        return Plan("skip", f"already complete in {out}")
    if not resumable:
        return Plan("run", "interrupted earlier; this run cannot resume (overlay video or live source): starting over")
    return Plan("resume", f"resuming an interrupted run in {out}")


def _describe_difference(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "a run that recorded no provenance (an older facetrack, or another tool)"
    a, b = old.get("source"), new.get("source")
    if a != b:
        if isinstance(a, dict) and isinstance(b, dict) and a.get("path") == b.get("path"):
            return f"another version of {b.get('path')} (size, time or content changed)"
        return f"another source ({a.get('path', a) if isinstance(a, dict) else a})"
    where, x, y = _first_difference(old, new)
    show = [("absent" if v is _ABSENT else json.dumps(v)[:80]) for v in (x, y)]
    return f"another run: {where} was {show[0]}, is now {show[1]}"


def _first_difference(a: Any, b: Any, where: str = "") -> tuple[str, Any, Any]:
    """The first leaf at which two JSON values differ, as ``(dotted path, a's value, b's value)``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key, _ABSENT) != b.get(key, _ABSENT):
                return _first_difference(a.get(key, _ABSENT), b.get(key, _ABSENT), f"{where}.{key}".lstrip("."))
    return where or "the record", a, b


_ABSENT = object()


# ------------------------------------------------------------------------------------------------ file tails


def _frame_of_csv(line: bytes) -> int | None:
    try:
        return int(line.split(b",", 1)[0])
    except ValueError:
        return None


def _frame_of_jsonl(line: bytes) -> int | None:
    try:
        value = json.loads(line)
        return int(value["frame"]) if isinstance(value, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------------------------------ npz parts


def _part_arrays(rows: list[tuple[int, float, int, list[float]]], num_points: int) -> dict[str, np.ndarray]:
    n = num_points
    frame = np.array([r[0] for r in rows], dtype=np.int64)
    time_s = np.array([r[1] for r in rows], dtype=np.float64)
    track = np.array([r[2] for r in rows], dtype=np.int64)
    values = np.array([r[3] for r in rows], dtype=np.float64).reshape(len(rows), 8 + 3 * n)
    return {"frame": frame, "time_s": time_s, "track_id": track, "boxes": values[:, 0:4], "scores": values[:, 4],
            "landmarks": values[:, 5:5 + 2 * n].reshape(-1, n, 2), "confidences": values[:, 5 + 2 * n:5 + 3 * n],
            "poses": values[:, 5 + 3 * n:]}


def _empty_arrays(num_points: int) -> dict[str, np.ndarray]:
    return _part_arrays([], num_points)


def _save_atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def assemble_npz(parts: Sequence[Path], out: Path, num_points: int) -> int:
    """Write ``out`` (compressed npz, the keys of ``NPZ_KEYS``) from the parts, in order, streaming one part and
    one key at a time into the zip; atomic. Returns the number of rows."""
    counts, dtypes, tails = [], {}, {}
    empty = _empty_arrays(num_points)
    for key, arr in empty.items():
        dtypes[key], tails[key] = arr.dtype, arr.shape[1:]
    for part in parts:
        with np.load(part) as data:
            counts.append(len(data["frame"]))
    total = int(sum(counts))
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for key in NPZ_KEYS:
            header = {"descr": np.lib.format.dtype_to_descr(dtypes[key]), "fortran_order": False,
                      "shape": (total, *tails[key])}
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_2_0(fh, header)
                for part in parts:
                    with np.load(part) as data:
                        fh.write(np.ascontiguousarray(data[key], dtype=dtypes[key]).tobytes())
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return total


# ------------------------------------------------------------------------------------------------ the sink


class TrackOutput:
    """The outputs of one source in ``out_dir``: call ``start(summary)``, ``write(index, time_s, faces)`` per
    frame, ``finish(summary)`` once (also after an error or Ctrl-C). ``resume=True`` continues the folder's
    interrupted run: ``resume_from`` is the first frame to process, ``track_id_offset`` the ids to add."""

    def __init__(self, out_dir: str | Path, num_points: int, formats: Sequence[str] = ("csv",), multi: bool = False,
                 resume: bool = False) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.num_points = int(num_points)
        self.formats = tuple(formats)
        self.multi = bool(multi)
        self.summary_path = self.out / "summary.json"
        self.parts_dir = self.out / PARTS_DIR
        self.resume_from = 0
        self.track_id_offset = 0
        self.previous: dict[str, Any] = {"frames_read": 0, "frames_with_face": 0, "track_ids": []}
        self.track_ids: set[int] = set()
        self._rows: list[tuple[int, float, int, list[float]]] = []
        self._parts: list[Path] = []
        self._rows_in_parts = 0
        self._rows_at_npz = 0
        self._last_checkpoint = time.monotonic()
        self._last_frame: int | None = None
        self._frames = self._with_face = 0
        self._summary: dict[str, Any] = {}
        old = read_summary(self.out) if resume else None
        self.previous_summary: dict[str, Any] = {}
        if old is not None and isinstance(old.get("progress"), dict):
            self._prepare_resume(old["progress"])
            self.previous_summary = old if self.resume_from > 0 else {}
        else:
            self._clear()
        self.csv = LandmarksCSVWriter(self.out / "landmarks.csv", self.num_points, append=self.resume_from > 0)
        self.jsonl = None
        if "jsonl" in self.formats:
            self.jsonl = (self.out / "landmarks.jsonl").open("a" if self.resume_from > 0 else "w", encoding="utf-8")

    # -- fresh start / resume

    def _clear(self) -> None:
        for name in ("landmarks.csv", "landmarks.jsonl", "landmarks.npz", "overlay.mp4"):
            (self.out / name).unlink(missing_ok=True)
        for name in (PARTS_DIR, "annot", "tracks"):
            if (self.out / name).is_dir():
                shutil.rmtree(self.out / name)

    def _prepare_resume(self, progress: dict[str, Any]) -> None:
        from facetrack.io.validation import integer

        where = self.summary_path
        last = integer(progress.get("last_frame", -1), where, "progress.last_frame", low=-1)
        parts = progress.get("parts", [])
        if not isinstance(parts, list) or not all(isinstance(p, str) and "/" not in p and "\\" not in p
                                                  for p in parts):
            raise DataError(where, "progress.parts: expected a list of file names")
        self._parts = [self.parts_dir / p for p in parts]
        missing = [p for p in self._parts if not p.is_file()]
        csv_path = self.out / "landmarks.csv"
        if missing or not csv_path.is_file() or ("jsonl" in self.formats and not (self.out / "landmarks.jsonl").is_file()):
            self._clear()  # the record does not match the files: start over rather than guess
            self._parts = []
            return
        self.resume_from = last + 1
        self._rows_in_parts = integer(progress.get("rows", 0), where, "progress.rows")
        self._rows_at_npz = integer(progress.get("rows_at_npz", 0), where, "progress.rows_at_npz")
        for key in ("frames_read", "frames_with_face"):
            self.previous[key] = integer(progress.get(key, 0), where, f"progress.{key}")
        ids = progress.get("track_ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise DataError(where, "progress.track_ids: expected a list of integers")
        self.previous["track_ids"] = sorted(ids)
        self.track_ids = set(ids)
        self.track_id_offset = max(ids) + 1 if ids else 0
        keep = self.resume_from

        def before(frame_of: Callable[[bytes], int | None]) -> Callable[[bytes], bool]:
            return lambda line: (lambda f: f is None or f < keep)(frame_of(line))

        cut_tail(csv_path, before(_frame_of_csv))
        if "jsonl" in self.formats:
            cut_tail(self.out / "landmarks.jsonl", before(_frame_of_jsonl))
        for stale in self.parts_dir.glob("part_*.npz"):
            if stale not in self._parts:
                stale.unlink()
        for annot in [self.out / "annot", *(self.out / "tracks").glob("*/annot")]:
            if annot.is_dir():  # .pts of frames after the checkpoint (1-based names) go: they are redone
                for item in annot.iterdir():
                    if item.suffix == ".pts" and item.stem.isdigit() and int(item.stem) - 1 >= self.resume_from:
                        item.unlink()

    # -- writing

    def start(self, summary: dict[str, Any]) -> None:
        """Record the run (``completed: false``) before the first frame."""
        self._summary = summary
        self._write_summary()

    def write(self, index: int, time_s: float, faces: Sequence[FaceRow]) -> None:
        """All outputs of one frame; a checkpoint may follow (at this frame boundary)."""
        for face in faces:
            tid = int(face.track_id) + self.track_id_offset
            cells = self.csv.write(index, time_s, tid, face.box, face.score, face.landmarks, face.confidences,
                                   getattr(face, "pose", None))
            self.track_ids.add(tid)
            if "npz" in self.formats:
                self._rows.append((int(index), float(cells[1]) if cells[1] else math.nan, tid,
                                   [float(c) if c else math.nan for c in cells[3:]]))
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"frame": int(index), "time_s": round(float(time_s), 6),
                                         "faces": [_face_json(f, self.track_id_offset) for f in faces]}) + "\n")
            self.jsonl.flush()
        if "pts" in self.formats and faces:
            name = f"{index + 1:06d}.pts"
            write_pts(_mkdir(self.out / "annot") / name, faces[0].landmarks)
            if self.multi:
                for face in faces:
                    tid = int(face.track_id) + self.track_id_offset
                    write_pts(_mkdir(self.out / "tracks" / str(tid) / "annot") / name, face.landmarks)
        self._last_frame = int(index)
        self._frames += 1
        self._with_face += bool(faces)
        if len(self._rows) >= CHECKPOINT_ROWS or time.monotonic() - self._last_checkpoint >= CHECKPOINT_S:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Everything up to the last written frame to disk: a new npz part, the npz when the rows have doubled,
        and the progress record in summary.json."""
        self._last_checkpoint = time.monotonic()
        if self._last_frame is None:
            return
        if self._rows:
            part = self.parts_dir / f"part_{len(self._parts):06d}.npz"
            self.parts_dir.mkdir(exist_ok=True)
            _save_atomic_npz(part, _part_arrays(self._rows, self.num_points))
            self._parts.append(part)
            self._rows_in_parts += len(self._rows)
            self._rows = []
            if self._rows_in_parts >= 2 * max(self._rows_at_npz, 1):
                self._assemble()
        self._write_summary()

    def _assemble(self) -> None:
        assemble_npz(self._parts, self.out / "landmarks.npz", self.num_points)
        self._rows_at_npz = self._rows_in_parts

    def counts(self) -> dict[str, Any]:
        """Frames read and frames with a face over the whole folder (earlier runs included), and track ids."""
        return {"frames_read": self.previous["frames_read"] + self._frames,
                "frames_with_face": self.previous["frames_with_face"] + self._with_face,
                "track_ids": sorted(self.track_ids)}

    def _write_summary(self) -> None:
        if self._last_frame is not None or "progress" not in self._summary:
            counts = self.counts()
            last = self._last_frame if self._last_frame is not None else self.resume_from - 1
            self._summary["progress"] = {
                "last_frame": last, "parts": [p.name for p in self._parts], "rows": self._rows_in_parts,
                "rows_at_npz": self._rows_at_npz, **counts}
        write_summary_json(self.summary_path, self._summary)

    def close_files(self) -> None:
        """Close the CSV and JSONL (idempotent)."""
        self.csv.close()
        if self.jsonl is not None:
            self.jsonl.close()

    def finish(self, summary: dict[str, Any], completed: bool) -> dict[str, Any]:
        """Close everything, write the npz (when asked) and the final summary; parts go once the run completed."""
        self.close_files()
        self._summary = summary
        try:
            self.checkpoint()
            if "npz" in self.formats and (self._rows_at_npz != self._rows_in_parts
                                          or not (self.out / "landmarks.npz").exists()):
                self._assemble()
        finally:
            if completed:
                self._summary.pop("progress", None)
                write_summary_json(self.summary_path, self._summary)
                shutil.rmtree(self.parts_dir, ignore_errors=True)
            else:
                self._write_summary()
        return self._summary


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _face_json(face: FaceRow, offset: int = 0) -> dict[str, Any]:
    return {"track_id": int(face.track_id) + offset, "box": [round(float(v), 2) for v in face.box],
            "score": None if face.score is None else round(float(face.score), 4),
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in np.asarray(face.landmarks)],
            "confidences": None if face.confidences is None else
            [round(float(c), 4) if np.isfinite(c) else None for c in np.asarray(face.confidences)],
            "pose": pose_json(getattr(face, "pose", None))}
