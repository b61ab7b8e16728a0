from __future__ import annotations

import cv2
import numpy as np
import pytest

from facetrack.data.transforms import (Augmenter, CropSmoothing, apply_affine, box_from_landmarks, crop_for_inference, crop_matrix,
                                       invert_affine, warp)
from facetrack.io.pts import read_pts
from facetrack.schemes import get_scheme

IBUG68 = get_scheme("ibug68")
NO_COLOUR = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, blur_prob=0.0)


def blob_image(dots: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Float32 image with a Gaussian blob at each sub-pixel dot (pixel centres at integer coordinates)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    image = np.zeros(shape, dtype=np.float32)
    for x, y in dots:
        image += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)).astype(np.float32)
    return image


def centroids(image: np.ndarray, near: np.ndarray, radius: int) -> np.ndarray:
    """Intensity centroid of the (2 radius + 1)^2 window around the nearest pixel of each point."""
    out = []
    for x, y in near:
        cx, cy = int(round(x)), int(round(y))
        patch = image[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1].astype(np.float64)
        assert patch.shape == (2 * radius + 1, 2 * radius + 1), "dot too close to the crop border for the test"
        py, px = np.mgrid[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1]
        out.append([(patch * px).sum() / patch.sum(), (patch * py).sum() / patch.sum()])
    return np.array(out)


def face_like_points(rng: np.random.Generator) -> np.ndarray:
    """68 points in a 100x120 region, with the eye corners where a frontal face has them."""
    points = rng.uniform([150, 100], [250, 220], size=(68, 2))
    points[36], points[45] = [170, 140], [230, 140]  # subject's right outer eye corner is on the image left
    return points


def test_box_from_landmarks_ignores_missing_points_and_batches():
    points = np.array([[3.0, 4.0], [np.nan, 100.0], [10.0, -2.0], [5.0, 7.5]])
    np.testing.assert_array_equal(box_from_landmarks(points), [3.0, -2.0, 10.0, 7.5])
    batch = np.stack([points, points + 1])
    np.testing.assert_array_equal(box_from_landmarks(batch)[1], [4.0, -1.0, 11.0, 8.5])
    with pytest.raises(ValueError):
        box_from_landmarks(np.full((3, 2), np.nan))
    with pytest.raises(ValueError):
        box_from_landmarks(np.zeros((3, 3)))


def test_crop_smoothing_averages_small_moves_and_follows_large_ones():
    old = np.array([100.0, 100.0, 200.0, 200.0])
    small = old + np.array([2.0, 0.0, 2.0, 4.0])  # moved 2.8% of the side (weight 0.5), grew 4% (weight 0.4)
    box = CropSmoothing(centre=0.5, size=0.3, follow=0.1).next_box(old, small)
    np.testing.assert_allclose(0.5 * (box[:2] + box[2:]), [151.0, 151.0])  # halfway to the new centre (152, 152)
    np.testing.assert_allclose(box[2:] - box[:2], 0.4 * (small[2:] - small[:2]) + 0.6 * 100.0)
    large = old + 30.0  # moved 42% of the side in one frame: followed at once
    np.testing.assert_allclose(CropSmoothing().next_box(old, large), large)
    np.testing.assert_allclose(CropSmoothing(1.0, 1.0).next_box(old, small), small)  # the raw policy
    np.testing.assert_allclose(CropSmoothing().next_box(np.full(4, np.nan), small), small)  # no previous crop
    for bad in ({"centre": 0.0}, {"size": 1.5}, {"follow": 0.0}):
        with pytest.raises(ValueError, match="crop smoothing"):
            CropSmoothing(**bad)


