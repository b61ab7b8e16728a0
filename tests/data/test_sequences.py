from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrack.codecs.heatmap1d import Heatmap1DCodec
from facetrack.data.sample import FaceSample
from facetrack.data.sequences import (
    ClipDataset,
    FeatureClipDataset,
    PseudoVideoSource,
    RawClip,
    TrackerCropPolicy,
    VideoClipSource,
    build_feature_cache,
    read_cache_meta,
)
from facetrack.data.synthetic import PseudoVideoConfig
from facetrack.data.transforms import CropSmoothing, apply_affine, box_from_landmarks, crop_matrix, invert_affine
from facetrack.errors import DataError

F = 48


def still(tmp_path, rng, name="face") -> FaceSample:
    """A textured 96x96 still with 68 points in its middle."""
    import cv2

    image = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (5, 5), 1.5)
    path = tmp_path / f"{name}.png"
    cv2.imwrite(str(path), image)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    radius = 20 + 6 * rng.random(68)
    points = np.stack([48 + radius * np.cos(angles), 48 + radius * np.sin(angles)], 1)
    return FaceSample(image_path=path, landmarks=points, scheme="ibug68", subject=name)


def small_video(**overrides) -> PseudoVideoConfig:
    settings = dict(size=(80, 80), noise_sd=0.0, motion_blur=0.0, occluder_rate_hz=2.0)
    settings.update(overrides)
    return PseudoVideoConfig(**settings)


@pytest.fixture
def codec() -> Heatmap1DCodec:
    return Heatmap1DCodec(F, ratio=2.0, sigma=1.5)


def dataset(tmp_path, rng, codec, policy=None, seed=3, frames=5) -> ClipDataset:
    source = PseudoVideoSource([still(tmp_path, rng, "a"), still(tmp_path, rng, "b")], num_frames=frames,
                               video=small_video())
    return ClipDataset(source, codec.encode, F, policy, seed=seed)


def test_item_layout(tmp_path, rng, codec):
    ds = dataset(tmp_path, rng, codec)
    item = ds[0]
    t, n, length = 5, 68, codec.length
    assert item["crops"].shape == (t, 3, F, F) and item["crops"].dtype == torch.float32
    assert 0.0 <= float(item["crops"].min()) and float(item["crops"].max()) <= 1.0
    assert item["targets"]["hx"].shape == (t, n, length) and item["targets"]["weight"].shape == (t, n)
    assert item["matrix"].shape == (t, 2, 3) and item["landmarks"].shape == (t, n, 2)
    assert item["occluded"].shape == (t, n) and item["occluded"].dtype == torch.bool
    assert item["visible"].shape == (t, n)


def test_crop_t_comes_from_landmarks_of_t_minus_1(tmp_path, rng, codec):
    exact = TrackerCropPolicy(crop_scale=1.3, init_shift=0.0, init_scale=(1.0, 1.0), offset_sd=0.0, scale_sd=0.0,
                              point_sd=0.0, smoothing_centre=1.0, smoothing_size=1.0)
    item = dataset(tmp_path, rng, codec, exact)[1]
    gt, mats = item["landmarks"].numpy(), item["matrix"].numpy()
    np.testing.assert_allclose(mats[0], crop_matrix(box_from_landmarks(gt[0]), F, 1.3))
    for t in range(1, len(gt)):
        np.testing.assert_allclose(mats[t], crop_matrix(box_from_landmarks(gt[t - 1]), F, 1.3))
        # ... and not from frame t's own landmarks: the face moves between frames.
    assert not np.allclose(mats[2], crop_matrix(box_from_landmarks(gt[2]), F, 1.3))


def test_training_crops_follow_the_trackers_crop_smoothing(rng):
    policy = TrackerCropPolicy(crop_scale=1.3, init_shift=0.0, init_scale=(1.0, 1.0), offset_sd=0.0, scale_sd=0.0,
                               point_sd=0.0, smoothing_centre=0.5, smoothing_size=0.3)
    gt = 60 + 20 * rng.random((1, 68, 2)) + np.arange(6)[:, None, None] * np.array([1.5, -0.5])
    mats = policy.matrices(gt, F, np.random.default_rng(0))
    first = box_from_landmarks(gt[0])
    centre, half = first.reshape(2, 2).mean(0), np.ptp(gt[0], axis=0).max() / 2
    crop_box = np.concatenate([centre - half, centre + half])  # frame 0's crop as a box crop_matrix would cut
    np.testing.assert_allclose(mats[0], crop_matrix(crop_box, F, 1.3))
    for t in range(1, len(gt)):
        crop_box = CropSmoothing(policy.smoothing_centre, policy.smoothing_size).next_box(crop_box,
                                                                                       box_from_landmarks(gt[t - 1]))
        np.testing.assert_allclose(mats[t], crop_matrix(crop_box, F, 1.3))


