"""``facetrack quantize MODEL --dataset D --root R [--split S] [--faces N]``.

Writes a per-frame model's static int8 graph (``facetrack.models.quantize``) next to its weights as
``<name>.int8.onnx``, calibrated on crops of annotated *training* faces (the same faces ``facetrack calibrate``
uses), and names it in the card's ``int8`` section; ``--runtime int8`` then runs it (about 2x faster per face).
"""
from __future__ import annotations

import argparse
import json
from facetrack.commands.calibrate import add_training_face_arguments, command_line, training_faces


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quantize", help="make a per-frame model's int8 graph from training faces -> its card",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_face_arguments(p, faces=200, faces_help="faces to calibrate on, evenly spaced (default 200)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facetrack.data.transforms import box_from_landmarks
    from facetrack.landmarker import Landmarker
    from facetrack.models.hub import locate_card, read_card
    from facetrack.models.quantize import SUFFIX, quantize_predict, sha256

    card_path = locate_card(args.model)
    samples = training_faces(args)
    landmarker = Landmarker(args.model, runtime="onnx", calibrate=False)
    crops = [landmarker.crops(s.load_image(), box_from_landmarks(s.landmarks)[None])[0].numpy() for s in samples]
    card = read_card(card_path)
    graph = card_path.with_name(card_path.stem + SUFFIX)
    quantize_predict(landmarker, crops, graph)
    command = command_line("quantize", args)
    card["int8"] = {"graph": graph.name, "sha256": sha256(graph), "weights_sha256": card.get("sha256"),
                    "method": "onnxruntime quantize_static, QDQ, convolutions only, per-channel int8 weights, "
                              "uint8 activations", "calibration_faces": len(samples),
                    "calibration_data": f"{args.dataset} {args.root} split {args.split}", "command": command}
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {graph} ({graph.stat().st_size / 1e6:.1f} MB) and its entry in {card_path}")
    return 0
