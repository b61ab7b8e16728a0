"""Training recipes: a YAML file -> typed dataclasses, with dotted command-line overrides.

A recipe is the whole record of how a model was trained (it goes into every checkpoint's card), so every
key is checked: a misspelt key or a wrong type is an error naming the key and the file (and line), never a
silently ignored setting.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from facetrack.data.transforms import Augmenter
from facetrack.errors import DataError, read_text

Schedule = Literal["none", "cosine", "step"]
Resume = Literal["never", "auto"]


@dataclass
class ModelSection:
    """Which network to train: ``build_model(arch, **config)`` (the registry checks ``config``)."""

    arch: str = "aohr_lite"
    config: dict[str, Any] = field(default_factory=dict)
    init_weights: str = ""         # start from these weights (fine-tuning); the card must match arch and config


# The defaults live in one place, the Augmenter; a recipe section only names them.
_AUGMENTER = Augmenter()


@dataclass
class AugmentSection:
    """Training-time augmentation: the fields of ``facetrack.data.transforms.Augmenter`` (validation always
    uses the centred crop). The random crop geometry (scale range, rotation, shift) is the box jitter."""

    enabled: bool = True
    scale_range: tuple[float, float] = _AUGMENTER.scale_range  # crop scale multiplied by U(low, high)
    rotation: float = _AUGMENTER.rotation                      # degrees, U(-r, r)
    shift: float = _AUGMENTER.shift                            # box centre moved by U(-s, s) x crop side
    flip_prob: float = _AUGMENTER.flip_prob                    # points re-ordered by the flip permutation
    brightness: float = _AUGMENTER.brightness
    contrast: float = _AUGMENTER.contrast
    saturation: float = _AUGMENTER.saturation
    hue: float = _AUGMENTER.hue
    blur_prob: float = _AUGMENTER.blur_prob
    blur_sigma: tuple[float, float] = _AUGMENTER.blur_sigma
    occlusion_prob: float = _AUGMENTER.occlusion_prob
    occlusion_max_area: float = _AUGMENTER.occlusion_max_area
    mirror_offset: tuple[float, float] = _AUGMENTER.mirror_offset  # annotations vs mirror symmetry, image px
    upright: bool = _AUGMENTER.upright   # rotation about the face's own roll (roll-aware crops, transforms.face_roll)
    expression_prob: float = 0.0   # warp the still to a random expression first (facetrack.data.synthetic)
    expression_sd: float = 1.0     # its spread, in standard deviations of the training shapes' modes

    def augmenter_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``Augmenter`` (everything except ``enabled`` and the expression warp)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("enabled", "expression_prob", "expression_sd")}


@dataclass
class DataSection:
    """Where the faces come from and how they are cropped."""

    dataset: str = "shared300w"    # a catalogued dataset (facetrack.data.catalog): 300w | shared300w | wflw | ...
    root: str = ""
    split: str = "train"
    val_split: str | None = None   # a reader split used for validation; None: hold out by subject
    val_fraction: float = 0.1
    seed: int = 0                  # of the subject split (fixed, so every run holds out the same faces)
    crop_scale: float = 1.25       # crop side = crop_scale x the larger side of the landmark box
    augment: AugmentSection = field(default_factory=AugmentSection)


@dataclass
class OptimSection:
    """Adam with an optional per-epoch schedule (AOHR trains with Adam, lr 1e-4, batch 10)."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 10
    schedule: Schedule = "none"
    warmup_epochs: int = 0
    step_size: int = 30            # "step": multiply by gamma every step_size epochs
    gamma: float = 0.1
    min_lr_ratio: float = 0.01     # "cosine": final lr = lr x min_lr_ratio


@dataclass
class TrainerSection:
    """How Lightning runs: devices, precision, where outputs go, and limits for smoke tests."""

    max_epochs: int = 60
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"         # "auto" becomes "ddp" when devices > 1
    precision: str = "32-true"
    num_workers: int = 0
    seed: int = 0
    out: str = ""                  # default: runs/<recipe name>
    checkpoint_every: int = 1      # write <out>/last every n epochs (best is written whenever it improves)
    limit_train_batches: float = 1.0  # a fraction (<= 1.0) or a batch count (> 1)
    limit_val_batches: float = 1.0
    log_every_n_steps: int = 10
    progress_bar: bool = True
    resume: Resume = "never"       # "auto": continue from <out>/last.safetensors when it exists
    threads: int = 0               # torch CPU threads; 0 leaves torch's default


