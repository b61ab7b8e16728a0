from __future__ import annotations

import numpy as np
import pytest

from facetrack.data.multiface import SCENARIOS, make_multiface_clip


def _still(rng: np.random.Generator, shade: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((160, 160, 3), shade, np.uint8)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([80 + 35 * np.cos(t), 80 + 45 * np.sin(t)], axis=1) + rng.normal(0, 1, (68, 2))
    return image, points


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_plans_exact_truth_for_every_face(scenario, rng):
    faces = [_still(rng, shade) for shade in (60, 140, 220)]
    clip = make_multiface_clip(faces, scenario, seed=3, num_frames=12, size=(320, 180))
    assert len(clip) == 12 and clip.num_faces == (3 if scenario == "three" else 2)
    assert clip.landmarks.shape == (12, clip.num_faces, 68, 2) and clip.visible.shape == (12, clip.num_faces, 68)
    frame = clip.render(5)
    assert frame.shape == (180, 320, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, clip.render(5))  # the same pixels every time
    again = make_multiface_clip(faces, scenario, seed=3, num_frames=12, size=(320, 180))
    np.testing.assert_array_equal(again.landmarks, clip.landmarks)


def test_a_face_in_front_hides_the_landmarks_behind_it(rng):
    faces = [_still(rng, 60), _still(rng, 220)]
    clip = make_multiface_clip(faces, "passing_front", seed=0, num_frames=31, size=(320, 180))
    middle = 15  # the near face is over the far one half way through
    assert clip.visible[middle, 0].mean() < 0.5 and clip.visible[middle, 1].all()
    # the rendered pixels agree: a covered landmark of the back face shows the front face's shade
    x, y = np.round(clip.landmarks[middle, 0][~clip.visible[middle, 0]][0]).astype(int)
    assert abs(int(clip.render(middle)[y, x, 0]) - 220) < 40
    with pytest.raises(ValueError, match="needs 3 faces"):
        make_multiface_clip(faces, "three")