def test_crop_matrix_geometry():
    box = [10.0, 20.0, 110.0, 140.0]  # 100 x 120, centre (60, 80)
    m = crop_matrix(box, 256, scale=1.25)
    side = 1.25 * 120
    np.testing.assert_allclose(apply_affine([60.0, 80.0], m), [127.5, 127.5])
    # The crop's continuous extent [-0.5, 255.5] is exactly the square of side `side` around the centre.
    np.testing.assert_allclose(apply_affine([60 - side / 2, 80 + side / 2], m), [-0.5, 255.5])
    # Rotation follows cv2.getRotationMatrix2D: same linear part, and the centre stays put.
    r = crop_matrix(box, 256, 1.25, rotation_deg=30.0)
    np.testing.assert_allclose(r[:, :2], cv2.getRotationMatrix2D((60.0, 80.0), 30.0, 256 / side)[:, :2])
    np.testing.assert_allclose(apply_affine([60.0, 80.0], r), [127.5, 127.5])
    up = apply_affine([60.0 + 10, 80.0], crop_matrix(box, 256, 1.25, rotation_deg=90.0))
    np.testing.assert_allclose(up, [127.5, 127.5 - 10 * 256 / side], atol=1e-9)  # right -> up on screen
    # Flip mirrors about the crop centre.
    p = np.array([[30.0, 50.0], [95.0, 130.0]])
    f = apply_affine(p, crop_matrix(box, 256, 1.25, flip=True))
    np.testing.assert_allclose(f, np.c_[255 - apply_affine(p, m)[:, 0], apply_affine(p, m)[:, 1]])
    # Shift moves the crop centre by a fraction of the side.
    s = crop_matrix(box, 256, 1.25, shift=(0.1, -0.2))
    np.testing.assert_allclose(apply_affine([60 + 0.1 * side, 80 - 0.2 * side], s), [127.5, 127.5])
    with pytest.raises(ValueError):
        crop_matrix([5, 5, 5, 5], 256)


def test_invert_affine_round_trip(rng):
    for _ in range(20):
        box = np.sort(rng.uniform(0, 2000, size=(2, 2)), axis=0).T.reshape(-1)[[0, 2, 1, 3]]
        m = crop_matrix(box, int(rng.integers(64, 512)), rng.uniform(1, 2), rng.uniform(-180, 180),
                        rng.uniform(-0.2, 0.2, 2), bool(rng.integers(2)))
        points = rng.uniform(-100, 2100, size=(50, 2))
        back = apply_affine(apply_affine(points, m), invert_affine(m))
        assert np.abs(back - points).max() < 0.01
    with pytest.raises(ValueError):
        invert_affine(np.zeros((2, 3)))
    assert np.isnan(apply_affine(np.array([[np.nan, 1.0]]), m)).all()


@pytest.mark.parametrize("half_side,rotation,flip", [(60, 0.0, False), (250, 25.0, True), (500, -40.0, False)])
def test_warp_puts_image_content_where_apply_affine_says(half_side, rotation, flip):
    # Sub-pixel dots, warped; their intensity centroids in the crop must be where apply_affine maps them.
    # half_side 250 and 500 shrink the image 2.5x and 5x, exercising the anti-aliased (INTER_AREA) path.
    centre = np.array([700.0, 650.0])
    dots = centre + np.array([[-0.37, 0.21], [0.45, -0.33], [-0.2, -0.45], [0.3, 0.4]]) * half_side
    sigma = 2.5 * half_side / 100  # about 2.5 crop pixels whatever the zoom
    image = blob_image(dots, (1400, 1400), sigma)
    box = np.r_[centre - half_side / 1.3, centre + half_side / 1.3]
    m = crop_matrix(box, 256, 1.3, rotation, (0.02, -0.03), flip)
    expected = apply_affine(dots, m)
    crop = warp(image, m, 256)
    assert crop.shape == (256, 256) and crop.dtype == np.float32
    assert np.abs(centroids(crop, expected, 10) - expected).max() < 0.01
    # Same with a uint8 BGR frame, as read from a file (quantisation costs a little).
    bgr = cv2.merge([np.clip(image * 255, 0, 255).astype(np.uint8)] * 3)
    crop8 = warp(bgr, m, 256)
    assert crop8.shape == (256, 256, 3) and crop8.dtype == np.uint8
    assert np.abs(centroids(crop8[:, :, 1], expected, 10) - expected).max() < 0.03
    # Predictions in the crop map back onto the dots in the original image.
    assert np.abs(apply_affine(centroids(crop, expected, 10), invert_affine(m)) - dots).max() < 0.01 * half_side / 60


