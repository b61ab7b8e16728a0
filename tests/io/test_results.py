from __future__ import annotations

import json

import numpy as np
import pytest

from facetrack.errors import DataError
from facetrack.io.results import (
    FacePrediction,
    ImagePrediction,
    LandmarksCSVWriter,
    Prediction,
    landmarks_csv_header,
    read_landmarks_csv,
    read_predictions,
    write_predictions,
    write_summary_json,
)


def sample_prediction(rng, n: int = 68) -> Prediction:
    faces = [
        FacePrediction([10.0, 20.0, 110.0, 140.0], rng.uniform(10, 100, (n, 2)), 0.97, rng.uniform(0, 1, n)),
        FacePrediction([200.0, 20.0, 260.0, 90.0], rng.uniform(200, 250, (n, 2)), None, None),
    ]
    return Prediction("aohr_hg2_300w_256", "ibug68", [
        ImagePrediction("a/one.jpg", 640, 480, faces),
        ImagePrediction("b/two.png", 320, 240, []),
    ])


def test_round_trip(tmp_path, rng):
    pred = sample_prediction(rng)
    path = write_predictions(tmp_path / "pred.json", pred)
    back = read_predictions(path)
    assert back.model == pred.model and back.scheme == "ibug68"
    assert [i.path for i in back.images] == ["a/one.jpg", "b/two.png"]
    f0, f1 = back.images[0].faces
    np.testing.assert_allclose(f0.landmarks, pred.images[0].faces[0].landmarks)  # exact float repr
    np.testing.assert_allclose(f0.landmark_scores, pred.images[0].faces[0].landmark_scores)
    assert f0.score == pytest.approx(0.97) and f1.score is None and f1.landmark_scores is None
    doc = json.loads(path.read_text())
    assert set(doc) == {"model", "scheme", "images"}
    assert set(doc["images"][0]["faces"][0]) == {"bbox", "score", "landmarks", "landmark_scores"}
    assert back.by_path()["b/two.png"].faces == []
    assert [p.name for p in tmp_path.iterdir()] == ["pred.json"]  # atomic write leaves no temp file


def _write(tmp_path, doc) -> str:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


def _valid_doc(rng):
    return json.loads(json.dumps({
        "model": "m", "scheme": "ibug68",
        "images": [{"path": f"img{i}.jpg", "width": 100, "height": 100, "faces": [
            {"bbox": [0, 0, 50, 50], "score": 0.9, "landmarks": [[1.0, 2.0]] * 68, "landmark_scores": [1.0] * 68}
        ]} for i in range(4)],
    }))


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["images"][3]["faces"][0].update(landmarks=[[1.0, 2.0]] * 67),
     "images[3].faces[0].landmarks: expected 68 points, got 67"),
    (lambda d: d["images"][1]["faces"][0]["landmarks"].__setitem__(5, [1.0]),
     "images[1].faces[0].landmarks[5]: expected [x, y]"),
    (lambda d: d["images"][0]["faces"][0].update(bbox=[0, 0, 50]), "images[0].faces[0].bbox: expected [x0, y0, x1, y1]"),
    (lambda d: d["images"][0]["faces"][0].update(bbox=[60, 0, 50, 50]), "images[0].faces[0].bbox: x1 < x0"),
    (lambda d: d["images"][2].update(width=0), "images[2].width: expected a positive integer"),
    (lambda d: d["images"][2].pop("faces"), "images[2]: missing key(s) 'faces'"),
    (lambda d: d["images"][2].update(path="img0.jpg"), "images[2].path: 'img0.jpg' repeats images[0]"),
    (lambda d: d["images"][0]["faces"][0].update(score="high"), "images[0].faces[0].score: expected a finite number"),
    (lambda d: d["images"][0]["faces"][0].update(landmark_scores=[1.0] * 3),
     "images[0].faces[0].landmark_scores: expected 68 values"),
    (lambda d: d.update(scheme="ibug99"), "scheme: unknown landmark scheme"),
    (lambda d: d.pop("model"), "top level: missing key(s) 'model'"),
])
def test_validation_names_file_and_json_path(tmp_path, rng, mutate, message):
    doc = _valid_doc(rng)
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(DataError) as info:
        read_predictions(path)
    assert str(info.value).startswith(path)
    assert message in str(info.value)


