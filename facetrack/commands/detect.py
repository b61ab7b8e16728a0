"""``facetrack detect INPUT... [--boxes BOXES.json] [--model NAME|PATH] --out PRED.json``.

With ``--boxes`` no face detection runs (the ground-truth-box protocol of the benchmarks); without it the
face detector supplies the boxes. The output is the PRED.json contract of DESIGN.md, which
``facetrack evaluate`` scores.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from facetrack.commands import RUNTIMES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("detect", help="landmarks of every face in still images -> PRED.json",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of images")
    p.add_argument("--out", required=True, type=Path, help="prediction file to write (PRED.json)")
    p.add_argument("--boxes", type=Path, help="JSON: image path -> list of [x0,y0,x1,y1] face boxes (skips detection)")
    p.add_argument("--model", default=None, help="registered model name or weights path (default: the packaged default)")
    p.add_argument("--detector", default=None, help="face detector name (default: the packaged default)")
    p.add_argument("--max-faces", type=int, default=0, help="keep at most K faces per image (0 = all)")
    p.add_argument("--refine", type=int, default=2, help="re-crop passes around the predicted landmarks (default 2)")
    p.add_argument("--flip", action="store_true",
                   help="test-time flip: average each face's prediction with its mirrored crop's (slower, lower error)")
    p.add_argument("--no-calibration", action="store_true",
                   help="ignore the model card's calibration offsets (facetrack calibrate)")
    p.add_argument("--recursive", action="store_true", help="also look for images in sub-folders")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="landmark encoder runtime: onnxruntime on the CPU when possible (auto), or torch/onnx")
    p.set_defaults(func=run)


def collect_images(inputs: list[str], recursive: bool = False) -> list[str]:
    """Image paths as given (files) or as found in folders (sorted), each once, in order."""
    from facetrack.errors import DataError

    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(str(p) for p in sorted(path.glob(pattern)) if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(item)
        else:
            raise DataError(path, "input not found (expected an image file or a folder)")
    return list(dict.fromkeys(found))


def read_boxes(path: Path) -> dict[str, list[list[float]]]:
    """The ``--boxes`` file: {image path: [[x0, y0, x1, y1], ...]}, validated."""
    from facetrack.errors import DataError

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "boxes file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object mapping image paths to lists of boxes")
    boxes: dict[str, list[list[float]]] = {}
    for key, value in raw.items():
        if not isinstance(value, list) or not all(
            isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b) for b in value
        ):
            raise DataError(path, f"{key!r}: expected a list of [x0, y0, x1, y1] boxes")
        boxes[_norm(key)] = [[float(v) for v in b] for b in value]
    return boxes


def _norm(path: str) -> str:
    """One spelling per file, so ``--boxes`` keys match however the root was written (./x, x, /abs/x)."""
    return os.path.normcase(os.path.abspath(path))


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from facetrack.api import Detector, Face, resolve_engine
    from facetrack.data.sample import read_image
    from facetrack.errors import FacetrackError
    from facetrack.io.results import FacePrediction, ImagePrediction, Prediction, write_predictions

    images = collect_images(args.inputs, args.recursive)
    if not images:
        raise FacetrackError("no images found in the inputs")
    given_boxes = read_boxes(args.boxes) if args.boxes else None
    if given_boxes is None:  # the face detector supplies the boxes
        finder = Detector(model=args.model, detector=args.detector, max_faces=args.max_faces, refine=args.refine,
                          runtime=args.runtime, flip=args.flip, calibrate=not args.no_calibration)
        engine = finder.engine
    else:  # ground-truth-box protocol: no face detection at all
        engine = resolve_engine(args.model, refine=args.refine, runtime=args.runtime, flip=args.flip,
                                calibrate=not args.no_calibration)
    pred = Prediction(model=str(getattr(engine, "name", "")), scheme=str(engine.scheme))
    missing: list[str] = []
    for path in tqdm(images, desc="detect", unit="img"):
        image = read_image(path)
        if given_boxes is None:
            faces = finder(image)
        else:
            boxes = given_boxes.get(_norm(path))
            if boxes is None:
                missing.append(path)
                boxes = []
            if args.max_faces > 0:
                boxes = boxes[: args.max_faces]
            estimates = engine.start(image, [np.asarray(b) for b in boxes]) if boxes else []
            faces = [Face(np.asarray(b), None, e.landmarks, e.confidences) for b, e in zip(boxes, estimates)]
        pred.images.append(ImagePrediction(path=path, width=image.shape[1], height=image.shape[0], faces=[
            FacePrediction(bbox=f.box, landmarks=f.landmarks, score=f.score, landmark_scores=f.confidences)
            for f in faces
        ]))
    write_predictions(args.out, pred)
    n_faces = sum(len(i.faces) for i in pred.images)
    print(f"wrote {args.out}: {len(pred.images)} images, {n_faces} faces")
    if missing:
        print(f"warning: {len(missing)} images had no entry in {args.boxes} and got no faces, e.g. {missing[0]}")
    return 0
