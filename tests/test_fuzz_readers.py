"""Fuzzing every reader of a user-facing file: whatever the bytes, a reader returns a checked value or raises the
project's own error (DataError / ModelError) naming the file, never a traceback of another type, a hang or a
huge allocation. Bounded examples (``FACETRACK_FUZZ_EXAMPLES``, default 30 per test) so that it runs in CI."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from facetrack.errors import DataError, FacetrackError, ModelError  # noqa: E402

EXAMPLES = int(os.environ.get("FACETRACK_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                           st.dictionaries(st.text(max_size=8), kids, max_size=5)),
                           max_leaves=30)


def _dump(value) -> str:
    return json.dumps(value, allow_nan=True)


def _mutations(doc):
    """Strategies replacing one node of ``doc`` (a JSON value) by an arbitrary value."""
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(doc, ())

    def apply(path, value):
        import copy

        out = copy.deepcopy(doc)
        if not path:
            return value
        node = out
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        return out

    return st.builds(apply, st.sampled_from(paths), json_values)


def _read(reader, path: Path):
    """``reader(path)``, or None when it raised a DataError that names the file (anything else fails the test)."""
    try:
        return reader(path)
    except DataError as exc:
        assert str(path) in str(exc)
        return None


def _file(tmp_path_factory, name: str, data: str | bytes) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / name
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


# ----------------------------------------------------------------------------------------------- PRED.json

_PRED = {"model": "m", "scheme": "common7", "images": [{"path": "a.png", "width": 10, "height": 10, "faces": [
    {"bbox": [0, 0, 5, 5], "score": 0.5, "landmarks": [[1, 1]] * 7, "landmark_scores": [0.5] * 7}]}]}


@FUZZ
@given(doc=st.one_of(json_values, _mutations(_PRED)))
def test_read_predictions(tmp_path_factory, doc):
    from facetrack.io.results import read_predictions

    pred = _read(read_predictions, _file(tmp_path_factory, "pred.json", _dump(doc)))
    for img in pred.images if pred else []:
        for face in img.faces:
            assert np.isfinite(face.bbox).all() and np.isfinite(face.landmarks).all()


@FUZZ
@given(data=st.binary(max_size=300))
def test_read_predictions_bytes(tmp_path_factory, data):
    from facetrack.io.results import read_predictions

    with pytest.raises(DataError):
        read_predictions(_file(tmp_path_factory, "pred.json", data))


# ----------------------------------------------------------------------------------------------- landmarks.csv


def _csv_cells():
    return st.one_of(st.just(""), st.integers(-5, 5).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     st.text(max_size=6), st.just("9" * 40), st.just('"x\ny"'), st.just("x" * 200_000))


@FUZZ
@given(rows=st.lists(st.lists(_csv_cells(), min_size=0, max_size=20), max_size=4), n=st.integers(1, 3))
def test_read_landmarks_csv(tmp_path_factory, rows, n):
    from facetrack.io.results import landmarks_csv_header, read_landmarks_csv

    text = ",".join(landmarks_csv_header(n)) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    table = _read(read_landmarks_csv, _file(tmp_path_factory, "landmarks.csv", text))
    assert table is None or not np.isinf(table.landmarks).any() and (table.frame >= 0).all()


@FUZZ
@given(data=st.binary(max_size=400))
def test_read_landmarks_csv_bytes(tmp_path_factory, data):
    from facetrack.io.results import read_landmarks_csv

    try:
        read_landmarks_csv(_file(tmp_path_factory, "landmarks.csv", data))
    except DataError:
        pass


# ----------------------------------------------------------------------------------------------- --boxes


@FUZZ
@given(doc=st.one_of(json_values, st.dictionaries(st.text(min_size=1, max_size=5),
                                                  st.lists(st.lists(scalars, max_size=5), max_size=4), max_size=3)))
def test_read_boxes(tmp_path_factory, doc):
    from facetrack.io.validation import read_boxes

    boxes = _read(read_boxes, _file(tmp_path_factory, "boxes.json", _dump(doc)))
    for value in boxes.values() if boxes else []:
        for x0, y0, x1, y1 in value:
            assert all(math.isfinite(v) and abs(v) <= 1e6 for v in (x0, y0, x1, y1)) and x1 > x0 and y1 > y0


# ----------------------------------------------------------------------------------------------- model cards


@pytest.fixture
def saved_card(tmp_path_factory, tiny_aohr_config):
    from facetrack.models.hub import save_model
    from facetrack.models.registry import build_model

    folder = tmp_path_factory.mktemp("card")
    save_model(build_model("aohr", **tiny_aohr_config), folder / "m", {"name": "m"})
    return folder / "m.json"


@FUZZ
@given(data=st.data())
def test_model_cards(saved_card, data):
    from facetrack.models.hub import load_model

    card = json.loads(saved_card.read_text())
    doc = data.draw(st.one_of(_mutations(card), json_values))
    path = saved_card.with_name("fuzz.json")
    path.write_text(_dump(doc))
    try:
        load_model(path)
    except ModelError as exc:
        assert "fuzz.json" in str(exc) or "m.safetensors" in str(exc)


# ----------------------------------------------------------------------------------------------- .pts, recipes, images


@FUZZ
@given(text=st.one_of(st.text(max_size=200),
                      st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.floats()), max_size=8).map(
                          lambda pts: "version: 1\nn_points: %d\n{\n%s\n}\n" % (
                              len(pts), "\n".join(f"{x} {y}" for x, y in pts)))))
def test_read_pts(tmp_path_factory, text):
    from facetrack.io.pts import read_pts

    try:
        points = read_pts(_file(tmp_path_factory, "a.pts", text))
    except DataError:
        return
    assert points.ndim == 2 and points.shape[1] == 2


@FUZZ
@given(doc=json_values)
def test_recipes(tmp_path_factory, doc):
    from facetrack.train.config import load_config

    path = _file(tmp_path_factory, "recipe.yaml", json.dumps(doc, allow_nan=False) if _finite(doc) else "{")
    try:
        load_config(path)
    except DataError:
        pass


def _finite(doc) -> bool:
    try:
        json.dumps(doc, allow_nan=False)
        return True
    except ValueError:
        return False


@FUZZ
@given(data=st.binary(max_size=600), kind=st.sampled_from(["jpg", "png"]))
def test_images(tmp_path_factory, data, kind):
    import cv2

    from facetrack.data.sample import read_image
    from facetrack.io.validation import image_problem

    good = cv2.imencode(f".{kind}", np.full((16, 16, 3), 128, np.uint8))[1].tobytes()
    path = _file(tmp_path_factory, f"x.{kind}", good[: len(data) % len(good)] + data[:8])
    problem = image_problem(path)
    if problem is None:
        try:
            image = read_image(path)
        except DataError:
            return
        assert image.dtype == np.uint8 and image.ndim == 3


# ----------------------------------------------------------------------------------------------- resume records


@FUZZ
@given(progress=st.one_of(json_values, _mutations({"last_frame": 3, "parts": [], "rows": 0, "rows_at_npz": 0,
                                                   "frames_read": 4, "frames_with_face": 4, "track_ids": [0]})))
def test_resume_record(tmp_path_factory, progress):
    from facetrack.io.results import landmarks_csv_header
    from facetrack.io.track_output import TrackOutput

    folder = tmp_path_factory.mktemp("out")
    (folder / "summary.json").write_text(_dump({"completed": False, "progress": progress}))
    (folder / "landmarks.csv").write_text(",".join(landmarks_csv_header(2)) + "\n0,0,0,0,0,1,1,,1,1,1,1,,\n")
    try:
        sink = TrackOutput(folder, 2, ("csv",), resume=True)
    except FacetrackError:
        return
    sink.close_files()
    assert sink.resume_from >= 0
