"""TUFA: structure prompts (Eqs. 6.1-6.3), the plane -> face mapping, hub round trip, zero-shot queries, few-shot
entries and the Landmarker contract."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facetrack.models.hub import load_model, save_model
from facetrack.models.registry import build_model
from facetrack.models.tufa import TUFA, plane_shape, structure_prompts

TINY = {"input_size": 32, "patch": 8, "dim": 16, "heads": 2, "depth": 1, "decoder_layers": 1, "mlp_ratio": 1.0}


def tiny(**extra) -> TUFA:
    torch.manual_seed(0)
    model = build_model("tufa", **{**TINY, **extra})
    model.set_mean_shape("300w", np.random.default_rng(0).uniform(-1, 1, (68, 2)))
    return model


def test_prompts_follow_the_equations():
    dim, tau = 16, 10000.0
    x, y = 0.3, -0.7
    e = structure_prompts(torch.tensor([[x, y]], dtype=torch.float64), dim, tau)[0]
    for c in range(dim // 4):
        f = tau ** (-2 * c / (0.5 * dim))
        assert e[2 * c].item() == pytest.approx(math.sin(x * f))
        assert e[2 * c + 1].item() == pytest.approx(math.cos(x * f))
        assert e[dim // 2 + 2 * c].item() == pytest.approx(math.sin(y * f))
    # the digest's caution: as written, prompts of points 0.05 apart are almost identical; a scale separates them
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.05, 0.0]])
    same = torch.cosine_similarity(structure_prompts(a, 128), structure_prompts(b, 128)).item()
    scaled = torch.cosine_similarity(structure_prompts(a, 128, scale=32), structure_prompts(b, 128, scale=32)).item()
    assert same > 0.9999 and scaled < 0.99


def test_forward_any_number_of_points_and_masked_loss():
    model = tiny()
    images = torch.rand(2, 3, 32, 32)
    out = model(images)
    assert out["coords"].shape == (2, 68, 2) and out["error"].shape == (2, 68)
    q = model(images, torch.zeros(7, 2))["coords"]
    assert q.shape == (2, 7, 2)
    # the decoder's self-attention mixes the queries, so asking for the full anchor set must equal predict()
    coords, conf = model.predict(images)
    direct, _ = model.predict_points(images, model.anchors().detach())
    assert torch.allclose(coords, direct, atol=1e-5)
    assert ((conf > 0) & (conf <= 1)).all()
    targets = {"points": torch.zeros(2, 68, 2), "weight": torch.ones(2, 68)}
    masked = {"points": targets["points"].clone(), "weight": targets["weight"].clone()}
    masked["points"][:, 5] = 100.0
    masked["weight"][:, 5] = 0.0
    assert model.loss(out, masked).item() == pytest.approx(model.loss(out, {**targets, "weight": masked["weight"]}).item())


def test_hub_round_trip_keeps_plane_and_embeddings(tmp_path):
    model = tiny(datasets=[["300w", 68], ["mtfl5", 5]])
    with torch.no_grad():
        model.align["mtfl5"].add_(0.1)
    model.set_mean_shape("mtfl5", np.full((5, 2), 0.2))
    save_model(model, tmp_path / "t", {"name": "t"})
    back = load_model(tmp_path / "t.safetensors")
    assert isinstance(back, TUFA) and back.datasets == ["300w", "mtfl5"]
    assert torch.allclose(back.anchors("mtfl5"), model.anchors("mtfl5"))
    images = torch.rand(1, 3, 32, 32)
    assert torch.allclose(back.predict(images)[0], model.eval().predict(images)[0], atol=1e-5)


def test_training_steps_reduce_the_loss_and_reach_the_embeddings():
    model = tiny(datasets=[["300w", 68], ["new", 5]])
    model.set_mean_shape("new", np.random.default_rng(1).uniform(-1, 1, (5, 2)))
    images = torch.rand(4, 3, 32, 32)
    targets = {"points": model.anchors("new").detach().unsqueeze(0).repeat(4, 1, 1) * 0.5,
               "weight": torch.ones(4, 5)}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(model(images, model.anchors("new").unsqueeze(0).expand(4, -1, -1)), targets)
        opt.zero_grad()
        loss.backward()
        assert model.align["new"].grad is not None and model.align["new"].grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_few_shot_entry_and_zero_shot_plane_points():
    model = tiny()
    model.add_dataset("new", 3, np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]]))
    assert model.config["datasets"][-1] == ["new", 3] and model.anchors("new").shape == (3, 2)
    with pytest.raises(ValueError):
        model.add_dataset("new", 3, np.zeros((3, 2)))
    image, matrix = model.mean_face_image(size=100)
    assert image.shape == (100, 100, 3) and image.max() == 255
    anchors = model.anchors().detach().numpy()
    pixels = anchors * matrix[0, 0] + matrix[:, 2]
    assert np.allclose(model.plane_from_mean_face(pixels, size=100), anchors, atol=1e-6)


def test_plane_shape_alignment():
    ref = plane_shape(np.random.default_rng(0).uniform(0, 50, (68, 2)))
    assert np.isclose(np.abs(ref).max(), 1.0)
    affine = np.array([[2.0, 0.3], [-0.1, 1.5]])
    other = ref[[36, 45, 30, 48, 54]] @ affine.T + 7.0
    pairs = [((36,), 0), ((45,), 1), ((30,), 2), ((48,), 3), ((54,), 4)]
    assert np.allclose(plane_shape(other, ref, pairs), ref[[36, 45, 30, 48, 54]], atol=1e-9)


def test_landmarker_runs_tufa(tmp_path):
    from facetrack.landmarker import Landmarker

    model = tiny()
    save_model(model, tmp_path / "t", {"name": "t"})
    landmarker = Landmarker(tmp_path / "t.safetensors", runtime="torch")
    image = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    points, conf = landmarker.predict_boxes(image, np.array([[10.0, 10.0, 60.0, 60.0]]))
    assert points.shape == (1, 68, 2) and conf.shape == (1, 68) and np.isfinite(points).all()


def test_query_points_in_a_full_image(tmp_path):
    from facetrack.landmarker import Landmarker
    from facetrack.models.tufa import query_points

    model = tiny()
    save_model(model, tmp_path / "t", {"name": "t"})
    landmarker = Landmarker(tmp_path / "t.safetensors", runtime="torch", refine=0)
    image = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 10.0, 60.0, 60.0], [5.0, 5.0, 40.0, 40.0]])
    anchors = landmarker.model.anchors().detach().numpy()
    points, conf = query_points(landmarker, image, boxes, anchors[:3])
    assert points.shape == (2, 3, 2) and conf.shape == (2, 3) and np.isfinite(points).all()


def test_cnn_stem_starts_from_a_trained_backbone(tmp_path, tiny_aohr_config):
    from facetrack.train.tufa import load_backbone

    aohr = build_model("aohr", **tiny_aohr_config)
    save_model(aohr, tmp_path / "a", {"name": "a"})
    model = build_model("tufa", **{**TINY, "input_size": 64, "stem": "cnn", "token_pool": 2,
                                   "backbone": aohr.config["backbone"], "backbone_init": str(tmp_path / "a.safetensors")})
    load_backbone(model, model.config["backbone_init"])
    for key, value in aohr.backbone.state_dict().items():
        assert torch.equal(model.stem[0].state_dict()[key], value)
    assert model(torch.rand(1, 3, 64, 64))["coords"].shape == (1, 68, 2)


def test_resolve_points_names_positions_and_errors():
    from facetrack.errors import ModelError
    from facetrack.models.tufa import MEAN_FACE_SIZE, resolve_points

    model = tiny(datasets=[["300w", 68], ["five", 5]])
    model.set_mean_shape("five", np.zeros((5, 2)))
    assert torch.equal(resolve_points(model, "five"), model.anchors("five").detach())
    # positions on the mean-face picture map back to the plane: the picture of the anchors gives the anchors
    _, matrix = model.mean_face_image(size=MEAN_FACE_SIZE)
    pixels = model.anchors().detach().numpy() * matrix[0, 0] + matrix[0, 2]
    assert torch.allclose(resolve_points(model, pixels[:4]), model.anchors()[:4].detach(), atol=1e-5)
    with pytest.raises(ModelError, match="300w, five"):
        resolve_points(model, "wflw")
    with pytest.raises(ModelError, match="shape"):
        resolve_points(model, [1.0, 2.0])
    with pytest.raises(ModelError, match="finite"):
        resolve_points(model, [[1.0, float("nan")]])
    with pytest.raises(ModelError, match="TUFA"):
        resolve_points(build_model("aohr", num_points=68, input_size=64), "five")


def test_detector_asks_a_tufa_model_for_other_points(tmp_path):
    from facetrack.api import Detector

    model = tiny(datasets=[["300w", 68], ["five", 5]])
    model.set_mean_shape("five", model.anchors().detach().numpy()[[36, 45, 30, 48, 54]])
    save_model(model, tmp_path / "t", {"name": "t"})
    image = np.random.default_rng(0).integers(0, 255, (90, 90, 3), dtype=np.uint8)
    boxes = [[10.0, 10.0, 70.0, 70.0]]
    own = Detector(model=tmp_path / "t.safetensors", runtime="torch", validator=None)(image, boxes=boxes)
    five = Detector(model=tmp_path / "t.safetensors", runtime="torch", validator=None, points="five")
    faces = five(image, boxes=boxes)
    assert five.num_points == 5 and faces[0].landmarks.shape == (5, 2) and faces[0].confidences.shape == (5,)
    assert np.allclose(faces[0].box, own[0].box)
    # zero-shot: one position placed on the mean face
    one = Detector(model=tmp_path / "t.safetensors", runtime="torch", validator=None, points=[[128.0, 200.0]])
    assert one(image, boxes=boxes)[0].landmarks.shape == (1, 2)
    assert one(image, boxes=[]) == [] and one(image, boxes=[]).to_numpy()["landmarks"].shape[-2:] == (1, 2)


def test_packaged_tufa68_answers_other_schemes_where_its_own_points_are():
    """The shipped tufa-68, asked on the same crop (noise: no data needed) for two schemes: its mtfl5 nose tip and
    mouth corners land next to its own iBUG-68 points 30, 48 and 54, as their semantic alignment says."""
    from facetrack.api import Detector
    from facetrack.models.hub import load_model

    model = load_model("tufa-68")
    assert model.datasets == ["shared300w", "ideask21", "mtfl5", "ytf68"]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    boxes = [[40.0, 40.0, 160.0, 160.0]]
    own = Detector(model="tufa-68", runtime="torch", validator=None, refine=0)(image, boxes=boxes)[0].landmarks
    five = Detector(model="tufa-68", runtime="torch", validator=None, refine=0, points="mtfl5")(image, boxes=boxes)
    five = five[0].landmarks
    assert five.shape == (5, 2) and np.isfinite(five).all()
    # mtfl5's nose and mouth corners are exact iBUG-68 correspondences: the two schemes agree within a few pixels
    assert np.linalg.norm(five[2:] - own[[30, 48, 54]], axis=1).max() < 8.0
