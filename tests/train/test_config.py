"""Training recipes: YAML -> typed sections, dotted overrides, and errors that name the key and the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from facetrack.errors import DataError
from facetrack.models.registry import resolve
from facetrack.train.config import TrainConfig, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[2]

RECIPE = """\
model:
  arch: aohr-lite-128
  config: {gamma: 0.5}
optim:
  lr: 1e-4
  batch_size: 8
trainer:
  max_epochs: 5
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "my_recipe.yaml"
    path.write_text(RECIPE, encoding="utf-8")
    return path


def test_load_fills_defaults_and_types(recipe: Path) -> None:
    config = load_config(recipe)
    assert isinstance(config, TrainConfig)
    assert config.name == "my_recipe" and config.source == str(recipe)
    assert config.model.arch == "aohr-lite-128" and config.model.config == {"gamma": 0.5}
    assert config.optim.lr == 1e-4 and isinstance(config.optim.lr, float)  # "1e-4" is a string in YAML 1.1
    assert config.optim.batch_size == 8 and config.trainer.max_epochs == 5
    assert config.data.val_fraction == 0.1 and config.data.augment.scale_range == (0.9, 1.1)
    assert config.out_dir == Path("runs/my_recipe")


def test_overrides_are_parsed_and_type_checked(recipe: Path) -> None:
    config = load_config(recipe, ["optim.lr=3e-4", "trainer.max_epochs=2", "optim.schedule=cosine",
                                  "data.augment.scale_range=[0.8, 1.2]", "model.config.head_layers=2",
                                  "trainer.out=/tmp/x", "data.val_split=common", "optim.weight_decay=0"])
    assert config.optim.lr == pytest.approx(3e-4)
    assert config.trainer.max_epochs == 2 and config.optim.schedule == "cosine"
    assert config.data.augment.scale_range == (0.8, 1.2)
    assert config.model.config == {"gamma": 0.5, "head_layers": 2}
    assert config.out_dir == Path("/tmp/x") and config.data.val_split == "common"
    assert config.optim.weight_decay == 0.0 and isinstance(config.optim.weight_decay, float)


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=3e-4", ["override 'optim.lrr=3e-4'", "unknown key 'optim.lrr'", "lr, weight_decay"]),
    ("nosection.x=1", ["unknown key 'nosection'"]),
    ("trainer.max_epochs=2.5", ["'trainer.max_epochs' must be int", "2.5"]),
    ("trainer.max_epochs=true", ["'trainer.max_epochs' must be int"]),
    ("optim.lr=fast", ["'optim.lr' must be float"]),
    ("optim.schedule=linear", ["'optim.schedule' must be one of none, cosine, step"]),
    ("data.augment.scale_range=[0.8]", ["'data.augment.scale_range' must be tuple[float, float]"]),
    ("optim.lr.x=1", ["'optim.lr' is a value, not a section"]),
    ("trainer.devices", ["not of the form key.sub=value"]),
    ("=3", ["empty key"]),
])
def test_bad_overrides_name_the_override_and_the_file(recipe: Path, override: str, words: list[str]) -> None:
    with pytest.raises(DataError) as info:
        load_config(recipe, [override])
    message = str(info.value)
    assert message.startswith(str(recipe))
    for word in words:
        assert word in message