@dataclass
class TrainConfig:
    """One training recipe."""

    name: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    source: str = ""               # the recipe file; set by load_config, not read from YAML

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, for model cards and the run directory."""
        return _plain(dataclasses.asdict(self))

    @property
    def out_dir(self) -> Path:
        return Path(self.trainer.out) if self.trainer.out else Path("runs") / (self.name or "train")


def _plain(value: Any) -> Any:
    """Tuples -> lists, so ``to_dict`` is exactly what JSON/YAML would give back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read a recipe and apply ``key.sub=value`` overrides (values parsed as YAML, then type-checked)."""
    path = Path(path)
    text = read_text(path, "training recipe not found", "cannot read training recipe")
    try:
        raw = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(path, f"not valid YAML ({getattr(exc, 'problem', exc)})",
                        mark.line + 1 if mark is not None else None) from None
    except RecursionError:
        raise DataError(path, "YAML nested too deeply to be a recipe") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DataError(path, f"a recipe must be a mapping of sections, got {type(raw).__name__}")
    where = _Where(path, lines)
    for item in overrides:
        key, value = _parse_override(path, item)
        _set_dotted(path, raw, key, value, item)
        where.overrides[key] = item
    raw.setdefault("name", path.stem)
    raw.pop("source", None)  # a run's saved recipe.yaml records where it came from; that is not a setting
    config = _build(_recipe_class(raw), raw, "", where)
    config.source = str(path)
    return config


def config_from_dict(data: dict[str, Any], source: str | Path = "<dict>") -> TrainConfig:
    """Rebuild a recipe from ``TrainConfig.to_dict()`` (e.g. from a model card), with the same checks."""
    data = dict(data)
    data.pop("source", None)
    config = _build(_recipe_class(data), data, "", _Where(Path(source), {}))
    config.source = str(source)
    return config


def _recipe_class(raw: dict[str, Any]) -> type:
    """The config class of a raw recipe, as the recipe kinds of ``facetrack.train.run`` recognise it (clip
    datasets train temporal models, whose recipes have a few more keys)."""
    from facetrack.train.multi import MultiTrainConfig, is_multi_recipe
    from facetrack.train.run import recipe_class

    if is_multi_recipe(raw):  # a ``mix`` section: extra datasets in other schemes (facetrack.train.multi)
        return MultiTrainConfig
    return recipe_class(raw)


def _parse_override(path: Path, item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise DataError(path, f"override {item!r} is not of the form key.sub=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise DataError(path, f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


def _set_dotted(path: Path, raw: dict[str, Any], key: str, value: Any, item: str) -> None:
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise DataError(path, f"override {item!r}: {where!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line of that key in the YAML text, for error messages."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key + "."))
    return lines


@dataclass
class _Where:
    """Where a key came from: its line in the recipe, or the command-line override that set it."""

    path: Path
    lines: dict[str, int]
    overrides: dict[str, str] = field(default_factory=dict)

    def error(self, key: str, message: str) -> DataError:
        key = key.split("[", 1)[0]
        item = next((v for k, v in self.overrides.items() if k == key or k.startswith(key + ".")
                     or key.startswith(k + ".")), None)
        if item is not None:
            return DataError(self.path, f"override {item!r}: {message}")
        return DataError(self.path, message, self.lines.get(key))


def _build(cls: type, raw: Any, prefix: str, where: _Where) -> Any:
    section = prefix.rstrip(".") or "recipe"
    if not isinstance(raw, dict):
        raise where.error(section, f"{section!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise where.error(key, f"unknown key {key!r} (known in {section!r}: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, {} if value is None else value, key + ".", where)
        else:
            values[name] = _check(value, hint, key, where)
    return cls(**values)


def _check(value: Any, hint: Any, key: str, where: _Where) -> Any:
    """Return ``value`` converted to ``hint`` (int -> float only), or raise naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _check(value, option, key, where)
            except DataError:
                continue
        raise _type_error(value, hint, key, where)
    if hint is type(None):
        if value is None:
            return None
        raise _type_error(value, hint, key, where)
    if origin is Literal:
        if value in args:
            return value
        raise where.error(key, f"{key!r} must be one of {', '.join(map(str, args))}, got {value!r}")
    if hint is Any:
        return value
    if origin is tuple and args and args[-1] is not Ellipsis:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_check(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args)))
        raise _type_error(value, hint, key, where)
    if origin is list and len(args) == 1:
        if isinstance(value, (list, tuple)):
            return [_check(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
        raise _type_error(value, hint, key, where)
    if origin is dict or hint is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise _type_error(value, hint, key, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(value, hint, key, where)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(value, hint, key, where)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _type_error(value, hint, key, where)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. precision: 16 or split: 2020
        raise _type_error(value, hint, key, where)
    raise TypeError(f"config field {key!r} has an unsupported type {hint!r}")  # a bug in this module


def _type_error(value: Any, hint: Any, key: str, where: _Where) -> DataError:
    name = str(hint).replace("typing.", "") if typing.get_args(hint) else getattr(hint, "__name__", str(hint))
    return where.error(key, f"{key!r} must be {name}, got {value!r} ({type(value).__name__})")