def test_tracker_error_is_an_ar1_offset_of_the_given_size(rng):
    gt = np.repeat((50 + 20 * rng.random((1, 68, 2))), 400, axis=0)  # a still face
    size = float(np.ptp(gt[0], axis=0).max())

    def offsets(rho: float) -> np.ndarray:
        policy = TrackerCropPolicy(offset_sd=0.05, scale_sd=0.0, point_sd=0.0, error_correlation=rho)
        mats = policy.matrices(gt, F, np.random.default_rng(1))
        centres = np.stack([apply_affine(np.array([(F - 1) / 2] * 2), invert_affine(m)) for m in mats[1:]])
        return (centres - box_from_landmarks(gt[0]).reshape(2, 2).mean(0))[:, 0] / size

    smooth, white = offsets(0.8), offsets(0.0)
    assert np.std(smooth) == pytest.approx(0.05, rel=0.3)
    assert np.corrcoef(smooth[:-1], smooth[1:])[0, 1] > 0.6
    assert abs(np.corrcoef(white[:-1], white[1:])[0, 1]) < 0.2


def test_deterministic_given_seed_and_index(tmp_path, rng, codec):
    a = dataset(tmp_path, rng, codec, seed=5)
    b = dataset(tmp_path, np.random.default_rng(0), codec, seed=5)
    b.source = a.source
    x, y = a[1], b[1]
    assert torch.equal(x["crops"], y["crops"]) and torch.equal(x["matrix"], y["matrix"])
    assert not torch.equal(a[0]["landmarks"], a[2]["landmarks"])  # same still, another clip


def test_targets_decode_back_to_ground_truth(tmp_path, rng, codec):
    item = dataset(tmp_path, rng, codec)[0]
    coords, _ = codec.decode(item["targets"]["hx"], item["targets"]["hy"])
    weight = item["targets"]["weight"].numpy() > 0
    for t in range(len(coords)):
        back = apply_affine(coords[t].double().numpy(), invert_affine(item["matrix"][t].numpy()))
        err = np.linalg.norm(back - item["landmarks"][t].numpy(), axis=1)[weight[t]]
        assert weight[t].sum() > 50 and err.max() < 0.05


def test_video_clip_source_takes_consecutive_frames():
    class Seq:
        video_id = "001"

        def __init__(self, n):
            self.frame_numbers = np.arange(1, n + 1)
            self.landmarks = np.stack([np.full((68, 2), 10.0 + i) for i in range(n)])

        def __len__(self):
            return len(self.frame_numbers)

        def read_frame(self, number):
            return np.full((40, 40, 3), number, np.uint8)

    source = VideoClipSource([Seq(3), Seq(10)], num_frames=4)
    clip = source.clip(0, seed=1)
    assert len(clip.images) == 4 and clip.occluded is None
    first = int(clip.images[0][0, 0, 0])
    assert [int(im[0, 0, 0]) for im in clip.images] == list(range(first, first + 4))
    np.testing.assert_allclose(clip.landmarks[:, 0, 0], 9.0 + np.arange(first, first + 4))


class TinyEncoder(torch.nn.Module):
    """Stands in for AOHR.encode_1d: per-landmark 1D features from a pooled image."""

    num_points, length = 68, 2 * F

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 68 * self.length)

    def encode_1d(self, images):
        v = self.proj(images.mean(dim=(2, 3))).reshape(len(images), 68, self.length)
        return v, -v


def test_feature_cache_round_trip(tmp_path, rng, codec):
    ds = dataset(tmp_path, rng, codec)
    encoder = TinyEncoder()
    folder = build_feature_cache(ds, encoder, tmp_path / "cache", batch_frames=2, meta={"encoder": "tiny"})
    meta = read_cache_meta(folder)
    assert meta["clips"] == 2 and meta["num_frames"] == 5 and meta["encoder"] == "tiny"
    assert not list(folder.glob("*.pkl"))
    cached = FeatureClipDataset(folder, codec.encode)
    item, fresh = cached[1], ds[1]
    with torch.no_grad():
        sx, sy = encoder.encode_1d(fresh["crops"])
    torch.testing.assert_close(item["sx"], sx, atol=2e-3, rtol=2e-3)  # float16 storage
    torch.testing.assert_close(item["sy"], sy, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(item["targets"]["hx"], fresh["targets"]["hx"], atol=1e-5, rtol=0)
    assert torch.equal(item["landmarks"], fresh["landmarks"])
    assert torch.equal(item["occluded"], fresh["occluded"])
    short = FeatureClipDataset(folder, codec.encode, window=3)
    assert short[0]["sx"].shape == (3, 68, codec.length)
    import pickle

    assert pickle.loads(pickle.dumps(cached))[0]["sx"].shape == (5, 68, codec.length)  # DataLoader workers


def test_unfinished_cache_is_refused(tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="no finished feature cache"):
        FeatureClipDataset(tmp_path / "c", lambda p, v: {})


def test_raw_clip_visibility():
    gt = np.array([[[5.0, 5.0], [50.0, 5.0]]])
    clip = RawClip([np.zeros((20, 20, 3), np.uint8)], gt, None)
    assert clip.visible.tolist() == [[True, False]]


def test_pseudo_clips_on_shared_300w(shared_data, codec):
    from facetrack.data.sequences import fit_training_shape_model
    from facetrack.evaluation import load_shared300w

    train = load_shared300w(shared_data / "300w", "train")[:40]
    model = fit_training_shape_model(train, num_modes=8)
    source = PseudoVideoSource(train, num_frames=4, shape_model=model)
    item = ClipDataset(source, codec.encode, F, seed=0)[0]
    assert item["crops"].shape == (4, 3, F, F) and float(item["crops"].std()) > 0.02
