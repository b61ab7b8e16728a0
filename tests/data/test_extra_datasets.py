"""Readers of ideask21, mtfl5 and ytf68: layout, subjects, held-out splits (synthetic folders; the real data
in ../shared/data when present)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facetrack.data import catalog
from facetrack.data.ideask21 import load_ideask21
from facetrack.data.mtfl5 import load_mtfl5, subject_of
from facetrack.data.ytf68 import load_ytf68, person_of
from facetrack.errors import DataError
from facetrack.io.pts import write_pts
from facetrack.schemes import IBUG68_CORRESPONDENCE, get_scheme, ibug68_to

AFFINE = "1.0,0.0,0.0,0.0,1.0,0.0"


def _face(root, name, n, size=32, seed=0):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path.with_suffix(".jpg")), np.full((size, size, 3), 128, np.uint8))
    write_pts(path.with_suffix(".pts"), np.random.default_rng(seed).uniform(4, size - 4, (n, 2)))


@pytest.fixture
def ideask_root(tmp_path):
    root = tmp_path / "ideask21"
    rows = ["crop,source,m00,m01,m02,m10,m11,m12"]
    for i, name in enumerate(["I/000001_1", "I/000001_2", "I/000002_1", "II/000003_1", "II/000004_1"]):
        _face(root, name, 21, seed=i)
        rows.append(f"{name},{name.split('_')[0]}.jpg,{AFFINE}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "dropped.csv").write_text("crop,source,reason\nI/000009_1,I/000009.jpg,points outside the image\n")
    return root


def test_ideask21_reader(ideask_root):
    faces = load_ideask21(ideask_root)
    assert [f.image_path.stem for f in faces] == ["000001_1", "000001_2", "000002_1", "000003_1", "000004_1"]
    assert faces[0].scheme == "ideask21" and faces[0].landmarks.shape == (21, 2)
    assert faces[0].subject == faces[1].subject == "ideask21/I/000001" != faces[2].subject
    assert [f.image_path.stem for f in load_ideask21(ideask_root, "II")] == ["000003_1", "000004_1"]
    np.testing.assert_allclose(faces[0].bbox, [63.5, 63.5, 191.5, 191.5])
    with pytest.raises(ValueError, match="unknown ideask21 split"):
        load_ideask21(ideask_root, "test")


def test_missing_pts_is_named_or_skipped(ideask_root):
    (ideask_root / "I" / "000002_1.pts").unlink()
    with pytest.raises(DataError, match="000002_1.pts"):
        load_ideask21(ideask_root)
    assert len(load_ideask21(ideask_root, skip_invalid=True)) == 4


def test_mtfl5_reader_and_subjects(tmp_path):
    root = tmp_path / "mtfl5"
    rows = ["crop,split"]
    for i, (name, split) in enumerate([("lfw_5590/Aaron_Eckhart_0001", "train"), ("net_7876/1002_0_0", "train"),
                                       ("net_7876/1002_1_0", "train"), ("AFLW/0001-image20056", "test")]):
        _face(root, name, 5, seed=i)
        rows.append(f"{name},{split}")
    (root / "split.csv").write_text("\n".join(rows) + "\n")
    assert [f.image_path.stem for f in load_mtfl5(root, "train")] == ["Aaron_Eckhart_0001", "1002_0_0", "1002_1_0"]
    test = load_mtfl5(root)
    assert len(test) == 1 and test[0].scheme == "mtfl5" and test[0].bbox is None
    assert len(load_mtfl5(root, "all")) == 4
    assert subject_of("lfw_5590/Aaron_Eckhart_0001") == "lfw/Aaron_Eckhart"
    assert subject_of("net_7876/1002_1_0") == subject_of("net_7876/1002_0_0") == "net/1002"
    assert subject_of("AFLW/0001-image20056") == "aflw/image20056"
    (root / "split.csv").write_text("crop,split\nlfw_5590/Aaron_Eckhart_0001,dev\n")
    with pytest.raises(DataError, match="split.csv:2"):
        load_mtfl5(root, "train")


def test_ytf68_reader(tmp_path):
    root = tmp_path / "ytf68"
    rows = ["crop,source,m00,m01,m02,m10,m11,m12,clip,split"]
    for i, (folder, stem) in enumerate([("train", "Luis_Fonsi_21"), ("train", "Luis_Fonsi_30"),
                                        ("test", "Luis_Fonsi_21"), ("test", "Ann_Lee_00")]):
        _face(root, f"{folder}/{stem}", 68, seed=i)
        rows.append(f"{folder}/{stem},x.jpg,{AFFINE},{stem[:-1]},{folder}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    faces = load_ytf68(root)
    assert len(faces) == 4 and len(load_ytf68(root, "source_test")) == 2
    assert {f.subject for f in faces} == {"ytf/Luis_Fonsi", "ytf/Ann_Lee"}
    assert [f.attributes["frame"] for f in faces] == [1, 0, 1, 0]
    np.testing.assert_allclose(faces[0].bbox[:2], faces[0].landmarks.min(axis=0))
    assert person_of("Luis_Fonsi_2") == "Luis_Fonsi"
    (root / "manifest.csv").write_text("crop,source,m00,m01,m02,m10,m11,m12\ntrain/Luis_Fonsi_21,x.jpg," + AFFINE)
    with pytest.raises(DataError, match="clip and split"):
        load_ytf68(root)


def test_ibug68_correspondence_is_data():
    for name, table in IBUG68_CORRESPONDENCE.items():
        assert len(table) == get_scheme(name).num_points
    points = np.random.default_rng(0).uniform(0, 100, (2, 68, 2))
    five = ibug68_to(points, "mtfl5")
    np.testing.assert_allclose(five[:, 0], points[:, 36:42].mean(axis=1))
    np.testing.assert_allclose(five[:, 2], points[:, 30])
    # a flipped 68-point face maps to the flipped 21-point face
    ibug, ide = get_scheme("ibug68"), get_scheme("ideask21")
    flipped = points[:, list(ibug.flip_perm)]
    np.testing.assert_allclose(ibug68_to(flipped, "ideask21"), ibug68_to(points, "ideask21")[:, list(ide.flip_perm)])


# ------------------------------------------------------------------------------------------ the shared data

COUNTS = {"ideask21": 2708, "mtfl5": 10645, "ytf68": 4226}


@pytest.mark.parametrize("name", ["ideask21", "mtfl5"])
def test_scheme_json_agrees_with_schemes(shared_data, name):
    path = shared_data / name / "scheme.json"
    if not path.is_file():
        pytest.skip(f"no {name}")
    meta = json.loads(path.read_text())
    scheme = get_scheme(name)
    assert meta["num_points"] == scheme.num_points and tuple(meta["flip_perm"]) == scheme.flip_perm
    table = IBUG68_CORRESPONDENCE[name]
    assert [(tuple(v[0]), v[1]) for _, v in sorted(meta["ibug68"].items(), key=lambda kv: int(kv[0]))] == list(table)


@pytest.mark.parametrize("name", ["ideask21", "mtfl5", "ytf68"])
def test_shared_sets_load_with_subject_disjoint_held_out_splits(shared_data, name):
    root = shared_data / name
    if not root.is_dir():
        pytest.skip(f"no {name}")
    every = catalog.load(name, root, "all")
    assert len(every) == COUNTS[name]
    assert all(np.isfinite(f.landmarks).all() for f in every)
    train, val = catalog.train_val(name, root)
    assert {f.subject for f in train}.isdisjoint({f.subject for f in val})
    assert [f.image_path for f in val] == [f.image_path for f in catalog.load(name, root, "val")]
    assert 0.1 * (len(train) + len(val)) <= len(val) < 0.15 * (len(train) + len(val))
    spec = catalog.get_dataset(name)
    if name == "mtfl5":
        test = catalog.load(name, root, "test")
        assert len(train) + len(val) + len(test) == COUNTS[name]
        assert {f.subject for f in train + val}.isdisjoint({f.subject for f in test})
    else:
        assert len(train) + len(val) == COUNTS[name]
    assert spec.default_split in spec.splits
