"""``facetrack export WEIGHTS --name NAME [--eval RESULT.json ...] [--speed SPEED.json] [--out DIR]``.

Turns a training run's checkpoint into a named, packaged model: the safetensors weights plus a model card
that carries the training card (recipe, data, terms) and the measured numbers (``facetrack evaluate``'s
RESULT.json files, a speed benchmark's JSON). ``facetrack/weights`` is where the package looks for names.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="package a trained checkpoint as a named model with its card",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="checkpoint (.safetensors with its .json card), e.g. runs/x/best.safetensors")
    p.add_argument("--name", required=True, help="model name, e.g. aohr-68")
    p.add_argument("--out", type=Path, default=None, help="folder to write NAME.safetensors/.json (default: the package's)")
    p.add_argument("--eval", type=Path, action="append", default=[], metavar="RESULT.json",
                   help="evaluation results to record in the card (repeatable)")
    p.add_argument("--speed", type=Path, default=None, help="speed benchmark JSON to record in the card")
    p.add_argument("--description", default="", help="one line on what the model is for")
    p.set_defaults(func=run)


def _read_json(path: Path) -> Any:
    from facetrack.errors import DataError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None


def _summary(value: Any, longest: int = 100) -> Any:
    """An evaluation result without its per-face arrays (kept in the RESULT.json itself), for the card."""
    if isinstance(value, dict):
        return {k: _summary(v, longest) for k, v in value.items()
                if not (isinstance(v, list) and len(v) > longest)}
    if isinstance(value, list):
        return [_summary(v, longest) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    from facetrack.models.hub import WEIGHTS_DIR, load_model, read_card, save_model

    model = load_model(args.weights)
    trained = read_card(Path(args.weights).with_suffix(".json"))
    training = trained.get("training", {})
    card: dict[str, Any] = {
        "name": args.name,
        "description": args.description,
        "terms": training.get("data", {}).get("terms", "see the training data's terms"),
        "crop": trained.get("crop", {"scale": 1.25}),
        "training": training,
        "evaluation": [_summary(_read_json(p)) for p in args.eval],
    }
    if "calibration" in trained:  # per-landmark offsets measured on training faces (facetrack calibrate)
        card["calibration"] = trained["calibration"]
    if args.speed is not None:
        card["speed"] = _read_json(args.speed)
    out = args.out or WEIGHTS_DIR
    weights, card_path = save_model(model, Path(out) / args.name, card)
    print(f"wrote {weights} and {card_path}")
    return 0
