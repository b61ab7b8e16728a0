"""A model card is checked before anything is read or built from it: ``weights`` only a plain file name of a
regular file in the card's folder, sizes bounded, the architecture probed against the file's tensor shapes on
torch's meta device, every field of the right type; every failure a ModelError naming the card."""
from __future__ import annotations

import json
import os
import time

import pytest

from facetrack.errors import ModelError
from facetrack.models.hub import load_model, save_model
from facetrack.models.registry import build_model


@pytest.fixture
def card_path(tmp_path, tiny_aohr_config):
    save_model(build_model("aohr", **tiny_aohr_config), tmp_path / "m", {"name": "m"})
    return tmp_path / "m.json"


def _edit(card_path, **changes):
    card = json.loads(card_path.read_text())
    for key, value in changes.items():
        target, *rest = key.split("__")
        if rest:
            card[target][rest[0]] = value
        else:
            card[key] = value
    card_path.write_text(json.dumps(card))


@pytest.mark.parametrize("name", ["../../../../../../etc/passwd", "/etc/passwd", "/dev/zero", "sub/m.safetensors",
                                  "..", ""])
def test_weights_must_be_a_plain_name_in_the_cards_folder(card_path, name):
    _edit(card_path, weights=name)
    with pytest.raises(ModelError, match="plain file name"):
        load_model(card_path)


def test_weights_linking_out_of_the_folder_or_to_a_device_are_refused(card_path, tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.safetensors")
    _edit(card_path, weights="zero.safetensors")  # with a sha256 this used to hash /dev/zero forever
    started = time.perf_counter()
    with pytest.raises(ModelError, match="leads out|not a regular file"):
        load_model(card_path)
    assert time.perf_counter() - started < 5
    (tmp_path / "folder.safetensors").mkdir()
    _edit(card_path, weights="folder.safetensors")
    with pytest.raises(ModelError, match="not a regular file"):
        load_model(card_path)


@pytest.mark.parametrize("key, value, match", [
    ("config__input_size", 10**7, "input_size"), ("config__head_channels", 10**6, "head_channels"),
    ("config__head_channels", 24, "does not match"), ("input_size", "64", "input_size"),
    ("calibration", "yes", "calibration"), ("calibration", {"offsets_px": [1, 2]}, "offsets_px"),
    ("crop", [1.25], "crop"), ("sha256", 12, "sha256"), ("config__ratio", float("nan"), "ratio"),
])
def test_card_fields_are_checked_before_use(card_path, key, value, match):
    _edit(card_path, **{key: value})
    started = time.perf_counter()
    with pytest.raises(ModelError, match=match) as info:  # was: a 12 TB allocation, AttributeError, ...
        load_model(card_path)
    assert "m.json" in str(info.value) and time.perf_counter() - started < 10


def test_deeply_nested_card_is_a_model_error(card_path):
    card_path.write_text('{"arch": "aohr", "config": {}, "x": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(ModelError, match="nested"):
        load_model(card_path)
