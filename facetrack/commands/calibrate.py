"""``facetrack calibrate MODEL --dataset D --root R [--split S] [--faces N] [--out CARD.json]``.

Measures a per-frame model's systematic per-landmark offsets on annotated training faces, for plain and
test-time-flip inference, and writes them into the model card (``calibration``), which ``Landmarker`` then
subtracts (``facetrack.calibration`` says why). Calibrate on faces the model was trained on, never on the
faces you report: for a ``facetrack train`` run that is ``--split runs/<run>/split.json``'s training side,
here ``--dataset shared300w --split train``.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from facetrack.commands.evaluate import DATASETS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate", help="measure a model's per-landmark offsets on training faces -> its card",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_face_arguments(p, faces=0, faces_help="use at most N faces, evenly spaced (0 = all)")
    p.add_argument("--out", type=Path, default=None, help="card to write (default: the model's own card, in place)")
    p.set_defaults(func=run)


def add_training_face_arguments(p: argparse.ArgumentParser, faces: int, faces_help: str) -> None:
    """MODEL, --dataset, --root, --split and --faces: a model and the annotated training faces it is measured on
    (``calibrate`` and ``quantize``)."""
    p.add_argument("model", help="weights path (.safetensors with its .json card) or packaged model name")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, type=Path, help="dataset folder")
    p.add_argument("--split", default="train", help="the training faces (default: train)")
    p.add_argument("--faces", type=int, default=faces, help=faces_help)


def training_faces(args: argparse.Namespace) -> list:
    """The annotated faces ``args`` names (``dataset``, ``root``, ``split``), at most ``faces`` evenly spaced."""
    import numpy as np

    from facetrack.evaluation import load_ground_truth

    samples = [s for faces in load_ground_truth(args.dataset, args.root, args.split).values() for s in faces]
    if args.faces > 0 and len(samples) > args.faces:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, args.faces).round().astype(int)]
    return samples


def command_line(name: str, args: argparse.Namespace) -> str:
    """The shell command that made a card section (recorded in it)."""
    return " ".join(shlex.quote(str(a)) for a in (
        "facetrack", name, args.model, "--dataset", args.dataset, "--root", args.root, "--split", args.split,
        *(("--faces", args.faces) if args.faces > 0 else ())))


def run(args: argparse.Namespace) -> int:
    from facetrack.calibration import MODES, calibration_card, estimate_offsets
    from facetrack.landmarker import Landmarker
    from facetrack.models.hub import locate_card, read_card

    card_path = locate_card(args.model)
    samples = training_faces(args)
    offsets = estimate_offsets(Landmarker(args.model, calibrate=False), samples)
    for mode in MODES:
        mean = offsets[mode].mean(axis=0)
        print(f"{mode}: mean offset x {mean[0]:+.3f}, y {mean[1]:+.3f} crop px over {len(samples)} faces")
    card = read_card(card_path)
    command = command_line("calibrate", args)
    card["calibration"] = calibration_card(offsets, len(samples), f"{args.dataset} {args.root} split {args.split}",
                                           command)
    out = args.out or card_path
    out.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(f"wrote the calibration into {out}")
    return 0
