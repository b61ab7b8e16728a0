from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from facetrack.data.wflw import ATTRIBUTES, load_wflw, wflw_list_path
from facetrack.errors import DataError


def _line(rng: np.random.Generator, flags: list[int], image: str) -> tuple[str, np.ndarray]:
    pts = rng.uniform(10, 200, size=(98, 2)).round(3)
    box = [pts[:, 0].min() - 5, pts[:, 1].min() - 5, pts[:, 0].max() + 5, pts[:, 1].max() + 5]
    fields = [f"{v:.3f}" for v in pts.ravel()] + [f"{v:.0f}" for v in box] + [str(f) for f in flags] + [image]
    return " ".join(fields), pts


def _write(root: Path, split: str, lines: list[str]) -> Path:
    path = wflw_list_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_points_box_flags_and_path(tmp_path: Path, rng: np.random.Generator) -> None:
    l1, p1 = _line(rng, [1, 0, 0, 0, 1, 0], "51--Dresses/51_Dresses_wearingdress_51_377.jpg")
    l2, p2 = _line(rng, [0, 0, 1, 0, 0, 1], "1--Handshaking/1_Handshaking_1_2.jpg")
    _write(tmp_path, "test", [l1, "", l2])
    samples = load_wflw(tmp_path)
    assert len(samples) == 2
    s = samples[0]
    np.testing.assert_allclose(s.landmarks, p1)
    assert s.landmarks.shape == (98, 2) and s.landmarks.dtype == np.float64
    assert s.scheme == "wflw98" and s.source == "wflw"
    assert s.image_path == tmp_path / "WFLW_images" / "51--Dresses/51_Dresses_wearingdress_51_377.jpg"
    assert s.subject == "51--Dresses/51_Dresses_wearingdress_51_377.jpg"
    assert s.attributes == {"largepose": 1, "expression": 0, "illumination": 0, "makeup": 0,
                            "occlusion": 1, "blur": 0}
    assert s.bbox[0] <= p1[:, 0].min() and s.bbox[3] >= p1[:, 1].max()
    np.testing.assert_allclose(samples[1].landmarks, p2)


@pytest.mark.parametrize("subset,expected", [("largepose", [0]), ("occlusion", [0, 2]), ("blur", [1]),
                                             ("makeup", []), (None, [0, 1, 2]), ("all", [0, 1, 2])])
def test_subsets_filter_by_flag(tmp_path: Path, rng: np.random.Generator, subset, expected) -> None:
    lines = [_line(rng, flags, f"img{i}.jpg")[0]
             for i, flags in enumerate([[1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0]])]
    _write(tmp_path, "train", lines)
    got = load_wflw(tmp_path, split="train", subset=subset)
    assert [s.subject for s in got] == [f"img{i}.jpg" for i in expected]


def test_unknown_split_and_subset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_wflw(tmp_path, split="val")
    with pytest.raises(ValueError, match="pose"):
        load_wflw(tmp_path, subset="pose")
    assert set(ATTRIBUTES) == {"largepose", "expression", "illumination", "makeup", "occlusion", "blur"}


def test_missing_list_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="list_98pt_rect_attr_test.txt"):
        load_wflw(tmp_path)


def test_malformed_lines_name_file_and_line(tmp_path: Path, rng: np.random.Generator) -> None:
    good, _ = _line(rng, [0] * 6, "a.jpg")
    short = " ".join(good.split()[1:])
    path = _write(tmp_path, "test", [good, short])
    with pytest.raises(DataError, match=rf"{path.name}:2: expected 207 fields .* found 206"):
        load_wflw(tmp_path)
    fields = good.split()
    fields[5] = "abc"
    _write(tmp_path, "test", [good, good, " ".join(fields)])
    with pytest.raises(DataError, match=r":3: not a number"):
        load_wflw(tmp_path)
    fields = good.split()
    fields[-3] = "2"
    _write(tmp_path, "test", [" ".join(fields)])
    with pytest.raises(DataError, match=r":1: attribute flags"):
        load_wflw(tmp_path)


def test_skip_invalid_logs_and_counts(tmp_path: Path, rng: np.random.Generator, caplog) -> None:
    good, _ = _line(rng, [0] * 6, "a.jpg")
    _write(tmp_path, "test", [good, "1 2 3", good.replace("a.jpg", "b.jpg")])
    with caplog.at_level(logging.WARNING, logger="facetrack.data.wflw"):
        samples = load_wflw(tmp_path, skip_invalid=True)
    assert [s.subject for s in samples] == ["a.jpg", "b.jpg"]
    assert "skipped 1 invalid line" in caplog.text