def test_warp_of_a_crop_outside_the_image_is_black():
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop = warp(image, crop_matrix([5000, 5000, 6000, 6000], 64), 64)
    assert crop.shape == (64, 64, 3) and not crop.any()


def test_crop_for_inference_is_the_centred_training_crop(rng):
    image = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    crop, m = crop_for_inference(image, [100, 50, 200, 180], out_size=128, scale=1.4)
    np.testing.assert_array_equal(m, crop_matrix([100, 50, 200, 180], 128, 1.4))
    np.testing.assert_array_equal(crop, warp(image, m, 128))
    plain = Augmenter(out_size=128, scale=1.4, scale_range=(1.0, 1.0), rotation=0.0, shift=0.0, flip_prob=0.0,
                      occlusion_prob=0.0, **NO_COLOUR)
    points = rng.uniform([100, 50], [200, 180], size=(68, 2))
    result = plain(image, points, np.array([100, 50, 200, 180]), IBUG68, rng)
    np.testing.assert_array_equal(result.crop, crop)
    np.testing.assert_allclose(result.points, apply_affine(points, m))
    assert not result.occluded.any()


def test_augmenter_is_deterministic_given_the_generator(rng):
    image = rng.integers(0, 256, size=(320, 400, 3), dtype=np.uint8)
    points = face_like_points(rng)
    aug = Augmenter(out_size=96, occlusion_prob=0.5, blur_prob=0.5)
    a = aug(image, points, None, IBUG68, np.random.default_rng(7))
    b = aug(image, points, None, IBUG68, np.random.default_rng(7))
    c = aug(image, points, None, IBUG68, np.random.default_rng(8))
    np.testing.assert_array_equal(a.crop, b.crop)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.occluded, b.occluded)
    assert not np.array_equal(a.crop, c.crop)
    assert a.crop.shape == (96, 96, 3) and a.crop.dtype == np.uint8


def test_augmenter_flip_reorders_points_with_the_scheme():
    image = np.zeros((320, 400, 3), dtype=np.uint8)
    points = face_like_points(np.random.default_rng(3))
    points[17] = np.nan  # a missing point stays missing, in its mirrored slot
    aug = Augmenter(out_size=128, flip_prob=1.0, rotation=0.0, occlusion_prob=0.0, **NO_COLOUR)
    result = aug(image, points, None, IBUG68, np.random.default_rng(0))
    np.testing.assert_array_equal(result.order, IBUG68.flip_perm)
    np.testing.assert_allclose(result.points, apply_affine(points, result.matrix)[list(IBUG68.flip_perm)])
    # Slot 36 is still the subject's right outer eye corner, on the image left of slot 45.
    assert result.points[36, 0] < result.points[45, 0]
    assert np.isnan(result.points[IBUG68.flip_perm.index(17)]).all()
    with pytest.raises(ValueError):
        aug(image, points[:60], None, IBUG68, np.random.default_rng(0))


