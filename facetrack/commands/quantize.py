"""``facetrack quantize MODEL --dataset D --root R [--split S] [--faces N]``.

Writes a model's static int8 graph (``facetrack.models.quantize``) next to its weights as ``<name>.int8.onnx``,
calibrated on crops of annotated *training* faces (the same faces ``facetrack calibrate`` uses), and names it in the
card's ``int8`` section; ``--runtime int8`` then runs it (about 2x faster per face). A temporal model is calibrated
on short clips, one per face: crops that wander around the face as a tracker's crops do (``CLIP_FRAMES`` frames,
seeded), run through the float model from an empty history.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from facetrack.commands.calibrate import add_training_face_arguments, command_line, training_faces


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quantize", help="make a model's int8 graph from training faces -> its card",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_face_arguments(p, faces=200, faces_help="faces to calibrate on, evenly spaced (default 200)")
    p.set_defaults(func=run)


CLIP_FRAMES = 8  # a temporal model's calibration clip: enough to fill 1dformer-68's window of 9 frames but one
CLIP_WANDER = (0.03, 0.03, 3.0)  # per-frame random walk of the crop: shift and scale (fraction of the side), roll (deg)


def calibration_clip(landmarker: Any, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator
                     ) -> list[np.ndarray]:
    """Model-input crops (1, 3, F, F) of one face over ``CLIP_FRAMES`` frames, the crop box and roll wandering
    around the face's upright box as tracking crops do between frames."""
    from facetrack.data.transforms import face_roll, upright_box
    from facetrack.schemes import get_scheme

    roll = face_roll(landmarks, get_scheme(landmarker.scheme))
    box = upright_box(landmarks, roll)
    centre, side = 0.5 * (box[:2] + box[2:]), box[2:] - box[:2]
    shift, scale, turn = np.zeros(2), 1.0, roll
    crops = []
    for _ in range(CLIP_FRAMES):
        shift = np.clip(shift + rng.normal(0, CLIP_WANDER[0], 2), -0.1, 0.1)
        scale = float(np.clip(scale * (1 + rng.normal(0, CLIP_WANDER[1])), 0.85, 1.15))
        turn = float(np.clip(turn + rng.normal(0, CLIP_WANDER[2]), roll - 10, roll + 10))
        c, half = centre + shift * side, 0.5 * scale * side
        crop_box = np.concatenate([c - half, c + half])[None]
        crops.append(landmarker.crops(image, crop_box, np.array([turn]))[0].numpy())
    return crops


def run(args: argparse.Namespace) -> int:
    from facetrack.data.transforms import box_from_landmarks
    from facetrack.landmarker import Landmarker
    from facetrack.models.hub import locate_card, read_card
    from facetrack.models.quantize import SUFFIX, quantize_predict, quantize_step, sha256

    card_path = locate_card(args.model)
    samples = training_faces(args)
    landmarker = Landmarker(args.model, runtime="onnx", calibrate=False)
    card = read_card(card_path)
    graph = card_path.with_name(card_path.stem + SUFFIX)
    temporal = callable(getattr(landmarker.model, "init_state", None))
    if temporal:
        rng = np.random.default_rng(0)
        clips = [calibration_clip(landmarker, s.load_image(), np.asarray(s.landmarks, dtype=np.float64), rng)
                 for s in samples]
        quantize_step(landmarker, clips, graph)
    else:
        crops = [landmarker.crops(s.load_image(), box_from_landmarks(s.landmarks)[None])[0].numpy() for s in samples]
        quantize_predict(landmarker, crops, graph)
    command = command_line("quantize", args)
    card["int8"] = {"graph": graph.name, "sha256": sha256(graph), "weights_sha256": card.get("sha256"),
                    "method": "onnxruntime quantize_static, QDQ, convolutions only, per-channel int8 weights, "
                              "uint8 activations", "calibration_faces": len(samples),
                    **({"calibration_clip": {"frames": CLIP_FRAMES, "wander": list(CLIP_WANDER), "seed": 0}}
                       if temporal else {}),
                    "calibration_data": f"{args.dataset} {args.root} split {args.split}", "command": command}
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {graph} ({graph.stat().st_size / 1e6:.1f} MB) and its entry in {card_path}")
    return 0