def test_invalid_json_and_missing_file(tmp_path):
    path = _write(tmp_path, '{"model": "m",\n "scheme": }')
    with pytest.raises(DataError, match=r"bad.json:2: invalid JSON"):
        read_predictions(path)
    with pytest.raises(DataError, match="not found"):
        read_predictions(tmp_path / "none.json")


def test_write_refuses_non_finite(tmp_path, rng):
    pred = sample_prediction(rng)
    pred.images[0].faces[0].landmarks[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"images\[0\].faces\[0\]"):
        write_predictions(tmp_path / "p.json", pred)
    assert not (tmp_path / "p.json").exists()


def test_landmarks_csv_round_trip_and_resume(tmp_path, rng):
    path = tmp_path / "out" / "landmarks.csv"
    pts = rng.uniform(0, 300, (3, 5, 2))
    with LandmarksCSVWriter(path, 5) as w:
        w.write(0, 0.0, 1, [1, 2, 3, 4], 0.9, pts[0], np.linspace(0, 1, 5))
        w.write(0, 0.0, 2, [5, 6, 7, 8], None, pts[1])
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == landmarks_csv_header(5)
    assert lines[0].startswith("frame,time_s,track_id,box_x0,box_y0,box_x1,box_y1,score,x_0,y_0,x_1")
    assert lines[0].endswith("x_4,y_4,conf_0,conf_1,conf_2,conf_3,conf_4,yaw,pitch,roll")
    # a run killed mid-row leaves a partial line; resuming cuts it and continues
    with path.open("a") as fh:
        fh.write("1,0.04,1,1.0,2.0")
    w = LandmarksCSVWriter(path, 5, append=True)
    assert w.last_frame == 0
    w.write(1, 0.04, 1, [1, 2, 3, 4], 0.8, pts[2], np.ones(5))
    w.close()
    table = read_landmarks_csv(path, num_points=5)
    assert len(table) == 3
    assert table.frame.tolist() == [0, 0, 1] and table.track_id.tolist() == [1, 2, 1]
    np.testing.assert_allclose(table.landmarks, pts, atol=5e-4)
    assert np.isnan(table.scores[1]) and np.all(np.isnan(table.conf[1]))
    frames, track = table.track(1)
    assert frames.tolist() == [0, 1] and track.shape == (2, 5, 2)
    assert table.index()[(0, 2)] == 1


def test_landmarks_csv_errors(tmp_path, rng):
    path = tmp_path / "landmarks.csv"
    with LandmarksCSVWriter(path, 3) as w:
        w.write(0, 0.0, 1, [1, 2, 3, 4], 0.9, np.zeros((3, 2)))
        w.write(0, 0.0, 1, [1, 2, 3, 4], 0.9, np.zeros((3, 2)))
        with pytest.raises(ValueError, match="expected 3 landmarks"):
            w.write(1, 0.0, 1, [1, 2, 3, 4], 0.9, np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"landmarks.csv:3: frame 0 track 1 repeats line 2"):
        read_landmarks_csv(path)
    with pytest.raises(DataError, match="expected 5 points"):
        read_landmarks_csv(path, num_points=5)
    with pytest.raises(DataError, match="cannot append"):
        LandmarksCSVWriter(path, 4, append=True)
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], text[1].replace("0.9000", "x")]) + "\n")
    with pytest.raises(DataError, match=r"landmarks.csv:2: not a number"):
        read_landmarks_csv(path)


def test_summary_json_is_valid_json_with_nan_as_null(tmp_path):
    path = write_summary_json(tmp_path / "summary.json", {"frames_read": np.int64(3), "fps": float("nan"),
                                                         "timings_ms": {"total": np.float32(1.5)}})
    doc = json.loads(path.read_text())
    assert doc == {"frames_read": 3, "fps": None, "timings_ms": {"total": 1.5}}


def test_summary_names_a_path_source_in_full(tmp_path):
    from pathlib import Path

    from facetrack.io.track_output import source_label

    folder = tmp_path / "clips" / "imgs"
    assert source_label(folder) == str(folder) and source_label(str(folder)) == str(folder)
    assert source_label(Path("video.mp4")) == "video.mp4" and source_label(0) == "0"