def test_augmenter_mirror_offset_keeps_the_annotation_convention_in_flipped_crops():
    """Labels = truth + o: a flipped crop must ask for truth (mirrored) + the same crop-space offset as an
    unflipped one, M(truth + o) - M(truth), whatever the random rotation and scale."""
    image = np.zeros((320, 400, 3), dtype=np.uint8)
    truth = face_like_points(np.random.default_rng(4))
    offset = np.array([0.7, 0.4])
    aug = Augmenter(out_size=128, flip_prob=1.0, occlusion_prob=0.0, mirror_offset=tuple(offset), **NO_COLOUR)
    result = aug(image, truth + offset, None, IBUG68, np.random.default_rng(5))
    flipped = result.matrix
    unflipped = flipped.copy()
    unflipped[0] = -flipped[0]
    unflipped[0, 2] += 128 - 1
    crop_offset = apply_affine(truth + offset, unflipped) - apply_affine(truth, unflipped)
    expected = apply_affine(truth, flipped)[list(IBUG68.flip_perm)] + crop_offset
    np.testing.assert_allclose(result.points, expected, atol=1e-9)
    plain = Augmenter(out_size=128, flip_prob=1.0, occlusion_prob=0.0, **NO_COLOUR)(
        image, truth + offset, None, IBUG68, np.random.default_rng(5))
    assert np.abs(plain.points - expected)[:, 0].min() > 0.5  # without it the offset is mirrored


def test_augmenter_geometry_stays_within_its_ranges(rng):
    image = rng.integers(0, 256, size=(320, 400, 3), dtype=np.uint8)
    points = face_like_points(rng)
    box = box_from_landmarks(points)
    aug = Augmenter(out_size=128, scale=1.25, scale_range=(0.8, 1.2), rotation=20.0, shift=0.1, flip_prob=0.0,
                    occlusion_prob=0.0, **NO_COLOUR)
    for seed in range(20):
        m = aug(image, points, box, IBUG68, np.random.default_rng(seed)).matrix
        zoom = np.sqrt(abs(np.linalg.det(m[:, :2])))
        side = 128 / zoom
        assert 1.25 * 0.8 * 120 - 1e-6 <= side <= 1.25 * 1.2 * 120 + 1e-6
        assert abs(np.degrees(np.arctan2(m[0, 1], m[0, 0]))) <= 20.0 + 1e-9
        centre_in_image = apply_affine([63.5, 63.5], invert_affine(m))
        assert np.all(np.abs(centre_in_image - (box[:2] + box[2:]) / 2) <= 0.1 * side + 1e-6)


def test_augmenter_occluders_cover_part_of_the_face_and_mark_landmarks(rng):
    image = rng.integers(60, 200, size=(320, 400, 3), dtype=np.uint8)
    points = rng.uniform([150, 100], [250, 220], size=(68, 2))
    base = Augmenter(out_size=128, occlusion_prob=0.0, **NO_COLOUR)
    occ = Augmenter(out_size=128, occlusion_prob=1.0, occlusion_max_area=0.3, **NO_COLOUR)
    face_area = (1.0 / 1.25) ** 2  # the face box's share of a crop at scale 1, at most 1/0.9^2 more
    hits = 0
    for seed in range(12):
        clean = base(image, points, None, IBUG68, np.random.default_rng(seed))
        occluded = occ(image, points, None, IBUG68, np.random.default_rng(seed))
        np.testing.assert_array_equal(clean.matrix, occluded.matrix)
        changed = (clean.crop != occluded.crop).any(axis=-1)
        assert 0 < changed.mean() <= 0.3 * face_area / 0.81 + 0.02
        inside = (occluded.points >= 0).all(axis=1) & (occluded.points <= 127).all(axis=1)
        rows, cols = np.round(occluded.points[inside]).astype(int).T[::-1]
        at_points = changed[rows, cols]
        # Every landmark on a changed pixel is marked, and (but for same-colour fills) only those.
        assert occluded.occluded[inside][at_points].all()
        assert (occluded.occluded[inside] & ~at_points).sum() <= 1
        hits += int(occluded.occluded.any())
    assert hits >= 4


