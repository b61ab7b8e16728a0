"""Head pose from landmarks: a generic 3D face rendered at known angles must be read back at those angles."""
from __future__ import annotations

import numpy as np
import pytest

from facetrack.data.transforms import apply_affine, box_from_landmarks, crop_matrix
from facetrack.pose import (Camera, euler_from_rotation, fit_pose, head_pose, pose_axes, render_face,
                            rotation_from_euler, with_roll)

POSES = [(0.0, 0.0, 0.0), (30.0, -10.0, 5.0), (-60.0, 20.0, -15.0), (10.0, 40.0, 30.0), (-25.0, -35.0, 170.0)]


@pytest.mark.parametrize("pose", POSES)
def test_euler_round_trip(pose):
    assert np.allclose(euler_from_rotation(rotation_from_euler(*pose)), pose, atol=1e-9)


@pytest.mark.parametrize("pose", POSES)
@pytest.mark.parametrize("offset", [(0.0, 0.0), (220.0, -150.0)])
def test_rendered_face_is_read_back(pose, offset):
    camera = Camera.for_image(640, 480)
    points = render_face(np.array(pose), camera, 650.0, offset)
    fit = fit_pose(points, camera)
    assert fit is not None and fit.residual < 1e-3
    assert np.allclose(fit.pose, pose, atol=0.01)


def test_noisy_landmarks_within_two_degrees():
    camera = Camera.for_image(640, 480)
    rng = np.random.default_rng(0)
    errors = []
    for pose in POSES[:4]:
        points = render_face(np.array(pose), camera, 650.0)  # face ~ 110 px wide: 1 px is ~1 % of the IOD
        for _ in range(5):
            errors.append(np.abs(fit_pose(points + rng.normal(0, 1.0, points.shape), camera).pose - pose))
    assert np.mean(errors) < 2.0 and np.max(errors) < 6.0


def test_view_and_camera_frames_differ_off_centre():
    camera = Camera.for_image(640, 480)
    points = render_face(np.zeros(3), camera, 500.0, (250.0, 0.0))  # looking into the lens from the side
    assert np.allclose(fit_pose(points, camera).pose, 0.0, atol=0.01)
    yaw_camera = fit_pose(points, camera, relative="camera").pose[0]
    assert abs(abs(yaw_camera) - np.degrees(np.arctan2(250.0, 500.0))) < 0.5


def test_crop_turn_changes_roll_only():
    camera = Camera.for_image(800, 600)
    points = render_face(np.array([15.0, -5.0, 25.0]), camera, 700.0)
    box = box_from_landmarks(points)
    for turn in (0.0, 25.0, -40.0):
        m = crop_matrix(box, 112, 1.25, turn)
        scale = float(np.linalg.norm(m[:, 0]))
        crop_pose = fit_pose(apply_affine(points, m), Camera(camera.focal * scale, 55.5, 55.5)).pose
        assert np.allclose(with_roll(crop_pose, turn), [15.0, -5.0, 25.0], atol=0.5)


def test_unusable_input():
    with pytest.raises(ValueError, match="68"):
        head_pose(np.zeros((5, 2)), (100, 100))
    points = np.full((68, 2), np.nan)
    assert np.isnan(head_pose(points, (100, 100))).all()
    with pytest.raises(ValueError):
        Camera.for_image(0, 10)


def test_axes_of_a_frontal_face():
    ends = pose_axes(np.zeros(3), np.array([50.0, 60.0]), 10.0)
    assert np.allclose(ends, [[60.0, 60.0], [50.0, 70.0], [50.0, 60.0]])  # x right, y down, nose at the viewer
    turned = pose_axes(np.array([30.0, 0.0, 0.0]), np.zeros(2), 10.0)
    assert turned[2, 0] < -4.0  # yaw > 0: the nose turns toward the image's left


def test_pose_columns_round_trip_and_legacy_files(tmp_path):
    from facetrack.io.results import LandmarksCSVWriter, landmarks_csv_header, read_landmarks_csv

    path = tmp_path / "landmarks.csv"
    with LandmarksCSVWriter(path, 2) as writer:
        writer.write(0, 0.0, 0, [0, 0, 10, 10], 0.9, np.ones((2, 2)), np.ones(2), np.array([12.5, -3.0, 7.25]))
        writer.write(1, 0.04, 0, [0, 0, 10, 10], 0.9, np.ones((2, 2)), np.ones(2), None)
    table = read_landmarks_csv(path)
    assert np.allclose(table.pose[0], [12.5, -3.0, 7.25]) and np.isnan(table.pose[1]).all()
    assert np.allclose(table.conf, 1.0)
    legacy = tmp_path / "old.csv"
    legacy.write_text(",".join(landmarks_csv_header(2, pose=False)) + "\n0,0,0,0,0,10,10,0.9,1,1,1,1,1,1\n")
    old = read_landmarks_csv(legacy)
    assert np.isnan(old.pose).all() and np.allclose(old.landmarks, 1.0)


def test_pose_axes_are_drawn():
    from types import SimpleNamespace

    from facetrack.drawing import draw

    camera = Camera.for_image(200, 200)
    points = render_face(np.array([20.0, 0.0, 0.0]), camera, 600.0)
    image = np.zeros((200, 200, 3), np.uint8)
    face = SimpleNamespace(landmarks=points, box=None, pose=np.array([20.0, 0.0, 0.0]))
    with_axes = draw(image, [face])
    without = draw(image, [face], axes=False)
    assert (with_axes[..., 2] > without[..., 2]).sum() > 20  # the red x axis
