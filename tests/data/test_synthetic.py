from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.data.shape_model import ShapeModel
from facetrack.data.synthetic import (
    PseudoVideo,
    PseudoVideoConfig,
    astronaut_still,
    demo_clip,
    make_pseudo_video,
    write_clip,
)
from facetrack.io.pts import read_pts

# ----------------------------------------------------------------------------------------------- fixtures


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, angles: np.ndarray) -> np.ndarray:
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def template_face(centre=(200.0, 200.0), unit: float = 1.0) -> np.ndarray:
    """An iBUG-68-like layout whose points are at least ~10 px apart (unit=1), so each dot can be found alone."""
    pieces = [
        _ellipse_points(0, -10, 100, 120, np.linspace(np.pi + 0.2, -0.2, 17)),  # contour 0-16
        np.stack([np.linspace(-78, -22, 5), -62 - 6 * np.sin(np.linspace(0, np.pi, 5))], 1),  # brow 17-21
        np.stack([np.linspace(22, 78, 5), -62 - 6 * np.sin(np.linspace(0, np.pi, 5))], 1),  # brow 22-26
        np.stack([np.zeros(4), np.linspace(-42, 3, 4)], 1),  # nose bridge 27-30
        np.stack([np.linspace(-28, 28, 5), np.full(5, 18.0)], 1),  # nostrils 31-35
        _ellipse_points(-45, -32, 22, 11, np.pi + np.arange(6) * np.pi / 3),  # eye 36-41
        _ellipse_points(45, -32, 22, 11, np.pi + np.arange(6) * np.pi / 3),  # eye 42-47
        _ellipse_points(0, 58, 46, 25, np.pi + np.arange(12) * np.pi / 6),  # outer lips 48-59
        _ellipse_points(0, 58, 27, 12, np.pi + np.arange(8) * np.pi / 4),  # inner lips 60-67
    ]
    return np.asarray(centre) + unit * np.concatenate(pieces, axis=0)


def synthetic_shape_model(rng: np.random.Generator) -> ShapeModel:
    """A model fitted on the template deformed by smooth fields: mouth opening, brow raise, smile, jaw width."""
    base = template_face((0.0, 0.0))
    x, y = base[:, 0], base[:, 1]

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-v))

    fields = np.zeros((4, 68, 2))
    fields[0, :, 1] = 7 * np.exp(-(x / 60) ** 2) * sigmoid((y - 58) / 6)  # mouth opens: lower lip, chin down
    fields[1, :, 1] = -5 * sigmoid((-45 - y) / 6)  # brows up
    smile = np.exp(-((y - 58) / 20) ** 2)
    fields[2, :, 0], fields[2, :, 1] = 5 * np.tanh(x / 30) * smile, -4 * (x / 46) ** 2 * smile
    fields[3, :, 0] = 6 * (x / 100) * sigmoid(y / 20)  # jaw width
    coeffs = rng.standard_normal((200, 4))
    shapes = base + np.einsum("mk,knd->mnd", coeffs, fields) + rng.normal(0, 0.2, (200, 68, 2))
    return ShapeModel.fit(shapes, num_modes=4, meta={"source": "synthetic template"})