def test_colour_jitter_and_blur():
    gray = np.tile(np.linspace(40, 220, 160, dtype=np.uint8)[None, :, None], (160, 1, 3))
    points = np.array([[40.0, 40.0], [120.0, 120.0]])
    scheme = type("TwoPoints", (), {"flip_perm": (1, 0)})()
    geometry = dict(out_size=160, scale=1.0, scale_range=(1.0, 1.0), rotation=0.0, shift=0.0, flip_prob=0.0,
                    occlusion_prob=0.0)
    box = np.array([0.0, 0.0, 159.0, 159.0])
    plain = Augmenter(**geometry, **NO_COLOUR)(gray, points, box, scheme, np.random.default_rng(0))
    jitter = Augmenter(**geometry, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2, blur_prob=0.0)
    changed = 0
    for seed in range(5):
        out = jitter(gray, points, box, scheme, np.random.default_rng(seed))
        np.testing.assert_array_equal(out.points, plain.points)  # colour never moves landmarks
        assert np.abs(out.crop.astype(int) - out.crop[:, :, :1]).max() <= 1  # gray stays gray
        changed += int(np.abs(out.crop.astype(int) - plain.crop).mean() > 2)
    assert changed >= 4
    colour = np.zeros((160, 160, 3), dtype=np.uint8)
    colour[:, :, 2] = 200  # red
    hue_only = Augmenter(**geometry, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.25, blur_prob=0.0)
    out = hue_only(colour, points, box, scheme, np.random.default_rng(1))
    assert np.abs(out.crop.astype(int) - colour).max() > 20  # the hue moved
    checker = (((np.indices((160, 160)) // 4).sum(axis=0) % 2) * 255).astype(np.uint8)[:, :, None].repeat(3, axis=2)
    blur = Augmenter(**geometry, **{**NO_COLOUR, "blur_prob": 1.0}, blur_sigma=(2.0, 2.0))
    sharp = Augmenter(**geometry, **NO_COLOUR)(checker, points, box, scheme, np.random.default_rng(0)).crop
    blurred = blur(checker, points, box, scheme, np.random.default_rng(0)).crop
    edges = [np.abs(np.diff(c.astype(int), axis=1)).mean() for c in (sharp, blurred)]
    assert edges[1] < 0.5 * edges[0]


def test_augmenter_rejects_bad_configuration():
    with pytest.raises(ValueError):
        Augmenter(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError):
        Augmenter(flip_prob=1.5)
    with pytest.raises(ValueError):
        Augmenter(brightness=1.0)
    with pytest.raises(ValueError):
        Augmenter(blur_sigma=(0.0, 1.0))


def test_crop_of_a_real_300w_face(shared_data):
    image_path = sorted((shared_data / "300w" / "afw").glob("*.jpg"))[0]
    points = read_pts(image_path.with_suffix(".pts"))
    image = cv2.imread(str(image_path))
    crop, m = crop_for_inference(image, box_from_landmarks(points), 256, 1.25)
    crop_points = apply_affine(points, m)
    assert crop.shape == (256, 256, 3)
    assert crop_points.min() > 0 and crop_points.max() < 255  # a 1.25 crop of the landmark box holds them all
    lo, hi = crop_points.min(axis=0), crop_points.max(axis=0)
    np.testing.assert_allclose((lo + hi) / 2, 127.5, atol=1e-6)
    assert max(hi - lo) == pytest.approx(256 / 1.25, rel=1e-6)
    result = Augmenter()(image, points, None, IBUG68, np.random.default_rng(0))
    assert np.abs(apply_affine(result.points[np.argsort(result.order)], invert_affine(result.matrix))
                  - points).max() < 0.01


def _turned(points: np.ndarray, degrees: float) -> np.ndarray:
    """Points turned about their centroid counter-clockwise on screen (cv2.getRotationMatrix2D's sense)."""
    centre = points.mean(axis=0)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), degrees, 1.0)
    return apply_affine(points, matrix)


@pytest.mark.parametrize("turn", [0.0, 30.0, -75.0, 90.0, 180.0])
def test_roll_aware_crop_of_a_turned_face_is_the_upright_crop(turn):
    from facetrack.data.transforms import FIVE_POINT_TEMPLATE, face_roll, roll_from_points5, upright_box

    upright = face_like_points(np.random.default_rng(1))
    upright[[36, 39, 42, 45]] = [[170, 140], [190, 141], [210, 141], [230, 140]]
    points = _turned(upright, turn)
    roll = face_roll(points, IBUG68)
    assert abs(((roll - face_roll(upright, IBUG68) + turn + 180) % 360) - 180) < 1e-6  # the turn, undone
    assert abs(roll_from_points5(_turned(FIVE_POINT_TEMPLATE, turn)) + turn) < 1e-6
    crop = apply_affine(points, crop_matrix(upright_box(points, roll), 96, 1.25, roll))
    reference = apply_affine(upright, crop_matrix(upright_box(upright, face_roll(upright, IBUG68)), 96, 1.25,
                                                   face_roll(upright, IBUG68)))
    np.testing.assert_allclose(crop, reference, atol=1e-6)


def test_next_roll_averages_small_turns_and_follows_large_ones():
    smoothing = CropSmoothing()
    assert smoothing.next_roll(10.0, 12.0) == pytest.approx(11.0)  # noise: half way
    assert smoothing.next_roll(10.0, 40.0) == pytest.approx(40.0)  # a real turn: at once
    assert smoothing.next_roll(179.0, -179.0) == pytest.approx(-180.0)  # through the wrap-around, not back
    with pytest.raises(ValueError):
        CropSmoothing(roll_follow=0.0)


def test_upright_augmenter_turns_about_the_face_own_roll():
    from facetrack.data.transforms import face_roll

    points = _turned(face_like_points(np.random.default_rng(2)), 70.0)
    image = np.zeros((400, 400, 3), np.uint8)
    plain = Augmenter(out_size=64, rotation=0.0, scale_range=(1.0, 1.0), shift=0.0, flip_prob=0.0,
                      occlusion_prob=0.0, **NO_COLOUR)
    upright = Augmenter(out_size=64, rotation=0.0, scale_range=(1.0, 1.0), shift=0.0, flip_prob=0.0,
                        occlusion_prob=0.0, upright=True, **NO_COLOUR)
    rng = np.random.default_rng(0)
    assert abs(face_roll(plain(image, points, None, IBUG68, rng).points, IBUG68)) > 45
    assert abs(face_roll(upright(image, points, None, IBUG68, rng).points, IBUG68)) < 1e-6


def test_points5_residual_tells_a_face_from_misnamed_points():
    from facetrack.data.transforms import FIVE_POINT_TEMPLATE, points5_residual

    face = _turned(FIVE_POINT_TEMPLATE * 2.0, 40.0)
    assert points5_residual(face) < 1e-9  # any similarity of the template
    swapped = face[[0, 1, 3, 2, 4]]  # nose and a mouth corner named the wrong way round
    assert points5_residual(swapped) > 0.22
    assert points5_residual(np.full((5, 2), 3.0)) == float("inf")


def test_five_points_are_the_means_of_their_index_sets_with_missing_points_ignored():
    from facetrack.data.transforms import five_points
    from facetrack.schemes import get_scheme

    scheme = get_scheme("ibug68")
    points = np.random.default_rng(3).normal(size=(4, 68, 2)) * 40 + 100
    expected = np.stack([points[..., list(g), :].mean(axis=-2) for g in scheme.five], axis=-2)
    np.testing.assert_allclose(five_points(points, scheme), expected, rtol=0, atol=1e-12)  # a batch
    np.testing.assert_allclose(five_points(points[1], scheme), expected[1], rtol=0, atol=1e-12)  # one face
    gappy = points[0].copy()
    gappy[36] = np.nan  # one point of the right eye missing: that eye is the mean of the other five
    got = five_points(gappy, scheme)
    np.testing.assert_allclose(got[0], points[0, 37:42].mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(got[1:], expected[0, 1:], atol=1e-12)
