"""Model registry: names, presets with overrides, rebuilding from (arch, config), and its errors."""
from __future__ import annotations

import json

import pytest
import torch

from facetrack.errors import ModelError
from facetrack.models import build_model, list_models, register_model, register_preset
from facetrack.models.backbones import build_backbone
from facetrack.models.registry import resolve

TINY = {"num_points": 5, "input_size": 32, "head_channels": 16, "attn_dim": 4, "head_layers": 1,
        "backbone": {"name": "hourglass", "stacks": 1, "depth": 2, "width": 16}}


def test_known_names():
    names = list_models()
    for name in ("aohr", "heatmap2d", "aohr-hg2-256", "aohr-lite-128", "hm2d-hg2-256"):
        assert name in names
    assert names == sorted(names)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'aohr-huge'.*aohr-lite-128.*heatmap2d"):
        build_model("aohr-huge")


def test_preset_overrides_merge_nested_options():
    arch, config = resolve("aohr-hg2-256", backbone={"width": 32}, gamma=0.0)
    assert arch == "aohr" and config["gamma"] == 0.0
    assert config["backbone"] == {"name": "hourglass", "stacks": 2, "depth": 4, "width": 32}
    _, swapped = resolve("aohr-hg2-256", backbone={"name": "lite"})
    assert swapped["backbone"] == {"name": "lite"}  # another backbone replaces the spec entirely
    _, again = resolve("aohr-hg2-256")
    assert again["backbone"]["width"] == 256  # presets are not mutated by overrides


def test_config_rebuilds_the_same_architecture():
    model = build_model("aohr", **TINY)
    assert model.arch == "aohr"
    config = json.loads(json.dumps(model.config))  # JSON-serialisable, as model cards need
    rebuilt = build_model(model.arch, **config)
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    lite = build_model("aohr-lite-128", num_points=7)
    assert lite.arch == "aohr" and lite.num_points == 7 and build_model(lite.arch, **lite.config).config == lite.config


def test_bad_options_raise_model_errors():
    with pytest.raises(ModelError, match="cannot build 'aohr'.*widht"):
        build_model("aohr", **TINY, widht=3)
    with pytest.raises(ModelError, match="multiple of attn_dim"):
        build_model("aohr", **{**TINY, "attn_dim": 5})
    with pytest.raises(ModelError, match="unknown backbone 'resnet'"):
        build_model("aohr", **{**TINY, "backbone": {"name": "resnet"}})
    with pytest.raises(ModelError, match="no option"):
        build_model("aohr", **{**TINY, "backbone": {"name": "hourglass", "colour": 1}})
    with pytest.raises(ModelError, match="input_size 40"):
        build_model("aohr", **{**TINY, "input_size": 40})  # 40/4 = 10 is not divisible by 2**2


def test_names_cannot_be_registered_twice():
    with pytest.raises(ModelError, match="registered twice"):
        register_model("aohr")(lambda **config: None)
    with pytest.raises(ModelError, match="registered twice"):
        register_preset("aohr-lite-128", "aohr", {})


def test_backbones_output_the_declared_stride_and_channels():
    for spec, size in (({"name": "hourglass", "stacks": 2, "depth": 2, "width": 16}, 32),
                       ({"name": "lite", "channels": [8, 8, 16, 16], "blocks": [1, 1, 1], "out_channels": 24}, 64),
                       ({"name": "lite", "stride": 4, "out_channels": 24}, 64)):
        backbone, full = build_backbone(spec, size)
        out = backbone(torch.rand(1, 3, size, size))
        assert out.shape == (1, backbone.out_channels, size // backbone.stride, size // backbone.stride)
        assert full["name"] == spec["name"] and set(spec) <= set(full)
