"""Readers of result files end in the project's own error naming the file, whatever they are given."""
from __future__ import annotations

import pytest

from facetrack.errors import DataError
from facetrack.io.results import landmarks_csv_header, read_landmarks_csv, read_predictions


def test_csv_field_over_the_csv_modules_limit(tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text(",".join(landmarks_csv_header(1)) + "\n" + "x" * 200_000 + ",0,0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(DataError, match="landmarks.csv:2: malformed CSV"):  # was: _csv.Error
        read_landmarks_csv(path)


@pytest.mark.parametrize("row, match", [("1e999", "infinite"), ("99999999999999999999999", "out of range")])
def test_csv_values_out_of_range(tmp_path, row, match):
    path = tmp_path / "landmarks.csv"
    cells = ["0", "0", "0", "0", "0", "1", "1", "0.5", "1", "1", "0.5"]
    cells[0 if "9999" in row else 8] = row
    path.write_text(",".join(landmarks_csv_header(1, pose=False)) + "\n" + ",".join(cells) + "\n")
    with pytest.raises(DataError, match=match):
        read_landmarks_csv(path)


def test_deeply_nested_prediction_file(tmp_path):
    path = tmp_path / "pred.json"
    path.write_text('{"model": "m", "scheme": "ibug68", "images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DataError, match="pred.json: .*nested"):  # was: RecursionError
        read_predictions(path)