def test_unknown_key_in_the_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(RECIPE.replace("  batch_size: 8", "  batchsize: 8"), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_config(path)
    assert info.value.path == path and info.value.line == 6
    assert "unknown key 'optim.batchsize'" in str(info.value)


def test_wrong_type_in_the_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(RECIPE.replace("max_epochs: 5", "max_epochs: many"), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_config(path)
    assert info.value.line == 8 and "'trainer.max_epochs' must be int" in str(info.value)


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "flat.yaml"
    path.write_text("optim: 3\n", encoding="utf-8")
    with pytest.raises(DataError, match="'optim' must be a mapping"):
        load_config(path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="training recipe not found"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  arch: [unclosed\n", encoding="utf-8")
    with pytest.raises(DataError, match="not valid YAML") as info:
        load_config(broken)
    assert info.value.line is not None
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(DataError, match="must be a mapping of sections"):
        load_config(listed)


def test_round_trip_through_a_plain_dict(recipe: Path) -> None:
    import json

    config = load_config(recipe, ["data.augment.blur_sigma=[0.5, 2]"])
    plain = json.loads(json.dumps(config.to_dict()))  # what a model card stores
    assert config_from_dict(plain, config.source) == config


# ATPN's stage-2/3 recipes (a ``stage`` key) train a frozen model's branch: ``python -m facetrack.train.atpn``, whose
# own test loads them (tests/models/test_atpn.py)
HEAD_RECIPES = {"atpn68_tracking.yaml", "atpn68_pose.yaml"}


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name not in HEAD_RECIPES),
                         ids=lambda p: p.name)
def test_shipped_recipes_load_and_name_real_models(path: Path) -> None:
    config = load_config(path)
    arch, full = resolve(config.model.arch, **config.model.config)
    from facetrack.data.catalog import list_datasets
    from facetrack.models.registry import list_models

    assert arch in list_models()
    assert config.data.dataset in list_datasets()
    assert config.out_dir == Path("runs") / path.stem  # outputs never collide between recipes


def test_the_expected_recipes_exist() -> None:
    names = {p.stem for p in (REPO / "configs").glob("*.yaml")}
    assert {"aohr_hg2_300w_256", "hm2d_hg2_300w_256", "aohr_lite_shared300w_128", "hm2d_lite_shared300w_128",
            "aohr_hg2_shared300w_256", "hm2d_hg2_shared300w_256"} <= names


def test_a_runs_saved_recipe_loads_again(tmp_path: Path) -> None:
    import yaml

    recipe = yaml.safe_load((REPO / "configs" / "aohr_lite_shared300w_128.yaml").read_text())
    recipe["source"] = "configs/aohr_lite_shared300w_128.yaml"  # what a run writes into <out>/recipe.yaml
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert load_config(path).model.arch == "aohr-lite-128"


def test_the_augment_section_names_exactly_the_augmenters_options() -> None:
    import dataclasses

    from facetrack.data.transforms import Augmenter
    from facetrack.train.config import AugmentSection

    section = AugmentSection()
    options = {f.name for f in dataclasses.fields(Augmenter)} - {"out_size", "scale"}  # set per recipe elsewhere
    assert set(section.augmenter_kwargs()) == options
    assert section.augmenter_kwargs() == {name: getattr(Augmenter(), name) for name in options}


def test_recipe_kinds_pick_the_config_class_and_the_training_steps() -> None:
    from facetrack.train.run import recipe_class, recipe_kind
    from facetrack.train.temporal import TemporalTrainConfig

    assert recipe_class({"data": {"dataset": "pseudo300w"}}) is TemporalTrainConfig
    assert recipe_class({"data": {"dataset": "300vw"}}) is TemporalTrainConfig
    assert recipe_class({"data": {"dataset": "shared300w"}}) is TrainConfig
    assert recipe_kind(TrainConfig()).name == "frame"
    assert recipe_kind(TemporalTrainConfig()).name == "temporal"


def test_deeply_nested_recipe_is_a_named_error_not_a_recursion_error(tmp_path: Path) -> None:
    from facetrack.errors import read_json

    deep = tmp_path / "deep.yaml"
    deep.write_text("model: " + "[" * 100000 + "]" * 100000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="deep.yaml"):
        load_config(deep)
    nested = tmp_path / "deep.json"
    nested.write_text("[" * 100000 + "]" * 100000, encoding="utf-8")
    with pytest.raises(DataError, match="nested too deeply"):
        read_json(nested, "missing", "cannot read")
