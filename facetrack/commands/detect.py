"""facetrack detect INPUT... [--boxes BOXES.json] [--model NAME|PATH] [--render DIR] --out PRED.json

Landmarks of every face in still images. Without --boxes the face detector supplies the faces; with it no
face detection runs (the ground-truth-box protocol of the benchmarks). Images are read upright: a phone
photo's EXIF orientation is applied, and PRED.json then says so ("exif_orientation") for that image.

PRED.json: {"model", "scheme", "images": [{"path", "width", "height", "faces": [{"bbox": [x0, y0, x1, y1],
"score", "landmarks": [[x, y], ...], "landmark_scores": [...]}]}]}, 0-based pixels of the upright image (the
format facetrack evaluate scores; README, "Command-line reference"). --out - writes it to standard output.

With a TUFA model (--model tufa-68) --points asks for other points than the model's own scheme: the name of a
scheme it was trained on (ideask21, mtfl5, ytf68) or, zero-shot, a JSON file of positions placed on its mean face
(facetrack meanface draws it): {"size": 256, "points": [[x, y], ...]} or just the list (256 px). PRED.json's
scheme is then the trained scheme's name, or "points:<count>:<file name>".
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from facetrack.commands import DEFAULT_DETECTOR_HELP, DEFAULT_MODEL, RUNTIMES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("detect", help="landmarks of every face in still images -> PRED.json",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of images")
    p.add_argument("--out", required=True, type=Path, help="prediction file to write (PRED.json); - for standard output")
    p.add_argument("--boxes", type=Path, help="JSON: image path -> list of [x0,y0,x1,y1] face boxes (skips detection)")
    p.add_argument("--model", default=None,
                   help=f"landmark model: a packaged name (facetrack models) or a weights path (default: {DEFAULT_MODEL})")
    p.add_argument("--detector", default=None, help=f"face detector name ({DEFAULT_DETECTOR_HELP})")
    p.add_argument("--max-faces", type=int, default=0, help="keep at most K faces per image (0 = all)")
    p.add_argument("--refine", type=int, default=2, help="re-crop passes around the predicted landmarks (default 2)")
    p.add_argument("--flip", action="store_true",
                   help="test-time flip: average each face's prediction with its mirrored crop's (slower, lower error)")
    p.add_argument("--no-calibration", action="store_true",
                   help="ignore the model card's calibration offsets (facetrack calibrate)")
    p.add_argument("--recursive", action="store_true", help="also look for images in sub-folders")
    p.add_argument("--render", type=Path, metavar="DIR", default=None,
                   help="also write each image with its faces drawn into DIR (JPEG, the input's name)")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="landmark model runtime: auto (default) = onnxruntime (float) on the CPU when possible, onnx "
                        "insists, torch = PyTorch, int8 = the card's int8 graph (facetrack quantize; about 2x faster)")
    p.add_argument("--points", default=None, metavar="SCHEME|POINTS.json",
                   help="TUFA models: another trained scheme's points, or zero-shot positions on the mean face "
                        "(JSON; see facetrack meanface)")
    p.set_defaults(func=run)


def read_points(spec: str) -> tuple[object, str]:
    """``--points``: a scheme name as is, or a JSON file's positions scaled to the 256 px mean face; and the
    scheme label PRED.json gets (the scheme's, or "points:<count>:<file name>")."""
    import json

    import numpy as np

    from facetrack.errors import DataError
    from facetrack.models.tufa import MEAN_FACE_SIZE

    path = Path(spec)
    if path.suffix.lower() != ".json":  # a trained scheme: PRED.json names its catalogue entry's scheme
        from facetrack.data import catalog

        try:
            return spec, str(catalog.get_dataset(spec).scheme)
        except KeyError:
            return spec, spec
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "--points file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"--points is not readable JSON ({exc})") from None
    size = MEAN_FACE_SIZE
    if isinstance(raw, dict):
        size, raw = raw.get("size", MEAN_FACE_SIZE), raw.get("points")
    try:
        points = np.asarray(raw, dtype=np.float64)
        size = float(size)
    except (TypeError, ValueError):
        raise DataError(path, "--points: expected {\"size\": S, \"points\": [[x, y], ...]} of numbers") from None
    if points.ndim != 2 or points.shape[1] != 2 or not len(points) or not np.isfinite(points).all() or size < 2:
        raise DataError(path, f"--points: expected finite [[x, y], ...] positions and a size >= 2, got shape "
                              f"{points.shape}, size {size:g}")
    return points * (MEAN_FACE_SIZE - 1) / (size - 1), f"points:{len(points)}:{path.name}"


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
    """The ``--boxes`` file: {image path: [[x0, y0, x1, y1], ...]}, every box checked (finite, non-empty, not
    inverted, bounded; ``facetrack.io.validation.read_boxes``), keys normalised (``_norm``)."""
    from facetrack.io.validation import read_boxes as read_checked

    return {_norm(key): value for key, value in read_checked(path).items()}


def _norm(path: str) -> str:
    """One spelling per file, so ``--boxes`` keys match however the root was written (./x, x, /abs/x)."""
    return os.path.normcase(os.path.abspath(path))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facetrack.api import Detector
    from facetrack.data.sample import read_image_oriented
    from facetrack.errors import DataError, FacetrackError
    from facetrack.io.results import FacePrediction, ImagePrediction, PredictionWriter, check_writable
    from facetrack.io.validation import box_problem, image_problem

    images = collect_images(args.inputs, args.recursive)
    if not images:
        raise FacetrackError("no images found in the inputs")
    if args.max_faces < 0:
        raise FacetrackError("--max-faces must be >= 0 (0 = all faces)")
    check_writable(args.out)  # before the work, not after it
    given_boxes = read_boxes(args.boxes) if args.boxes else None
    # with --boxes no face detection runs (the detector is built on first use only)
    points, scheme = read_points(args.points) if args.points else (None, "")
    finder = Detector(model=args.model, detector=args.detector, max_faces=args.max_faces, refine=args.refine,
                      runtime=args.runtime, flip=args.flip, calibrate=not args.no_calibration, points=points)
    engine = finder.engine
    rendered = RenderNames(args.render) if args.render else None
    writer = PredictionWriter(args.out, str(getattr(engine, "name", "")), scheme or str(engine.scheme))
    missing: list[str] = []
    n_faces = 0
    log = sys.stderr if str(args.out) == "-" else sys.stdout
    for path in tqdm(images, desc="detect", unit="img", file=sys.stderr):
        try:  # one bad image is reported and skipped; the batch goes on
            problem = image_problem(path)
            if problem is not None:
                raise DataError(path, problem)
            image, orientation = read_image_oriented(path)
            if given_boxes is None:
                faces = finder(image)
            else:
                boxes = given_boxes.get(_norm(path))
                if boxes is None:
                    missing.append(path)
                    boxes = []
                for k, b in enumerate(boxes):
                    why = box_problem(b, image.shape[1], image.shape[0])
                    if why is not None:
                        raise DataError(args.boxes, f"{path!r}[{k}]: {why}")
                faces = finder(image, boxes=boxes) if boxes else []
            writer.add(ImagePrediction(path=path, width=image.shape[1], height=image.shape[0], faces=[
                FacePrediction(bbox=f.box, landmarks=f.landmarks, score=f.score, landmark_scores=f.confidences,
                               pose=f.pose)
                for f in faces
            ], orientation=orientation))
            n_faces += len(faces)
            if rendered is not None:
                rendered.write(path, image, faces)
        except (FacetrackError, ValueError, OSError) as exc:
            writer.fail(path, str(exc))
            print(f"skipped {path}: {exc}", file=sys.stderr)
    writer.close()
    failed = len(writer.failed)
    print(f"wrote {args.out}: {writer.count} images, {n_faces} faces"
          + (f"; {failed} image(s) failed (listed under \"failed\")" if failed else ""), file=log)
    if missing:
        print(f"warning: {len(missing)} images had no entry in {args.boxes} and got no faces, e.g. {missing[0]}",
              file=log)
    return 1 if failed else 0


class RenderNames:
    """``detect --render DIR``: each image drawn (``facetrack.draw``) as DIR/<input name>.jpg, a number added
    when names repeat (the same name in two input folders)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.used: set[str] = set()
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, path: str, image: object, faces: object) -> Path:
        import cv2

        from facetrack.drawing import draw

        stem, k = Path(path).stem, 2
        name = stem
        while name in self.used:
            name, k = f"{stem}_{k}", k + 1
        self.used.add(name)
        target = self.folder / f"{name}.jpg"
        if not cv2.imwrite(str(target), draw(image, faces), [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise OSError(f"cannot write {target}")
        return target
