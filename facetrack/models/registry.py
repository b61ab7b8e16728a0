"""Models built by name: architectures (builders) and presets (an architecture with a fixed config).

``build_model("aohr-lite-128")`` and ``build_model("aohr", backbone={"name": "lite"}, input_size=128)`` are
both valid; the built model's ``arch``/``config`` always name the architecture and the full config, so
``build_model(model.arch, **model.config)`` rebuilds it.
"""
from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from facetrack.errors import ModelError

if TYPE_CHECKING:
    from facetrack.models.base import LandmarkModel

Builder = TypeVar("Builder", bound=Callable[..., "LandmarkModel"])

_BUILDERS: dict[str, Callable[..., LandmarkModel]] = {}
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {}
_BUILTIN_MODULES = (
    "facetrack.models.aohr", "facetrack.models.heatmap2d", "facetrack.models.rle", "facetrack.models.temporal",
    "facetrack.models.tufa", "facetrack.models.slpt", "facetrack.models.atpn", "facetrack.models.box_tracker",
)


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a builder ``(**config) -> LandmarkModel`` under an architecture name."""

    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS or name in _PRESETS:
            raise ModelError(f"model name {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def register_preset(name: str, arch: str, config: dict[str, Any]) -> None:
    """Register a named configuration of an architecture (e.g. the paper's model size)."""
    if name in _BUILDERS or name in _PRESETS:
        raise ModelError(f"model name {name!r} is registered twice")
    _PRESETS[name] = (arch, copy.deepcopy(config))


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """All names ``build_model`` accepts: architectures and presets, sorted."""
    _load_builtins()
    return sorted([*_BUILDERS, *_PRESETS])


def resolve(name: str, **overrides: Any) -> tuple[str, dict[str, Any]]:
    """(architecture, config) for a name; dict-valued options (e.g. ``backbone``) are merged one level deep."""
    _load_builtins()
    if name in _PRESETS:
        arch, config = _PRESETS[name]
        config = copy.deepcopy(config)
    elif name in _BUILDERS:
        arch, config = name, {}
    else:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    for key, value in overrides.items():
        base = config.get(key)  # a nested spec of the same kind (e.g. backbone) is updated, not replaced
        if isinstance(base, dict) and isinstance(value, dict) and value.get("name") in (None, base.get("name")):
            config[key] = {**base, **value}
        else:
            config[key] = copy.deepcopy(value)
    return arch, config


def build_model(arch: str, **config: Any) -> LandmarkModel:
    """Build an architecture or preset by name, with ``config`` overriding the preset's options."""
    arch, full = resolve(arch, **config)
    try:
        return _BUILDERS[arch](**full)
    except (TypeError, ValueError) as exc:  # name the model so the user knows which config is wrong
        raise ModelError(f"cannot build {arch!r} with config {full}: {exc}") from exc
