"""Weights on disk: ``NAME.safetensors`` (tensors only, never pickle) next to ``NAME.json`` (the model card).

The card says how to rebuild the architecture (``arch`` + ``config``) and everything a user needs to trust
the weights: scheme, input size, crop policy, training data and licence, metrics, speed and recipe. Loading
refuses any card whose architecture does not match the tensors exactly, instead of half-loading a model.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from facetrack.errors import ModelError
from facetrack.models.base import LandmarkModel
from facetrack.models.registry import build_model

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
FORMAT = "facetrack"


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: LandmarkModel, path: str | Path, card: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write PATH.safetensors and PATH.json; the card's arch/config/scheme/input_size come from the model."""
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights, card_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights), metadata={"arch": model.arch, "format": FORMAT})
    full = dict(card or {})
    full.setdefault("crop", {"scale": 1.25})
    full.update({
        "format": FORMAT, "arch": model.arch, "config": model.config, "scheme": model.scheme,
        "num_points": model.num_points, "input_size": model.input_size,
        "weights": weights.name, "sha256": _sha256(weights),
        "parameters": int(sum(v.numel() for v in model.parameters())),
    })
    try:
        text = json.dumps(full, indent=2, sort_keys=False)
    except TypeError as exc:
        weights.unlink(missing_ok=True)
        raise ModelError(f"{card_path}: model card is not JSON-serialisable: {exc}") from exc
    card_path.write_text(text + "\n", encoding="utf-8")
    return weights, card_path


def locate_card(name_or_path: str | Path) -> Path:
    """The model card for a file path, a path stem, or the name of a packaged weight file."""
    given = Path(name_or_path)
    stem = _stem(given)
    if given.suffix in (".safetensors", ".json") or stem.with_suffix(".json").exists() or given.parent != Path("."):
        card = stem.with_suffix(".json")
        if not card.exists():
            raise ModelError(f"{card}: model card not found (expected next to the weights)")
        return card
    if not WEIGHTS_DIR.is_dir():
        raise ModelError(
            f"{name_or_path!r} is not a file and no packaged weights are installed ({WEIGHTS_DIR} is absent)"
        )
    card = WEIGHTS_DIR / f"{name_or_path}.json"
    if not card.exists():
        from facetrack.packaged import landmark_model_names

        known = landmark_model_names(WEIGHTS_DIR)  # not the detectors and the validator that share the folder
        raise ModelError(f"no packaged landmark model named {str(name_or_path)!r}; available: "
                         f"{', '.join(known) or 'none'} (facetrack models lists them)")
    return card


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card as a dict, every field's type and range checked before use; errors name the file."""
    from facetrack.io.validation import MAX_CARD_BYTES, check_card, load_json, model_error

    path = Path(path)
    card = load_json(path, "model card", MAX_CARD_BYTES, fail=model_error)
    return check_card(card, path)


def _header_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header (nothing loaded)."""
    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights}: not a readable safetensors file: {exc}") from exc


def _mismatch(state: dict[str, tuple[int, ...]], tensors: dict[str, tuple[int, ...]]) -> str:
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    wrong = sorted(k for k in set(state) & set(tensors) if state[k] != tensors[k])
    return "; ".join(
        f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''} ({len(keys)})"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
        if keys
    )


def _probe(card: dict[str, Any], card_path: Path, weights: Path) -> None:
    """Build the card's architecture without memory (torch's meta device) and compare its tensor shapes with
    the file's header: a card whose sizes do not match its weights is refused before anything is allocated."""
    try:
        with torch.device("meta"):
            model = build_model(card["arch"], **card["config"])
    except ModelError as exc:
        raise ModelError(f"{card_path}: {exc}") from exc
    except Exception:  # an architecture that cannot be built on the meta device: the real build checks it
        return
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    detail = _mismatch(state, _header_shapes(weights))
    if detail:
        raise ModelError(f"{weights}: does not match the architecture of {card_path} ({detail})")


def load_model(name_or_path: str | Path, map_location: str | torch.device = "cpu") -> LandmarkModel:
    """Rebuild the card's architecture and load its safetensors weights; refuses any mismatch. Eval mode."""
    card_path = locate_card(name_or_path)
    card = read_card(card_path)
    from facetrack.io.validation import card_weights_path

    weights = card_weights_path(card, card_path)
    expected = card.get("sha256")
    if expected is not None and _sha256(weights) != expected:
        raise ModelError(f"{weights}: sha256 differs from the one recorded in {card_path} (corrupt or replaced file)")
    _probe(card, card_path, weights)
    try:
        tensors = load_file(str(weights), device=str(map_location))
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{weights}: not a readable safetensors file: {exc}") from exc
    if metadata.get("arch") not in (None, card["arch"]):
        raise ModelError(f"{weights}: holds arch {metadata['arch']!r} but {card_path} says {card['arch']!r}")
    try:
        model = build_model(card["arch"], **card["config"])
    except ModelError as exc:
        raise ModelError(f"{card_path}: {exc}") from exc
    detail = _mismatch({k: tuple(v.shape) for k, v in model.state_dict().items()},
                       {k: tuple(v.shape) for k, v in tensors.items()})
    if detail:
        raise ModelError(f"{weights}: does not match the architecture of {card_path} ({detail})")
    model.load_state_dict(tensors, strict=True)
    model.card = card  # type: ignore[attr-defined]  # kept for writers (model name, crop policy)
    model.card_path = card_path  # type: ignore[attr-defined]  # files the card names (its int8 graph) sit next to it
    return model.to(map_location).eval()
