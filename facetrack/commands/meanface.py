"""facetrack meanface [--model tufa-68] --out MEAN.png [--scheme NAME] [--size 256]

The mean face of a TUFA model (any point of its face plane can be asked for: zero-shot landmarks): a picture of
the anchors of its trained schemes (the model's own in white, numbered; another --scheme in colour) and, next to
it, MEAN.json with every scheme's anchor positions in the picture's pixels. Place new points on the picture (or
edit a copy of the JSON), then ask for them in images:

    facetrack meanface --out mean.png
    facetrack detect photos/ --model tufa-68 --points my_points.json --out pred.json

my_points.json: {"size": 256, "points": [[x, y], ...]} in the picture's pixels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

COLOURS = ((0, 200, 255), (80, 255, 80), (255, 120, 80), (200, 80, 255))  # BGR, one per other scheme


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("meanface", help="draw a TUFA model's mean face, where zero-shot points are placed",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tufa-68", help="a TUFA model: packaged name or path (default tufa-68)")
    p.add_argument("--out", required=True, type=Path, help="picture to write (PNG); MEAN.json is written next to it")
    p.add_argument("--scheme", action="append", default=[], metavar="NAME",
                   help="also draw this trained scheme's anchors (repeatable; default: all of them)")
    p.add_argument("--size", type=int, default=256, help="picture side in pixels (default 256, the unit of --points)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import cv2
    import numpy as np

    from facetrack.errors import FacetrackError, ModelError
    from facetrack.io.results import check_writable
    from facetrack.models.hub import load_model
    from facetrack.models.tufa import TUFA

    if args.size < 64:
        raise FacetrackError("--size must be at least 64 pixels")
    model = load_model(args.model)
    if not isinstance(model, TUFA):
        raise ModelError(f"{args.model} is not a TUFA model ({model.arch}): only TUFA answers points it was not "
                         "trained on")
    unknown = [s for s in args.scheme if s not in model.datasets]
    if unknown:
        raise FacetrackError(f"--scheme {unknown[0]}: the model knows {', '.join(model.datasets)}")
    check_writable(args.out)
    own = model.datasets[0]
    others = args.scheme or model.datasets[1:]
    matrix = model._plane_to_pixels(args.size)
    scale, centre = matrix[0, 0], matrix[0, 2]

    def pixels(name: str) -> np.ndarray:
        return model.anchors(name).detach().cpu().numpy().astype(np.float64) * scale + centre

    picture = np.zeros((args.size, args.size, 3), np.uint8)
    legend = []
    for k, name in enumerate(others):
        colour = COLOURS[k % len(COLOURS)]
        for x, y in pixels(name):
            cv2.drawMarker(picture, (int(round(x)), int(round(y))), colour, cv2.MARKER_CROSS, 5, 1)
        legend.append((name, colour))
    font = max(0.25, args.size / 1600)
    for i, (x, y) in enumerate(pixels(own)):
        cv2.circle(picture, (int(round(x)), int(round(y))), 2, (255, 255, 255), -1)
        cv2.putText(picture, str(i), (int(round(x)) + 2, int(round(y)) - 2), cv2.FONT_HERSHEY_SIMPLEX, font,
                    (170, 170, 170), 1, cv2.LINE_AA)
    for k, (name, colour) in enumerate([(own, (255, 255, 255)), *legend]):
        cv2.putText(picture, name, (4, 12 + 12 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), picture):
        raise FacetrackError(f"could not write {args.out} (use a .png or .jpg name)")
    table = {"model": str(args.model), "size": args.size,
             "schemes": {name: np.round(pixels(name), 2).tolist() for name in [own, *others]}}
    side = args.out.with_suffix(".json")
    side.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} and {side}: {len(model.datasets)} schemes on the mean face of {args.model}")
    return 0
