from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from facetrack.data.aflw import aflw_csv_path, load_aflw
from facetrack.errors import DataError

HEADER = ["image_name", "scale", "box_size", "center_w", "center_h"] + [
    f"original_{i + 1}_{c}" for i in range(19) for c in "xy"]


def _row(rng: np.random.Generator, name: str, cx=100.0, cy=120.0, box=80.0) -> tuple[list[str], np.ndarray]:
    pts = rng.uniform(60, 160, size=(19, 2)).round(2)
    return [name, f"{box * 1.1 / 200:.4f}", f"{box}", f"{cx}", f"{cy}"] + [f"{v}" for v in pts.ravel()], pts


def _write(path: Path, rows: list[list[str]], header: bool = True) -> Path:
    lines = ([",".join(HEADER)] if header else []) + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_rows_box_and_visibility(tmp_path: Path, rng: np.random.Generator) -> None:
    (tmp_path / "images").mkdir()
    r1, p1 = _row(rng, "0/image00002.jpg")
    r2, p2 = _row(rng, "2/image04275.jpg", cx=50.5, cy=60.0, box=40.0)
    p2[3, 1] = 0.0  # unannotated point, as HRNet masks it
    r2[5 + 7] = "0.0"
    _write(aflw_csv_path(tmp_path, "test"), [r1, r2])
    samples = load_aflw(tmp_path)
    assert len(samples) == 2
    s1, s2 = samples
    np.testing.assert_allclose(s1.landmarks, p1)
    assert s1.landmarks.shape == (19, 2) and s1.scheme == "aflw19" and s1.source == "aflw"
    assert s1.image_path == tmp_path / "images" / "0/image00002.jpg"
    np.testing.assert_allclose(s1.bbox, [60.0, 80.0, 140.0, 160.0])
    np.testing.assert_allclose(s2.bbox, [30.5, 40.0, 70.5, 80.0])
    w, h = s2.bbox[2] - s2.bbox[0], s2.bbox[3] - s2.bbox[1]
    assert np.sqrt(w * h) == pytest.approx(40.0) and max(w, h) == pytest.approx(40.0)
    assert s1.visible.all() and s2.visible.sum() == 18 and not s2.visible[3]


def test_splits_without_header_and_explicit_paths(tmp_path: Path, rng: np.random.Generator) -> None:
    r, _ = _row(rng, "a.jpg")
    csv_path = _write(tmp_path / "custom.csv", [r], header=False)
    samples = load_aflw(tmp_path, csv_path=csv_path, image_root=tmp_path / "pics")
    assert samples[0].image_path == tmp_path / "pics" / "a.jpg"
    _write(aflw_csv_path(tmp_path, "test_frontal"), [r])
    assert load_aflw(tmp_path, "test_frontal")[0].image_path == tmp_path / "a.jpg"
    with pytest.raises(ValueError, match="split"):
        load_aflw(tmp_path, "val")
    with pytest.raises(DataError, match="face_landmarks_aflw_train.csv"):
        load_aflw(tmp_path, "train")


def test_header_in_another_order_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    r, _ = _row(rng, "a.jpg")
    header = ["image_name", "scale", "center_w", "center_h", "box_size"] + HEADER[5:]
    path = aflw_csv_path(tmp_path, "test")
    path.write_text(",".join(header) + "\n" + ",".join(r) + "\n")
    with pytest.raises(DataError, match=r"aflw_test.csv:1: columns 2-5"):
        load_aflw(tmp_path)


def test_malformed_rows_name_file_and_line(tmp_path: Path, rng: np.random.Generator) -> None:
    good, _ = _row(rng, "a.jpg")
    bad_text = list(good)
    bad_text[9] = "x"
    path = _write(aflw_csv_path(tmp_path, "test"), [good, good[:-1]])
    with pytest.raises(DataError, match=rf"{path.name}:3: expected 43 columns, found 42"):
        load_aflw(tmp_path)
    _write(path, [bad_text])
    with pytest.raises(DataError, match=r":2: not a number"):
        load_aflw(tmp_path)
    zero_box = list(good)
    zero_box[2] = "0"
    _write(path, [zero_box])
    with pytest.raises(DataError, match=r":2: box_size"):
        load_aflw(tmp_path)


def test_skip_invalid_logs_and_counts(tmp_path: Path, rng: np.random.Generator, caplog) -> None:
    good, _ = _row(rng, "a.jpg")
    _write(aflw_csv_path(tmp_path, "train"), [good, ["b.jpg", "1"], good, ["c.jpg", "nan"] + good[2:]])
    with caplog.at_level(logging.WARNING, logger="facetrack.data.aflw"):
        samples = load_aflw(tmp_path, "train", skip_invalid=True)
    assert len(samples) == 2
    assert "skipped 2 invalid row(s)" in caplog.text