def dot_image(points: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Black BGR image with a small Gaussian dot at each (sub-pixel) point."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = np.zeros((size, size))
    for x, y in points:
        r = int(np.ceil(4 * sigma))
        x0, x1, y0, y1 = int(x) - r, int(x) + r + 2, int(y) - r, int(y) + r + 2
        patch = np.exp(-((xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2) / (2 * sigma**2))
        image[y0:y1, x0:x1] = np.maximum(image[y0:y1, x0:x1], patch)
    return cv2.cvtColor(np.round(255 * image).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def dot_centroids(image: np.ndarray, guesses: np.ndarray, radius: float = 4.5) -> np.ndarray:
    """Centroid of the upper half of each dot near its guess.

    A continuous warp moves a dot's peak exactly to the image of its centre, but stretches its flanks
    unevenly where the expression warp changes across the dot; weighting the cap near the peak keeps the
    measurement about the mapping of the centre, not about the dot's changed shape.
    """
    gray = image[:, :, 1].astype(np.float64)
    r = int(np.ceil(radius))
    out = []
    for gx, gy in guesses:
        x0, y0 = int(round(gx)) - r, int(round(gy)) - r
        window = gray[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]
        yy, xx = np.mgrid[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]
        near = (xx - gx) ** 2 + (yy - gy) ** 2 <= radius**2
        w = np.clip(window - 0.5 * np.max(window * near), 0, None) * near
        out.append([np.sum(w * xx) / np.sum(w), np.sum(w * yy) / np.sum(w)])
    return np.asarray(out)


@pytest.fixture(scope="module")
def model() -> ShapeModel:
    return synthetic_shape_model(np.random.default_rng(5))


def _moving(**overrides: object) -> PseudoVideoConfig:
    """Motion and expression on, everything that hides the dots off."""
    base = dict(num_frames=30, size=(320, 320), face_fraction=0.7, rotation_deg=15.0, log_scale=0.12,
                translation=0.08, motion_frequency_hz=(0.3, 1.0), expression_sd=1.0, expression_period_s=(0.3, 0.5),
                occluder_rate_hz=0.0, motion_blur=0.0, gain=0.0, gamma=0.0, colour_cast=0.0, noise_sd=0.0,
                border="constant")
    base.update(overrides)
    return PseudoVideoConfig(**base)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("unit,blur", [(1.0, 0.0), (1.0, 0.5), (2.5, 0.0)],
                         ids=["plain", "motion-blur", "shrunk-still"])
def test_rendered_dots_land_on_the_ground_truth(model: ShapeModel, unit: float, blur: float) -> None:
    """Pixels and landmarks go through the same mapping: dots drawn at the landmarks end up at the GT."""
    size = int(400 * unit)
    points = template_face((size / 2, size / 2), unit)
    still = dot_image(points, size, sigma=1.3 * unit)
    video = make_pseudo_video(still, points, _moving(motion_blur=blur), seed=11, shape_model=model)
    assert video.expression_scale > 0.5
    # the expression really deforms the face (beyond the similarity part of the motion)
    still_to_frame = np.einsum("tij,nj->tni", video.rigid[:, :, :2], points) + video.rigid[:, None, :, 2]
    assert np.max(np.linalg.norm(video.landmarks - still_to_frame, axis=2)) > 4.0
    worst = 0.0
    for frame in video:
        gt = frame.landmarks
        spacing = np.linalg.norm(gt[:, None] - gt[None], axis=2) + 1e3 * np.eye(68)
        assert spacing.min() > 9.0  # the fixture keeps dots apart, so each centroid is one dot's
        found = dot_centroids(frame.image, gt)
        worst = max(worst, float(np.max(np.linalg.norm(found - gt, axis=1))))
    assert worst < 0.5, worst


def test_same_seed_same_clip_any_order(model: ShapeModel) -> None:
    still = dot_image(template_face(), 400, 1.3)
    config = PseudoVideoConfig(num_frames=12, size=(128, 96), occluder_rate_hz=3.0)
    a = make_pseudo_video(still, template_face(), config, seed=3, shape_model=model)
    b = make_pseudo_video(still, template_face(), config, seed=3, shape_model=model)
    c = make_pseudo_video(still, template_face(), config, seed=4, shape_model=model)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.occluded, b.occluded)
    assert not np.allclose(a.landmarks, c.landmarks)
    streamed = [f.image for f in a]
    assert len(streamed) == 12 and streamed[0].shape == (96, 128, 3) and streamed[0].dtype == np.uint8
    for i in (7, 2, 11):
        np.testing.assert_array_equal(b.frame(i).image, streamed[i])
        np.testing.assert_array_equal(b.frame(i).landmarks, a.landmarks[i])
    assert not np.array_equal(c.frame(7).image, streamed[7])


def test_turning_effects_off_leaves_the_motion_alone(model: ShapeModel) -> None:
    points = template_face()
    still = dot_image(points, 400, 1.3)
    full = make_pseudo_video(still, points, PseudoVideoConfig(num_frames=20), seed=9, shape_model=model)
    quiet = make_pseudo_video(still, points, PseudoVideoConfig(num_frames=20, occluder_rate_hz=0.0, noise_sd=0.0,
                                                               gain=0.0), seed=9, shape_model=model)
    np.testing.assert_array_equal(full.landmarks, quiet.landmarks)
    assert not quiet.occluded.any()


def test_rigid_motion_is_smooth_and_bounded(rng: np.random.Generator) -> None:
    points = template_face()
    still = dot_image(points, 400, 1.3)
    for seed in range(5):
        cfg = PseudoVideoConfig(num_frames=150, size=(320, 240), translation=0.3, keep_inside=False)
        video = make_pseudo_video(still, points, cfg, seed=seed)
        linear = video.rigid[:, :, :2]
        angle = np.rad2deg(np.arctan2(linear[:, 1, 0], linear[:, 0, 0]))
        log_scale = np.log(np.hypot(linear[:, 0, 0], linear[:, 1, 0]))
        centre = np.mean(video.landmarks, axis=1)
        step = (2 * np.pi * cfg.motion_frequency_hz[1] / cfg.fps) ** 2
        assert np.ptp(angle) <= 2 * cfg.rotation_deg + 1e-9
        assert np.max(np.abs(np.diff(angle, 2))) <= cfg.rotation_deg * step + 1e-9
        assert np.max(np.abs(np.diff(log_scale, 2))) <= cfg.log_scale * step + 1e-9
        # the face centre: translation term plus (small) effects of rotation and scale about the centre
        assert np.max(np.abs(np.diff(centre[:, 0], 2))) <= (cfg.translation * 320 + 5) * step
        assert np.max(np.abs(np.diff(centre, axis=0))) < 20  # no jumps
        assert np.ptp(centre[:, 0]) > 10  # and it does move


def test_keep_inside_keeps_the_landmarks_in_the_frame() -> None:
    points = template_face()
    still = dot_image(points, 400, 1.3)
    for seed in range(6):
        cfg = PseudoVideoConfig(num_frames=90, size=(256, 192), translation=0.4, face_fraction=0.5,
                                occluder_rate_hz=0.0)
        video = make_pseudo_video(still, points, cfg, seed=seed)
        margin = cfg.inside_margin * 192
        assert video.landmarks[..., 0].min() >= margin - 1e-6
        assert video.landmarks[..., 0].max() <= 255 - margin + 1e-6
        assert video.landmarks[..., 1].min() >= margin - 1e-6
        assert video.landmarks[..., 1].max() <= 191 - margin + 1e-6
        assert video.visible.all()


def test_occlusion_mask_matches_the_pixels() -> None:
    """On a black still, a landmark is flagged occluded exactly where an occluder covers its pixel."""
    points = template_face()
    still = np.zeros((400, 400, 3), np.uint8)
    cfg = PseudoVideoConfig(num_frames=60, size=(200, 200), occluder_rate_hz=1.5, motion_blur=0.0, gain=0.0,
                            gamma=0.0, colour_cast=0.0, noise_sd=0.0, occluder_kinds=("rectangle", "ellipse", "hand"))
    video = make_pseudo_video(still, points, cfg, seed=2)
    assert video.occluded.any() and not video.occluded.all()
    assert (~video.occluded.any(axis=1)).any()  # occluders come and go
    for frame in video:
        value = frame.image.astype(float).sum(axis=2)
        h, w = value.shape
        for (x, y), occ in zip(np.round(frame.landmarks).astype(int), frame.occluded):
            if not (0 <= x < w and 0 <= y < h):
                continue
            full = value[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].max()  # a fully covered pixel nearby
            if occ:  # covered at least half
                assert value[y, x] > 0 and value[y, x] >= 0.4 * full
            else:  # uncovered, or on an occluder's anti-aliased edge
                assert value[y, x] == 0 or value[y, x] <= 0.6 * full


def test_illumination_and_noise_vary_over_time() -> None:
    points = template_face()
    still = np.full((400, 400, 3), 128, np.uint8)
    lit = make_pseudo_video(still, points, PseudoVideoConfig.static(num_frames=60, gain=0.3), seed=1)
    means = np.array([f.image.mean() for f in lit])
    assert np.ptp(means) > 10  # the gain changes the brightness
    assert np.max(np.abs(np.diff(means))) < 5  # smoothly
    noisy = make_pseudo_video(still, points, PseudoVideoConfig.static(num_frames=3, noise_sd=4.0), seed=1)
    a, b = noisy.frame(0).image.astype(float), noisy.frame(1).image.astype(float)
    assert np.std(a - 128) == pytest.approx(4.0, rel=0.15)
    assert abs(np.corrcoef((a - 128).ravel(), (b - 128).ravel())[0, 1]) < 0.05


def test_static_config_is_a_still_copy() -> None:
    points = template_face()
    still = dot_image(points, 400, 1.3)
    video = make_pseudo_video(still, points, PseudoVideoConfig.static(num_frames=4, size=(200, 200)), seed=0)
    np.testing.assert_allclose(video.landmarks, np.broadcast_to(video.landmarks[0], video.landmarks.shape))
    np.testing.assert_array_equal(video.frame(0).image, video.frame(3).image)


@pytest.mark.parametrize("border,flag", [("reflect", cv2.BORDER_REFLECT_101), ("replicate", cv2.BORDER_REPLICATE)])
def test_frames_past_the_still_use_the_configured_border(border: str, flag: int) -> None:
    """The still is padded once when planned; frames equal a direct warp with OpenCV's border mode."""
    rng = np.random.default_rng(0)
    still = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 2)
    points = template_face((80.0, 60.0), 0.2)
    cfg = PseudoVideoConfig(num_frames=6, size=(200, 150), face_fraction=0.3, occluder_rate_hz=0.0,
                            motion_blur=0.0, gain=0.0, gamma=0.0, colour_cast=0.0, noise_sd=0.0, border=border)
    video = make_pseudo_video(still, points, cfg, seed=1)
    back = cv2.invertAffineTransform(video.rigid[0])
    seen = np.array([[0, 0], [199, 149]]) @ back[:, :2].T + back[:, 2]
    assert seen[0, 0] < -5 and seen[1, 0] > 165  # the frame shows well past the still's edges
    for i in (0, 5):
        direct = cv2.warpAffine(still, video.rigid[i], (200, 150), flags=cv2.INTER_LINEAR, borderMode=flag)
        diff = np.abs(video.frame(i).image.astype(int) - direct)
        assert diff.max() <= 1  # the same sampling up to rounding


def test_write_clip_reads_back_as_300vw(tmp_path: Path, model: ShapeModel) -> None:
    from facetrack.data.w300vw import load_300vw

    points = template_face()
    still = dot_image(points, 400, 1.3)
    video = make_pseudo_video(still, points, PseudoVideoConfig(num_frames=8, size=(160, 120)), seed=5,
                              shape_model=model)
    folder = write_clip(video, tmp_path / "001", mp4=True)
    assert sorted(p.name for p in (folder / "imgs").iterdir())[:2] == ["000001.jpg", "000002.jpg"]
    np.testing.assert_allclose(read_pts(folder / "annot" / "000008.pts"), video.landmarks[7], atol=1e-3)
    meta = json.loads((folder / "pseudo_video.json").read_text())
    assert meta["seed"] == 5 and meta["num_frames"] == 8 and len(meta["occluded"]) == 8
    (sequence,) = load_300vw(tmp_path, ["001"])
    np.testing.assert_allclose(sequence.landmarks, video.landmarks, atol=1e-3)
    assert list(sequence.frame_numbers) == list(range(1, 9))
    image = cv2.imread(str(folder / "imgs" / "000003.jpg"))
    assert image.shape == (120, 160, 3)
    assert np.mean(np.abs(image.astype(float) - video.frame(2).image)) < 3  # JPEG of the same frame
    cap = cv2.VideoCapture(str(folder / "vid.mp4"))
    count = 0
    while cap.grab():
        count += 1
    cap.release()
    assert count == 8


def test_bad_inputs_are_refused(model: ShapeModel) -> None:
    still = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="landmarks"):
        make_pseudo_video(still, np.zeros((68, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        make_pseudo_video(still, np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match="shape model has 68 points"):
        make_pseudo_video(still, template_face()[:20] / 4, shape_model=model)
    with pytest.raises(ValueError, match="occluder_kinds"):
        PseudoVideoConfig(occluder_kinds=("cat",))
    with pytest.raises(ValueError, match="rotation_deg"):
        PseudoVideoConfig(rotation_deg=-1)
    with pytest.raises(ValueError, match="motion_frequency_hz"):
        PseudoVideoConfig(motion_frequency_hz=(1.0, 0.5))
    with pytest.raises(IndexError):
        make_pseudo_video(still, template_face() / 4, PseudoVideoConfig(num_frames=3)).frame(3)


def test_astronaut_demo_clip() -> None:
    pytest.importorskip("skimage")
    from skimage import data

    still = astronaut_still()
    assert still.shape == (512, 512, 3) and still.dtype == np.uint8
    np.testing.assert_array_equal(still[..., 2], data.astronaut()[..., 0])  # BGR
    # any landmarks will do as the demo's ground truth, e.g. a model's prediction on the still
    guess = template_face((215.0, 130.0), 0.4)
    video = demo_clip(guess, PseudoVideoConfig(num_frames=5, size=(160, 160)), seed=0)
    assert isinstance(video, PseudoVideo) and len(video) == 5
    assert video.frame(4).image.shape == (160, 160, 3)


def test_real_300w_face_with_a_300w_shape_model(shared_data: Path) -> None:
    from facetrack.data.sample import read_image

    files = sorted((shared_data / "300w" / "helen").rglob("*.pts"))
    if len(files) < 120:
        pytest.skip("too few 300W faces")
    model = ShapeModel.fit(np.stack([read_pts(f) for f in files[:100]]))  # training identities only
    for f in files[110:113]:
        points = read_pts(f)
        still = read_image(f.with_suffix(".jpg"))
        video = make_pseudo_video(still, points, PseudoVideoConfig(num_frames=45, size=(256, 256)), seed=0,
                                  shape_model=model)
        assert video.expression_scale > 0
        assert np.isfinite(video.landmarks).all()
        moved = video.landmarks - video.landmarks[:, :, :].mean(axis=1, keepdims=True)
        assert np.ptp(moved, axis=0).max() > 1.0  # the face deforms, not only moves
        for i in (0, 22, 44):
            frame = video.frame(i)
            assert frame.image.shape == (256, 256, 3)
            assert frame.image.std() > 10


def test_expression_variant_moves_the_face_with_exact_labels(rng: np.random.Generator) -> None:
    from facetrack.data.synthetic import expression_variant

    model = synthetic_shape_model(rng)
    points = template_face((200.0, 200.0))
    image = dot_image(points, 400, 1.5)
    warped, moved = expression_variant(image, points, model, seed=3, expression_sd=2.0, expression_modes=4)
    assert warped.shape == image.shape and moved.shape == points.shape
    assert np.abs(moved - points).max() > 1.0  # a new expression
    assert (moved > 0).all() and (moved < 400).all()  # the face stays in the picture
    np.testing.assert_allclose(dot_centroids(warped, moved), moved, atol=0.35)  # labels follow the pixels
    again, moved_again = expression_variant(image, points, model, seed=3, expression_sd=2.0, expression_modes=4)
    np.testing.assert_array_equal(moved, moved_again)
    np.testing.assert_array_equal(warped, again)
