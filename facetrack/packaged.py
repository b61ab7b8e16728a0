"""The models that ship inside the package (``facetrack/weights``), read from their JSON cards without torch.

Landmark models, face detectors and the face validator share the folder; this module says which is which, so
that only landmark models are offered (and accepted) as ``--model`` and ``facetrack models`` can list them all
with their cards' key facts, terms included.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # the same folder as facetrack.models.hub.WEIGHTS_DIR

# The packaged defaults (the same as facetrack.models.DEFAULT_MODEL / DEFAULT_TRACKER, tested), importable
# without torch so that --help can name them.
DEFAULT_MODEL = "aohr-68"  # detect, facetrack.Detector
DEFAULT_TRACKER = "1dformer-68"  # track, demo, facetrack.Tracker
DEFAULT_DETECTORS = ("retinaface_mnet025", "mtcnn")  # the first, the second without onnxruntime
TEMPORAL_ARCHS = ("1dformer", "aohr-tracker")
KINDS = ("landmarks", "face detector", "face validator")


@dataclass(frozen=True)
class PackagedModel:
    """A packaged model's card, in short."""

    name: str
    kind: str  # one of KINDS
    file: str
    size_mb: float
    description: str
    terms: str
    arch: str = ""
    scheme: str = ""
    num_points: int = 0
    input_size: int = 0
    parameters: int = 0
    video: bool = False  # a temporal (tracking) landmark model
    option: str = ""  # the name --detector takes, for a face detector

    @property
    def default_for(self) -> str:
        return {DEFAULT_MODEL: "detect", DEFAULT_TRACKER: "track, demo", DEFAULT_DETECTORS[0]: "face detection",
                DEFAULT_DETECTORS[1]: "face detection without onnxruntime"}.get(self.name, "")


def _field(card: Any, *keys: str) -> Any:
    """``card[k0][k1]...`` or None, whatever the types on the way (cards are read here without validation)."""
    for key in keys:
        card = card.get(key) if isinstance(card, dict) else None
    return card


def _terms(card: dict[str, Any]) -> str:
    for value in (card.get("terms"), _field(card, "source", "licence"), _field(card, "training_data", "licence")):
        if isinstance(value, str) and value:
            return value
    return "see the card"


def describe(card_path: Path) -> PackagedModel:
    """One card's key facts; its kind from the card (``kind`` for detectors, the validator's arch)."""
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        card = None
    if not isinstance(card, dict):
        return PackagedModel(card_path.stem, "landmarks", "", 0.0, "unreadable card", "see the card")
    arch = str(card.get("arch", ""))
    kind = "face detector" if card.get("kind") == "face detector" else (
        "face validator" if arch == "face-validator" else "landmarks")
    weights = card_path.parent / str(card.get("weights") or card.get("file") or "")
    size = weights.stat().st_size / 1e6 if weights.is_file() else 0.0
    text = card.get("description") or card.get("architecture") or card.get("task") or ""
    return PackagedModel(
        name=str(card.get("name", card_path.stem)), kind=kind, file=weights.name, size_mb=round(size, 1),
        description=str(text), terms=_terms(card), arch=arch, scheme=str(card.get("scheme", "")),
        num_points=_int(card.get("num_points")), input_size=_int(card.get("input_size")),
        parameters=_int(card.get("parameters")), video=arch in TEMPORAL_ARCHS,
        option=str(card.get("implementation", "")).split(" ")[0].rsplit(".", 1)[-1] if kind == "face detector" else "")


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def packaged_models(kind: str | None = None, folder: Path | None = None) -> list[PackagedModel]:
    """Every packaged model (or those of one ``kind``), landmark models first, then by name."""
    folder = WEIGHTS_DIR if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    found = [describe(p) for p in sorted(folder.glob("*.json"))]
    found.sort(key=lambda m: (KINDS.index(m.kind), m.name))
    return [m for m in found if kind is None or m.kind == kind]


def landmark_model_names(folder: Path | None = None) -> list[str]:
    return [m.name for m in packaged_models("landmarks", folder)]


def check_landmark_model(name: str) -> None:
    """A ModelError when ``name`` is a packaged face detector or validator rather than a landmark model."""
    from facetrack.errors import ModelError

    card = WEIGHTS_DIR / f"{name}.json"
    if Path(name).name != name or not card.is_file():
        return
    model = describe(card)
    if model.kind != "landmarks":
        hint = f" (use --detector {model.option})" if model.kind == "face detector" else ""
        raise ModelError(f"{name!r} is a {model.kind}, not a landmark model{hint}; landmark models: "
                         f"{', '.join(landmark_model_names())}")


# Training recipes: configs/*.yaml of the source tree, shipped in an install as facetrack/recipes/ (setup.py).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
SOURCE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def recipe_names() -> list[str]:
    """The recipes reachable by name: an install's packaged copies, or a source checkout's configs/."""
    return sorted({p.stem for folder in (RECIPES_DIR, SOURCE_CONFIGS) if folder.is_dir() for p in folder.glob("*.yaml")})


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file as given, or by name (``aohr68_default`` or ``aohr68_default.yaml``) among the packaged
    recipes; a DataError listing the names otherwise."""
    from facetrack.errors import DataError

    given = Path(name_or_path)
    if given.is_file():
        return given
    if given.parent == Path("."):
        name = given.name[: -len(".yaml")] if given.name.endswith(".yaml") else given.name
        for folder in (RECIPES_DIR, SOURCE_CONFIGS):
            if (folder / f"{name}.yaml").is_file():
                return folder / f"{name}.yaml"
    raise DataError(given, f"training recipe not found (a YAML file, or one of the packaged recipes: "
                           f"{', '.join(recipe_names()) or 'none'})")
