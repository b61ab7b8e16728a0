"""Optional plug-ins by name (face detectors, peer methods): a class in a module imported only when it is built,
with the Python modules and packaged files it needs, so saying what runs here imports nothing."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Plugin:
    module: str  # absolute module name
    cls: str
    requires: tuple[str, ...]  # importable modules it needs
    install: str  # what to pip install when one is missing
    summary: str
    weights: tuple[str, ...] = ()  # files under facetrack/weights/


def weights_dir() -> Path:
    """Folder of the packaged weights (facetrack/weights)."""
    return Path(__file__).resolve().parent / "weights"


def missing(plugin: Plugin) -> str | None:
    """Why a plug-in cannot run here (a sentence naming the fix), or None when it can."""
    for module in plugin.requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"needs the Python module {module!r}: {plugin.install}"
    for name in plugin.weights:
        if not (weights_dir() / name).is_file():
            return f"weights file {weights_dir() / name} is missing (reinstall facetrack)"
    return None


def status(registry: dict[str, Plugin]) -> dict[str, str | None]:
    """Every name -> None when it can run here, else why not (with what to install)."""
    return {name: missing(plugin) for name, plugin in registry.items()}


def build(registry: dict[str, Plugin], key: str, kind: str, unknown: type[Exception], unavailable: type[Exception],
          **kwargs: Any) -> Any:
    """The plug-in ``key`` of ``registry`` built with ``kwargs``; ``unknown`` / ``unavailable`` name the fix."""
    if key not in registry:
        raise unknown(f"unknown {kind} {key!r}; known: {', '.join(sorted(registry))}")
    plugin = registry[key]
    reason = missing(plugin)
    if reason is not None:
        raise unavailable(f"{kind} {key!r} is not available: {reason}")
    return getattr(importlib.import_module(plugin.module), plugin.cls)(**kwargs)
