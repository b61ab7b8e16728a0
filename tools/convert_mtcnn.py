"""One-off: convert facenet-pytorch's MTCNN weights (pickled state dicts) into facetrack's safetensors.

Run once by a maintainer; the library never unpickles anything at run time::

    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fnp
    python tools/convert_mtcnn.py /tmp/fnp/facenet_pytorch-2.6.0-py3-none-any.whl

Writes facetrack/weights/mtcnn.safetensors (tensors ``pnet.*``, ``rnet.*``, ``onet.*`` with the layer names of
facetrack.tracking.detectors.mtcnn) and mtcnn.json (the card: source, licences, checksums).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

NETS = ("pnet", "rnet", "onet")
WHEEL_NAME = "facenet_pytorch-2.6.0-py3-none-any.whl"
OUT_DIR = Path(__file__).resolve().parents[1] / "facetrack" / "weights"


def read_state_dicts(wheel: Path) -> dict[str, torch.Tensor]:
    """Read the three state dicts from the wheel, with weights_only so no code in the pickle can run."""
    tensors: dict[str, torch.Tensor] = {}
    with zipfile.ZipFile(wheel) as archive:
        for net in NETS:
            raw = archive.read(f"facenet_pytorch/data/{net}.pt")
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            for key, value in state.items():
                tensors[f"{net}.{key}"] = value.detach().to(torch.float32).contiguous()
    return tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help=f"path to {WHEEL_NAME}")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    tensors = read_state_dicts(args.wheel)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "mtcnn.safetensors"
    save_file(tensors, str(weights), metadata={"format": "pt", "source": "facenet-pytorch 2.6.0"})
    card = {
        "name": "mtcnn",
        "kind": "face detector",
        "architecture": "MTCNN cascade (P-Net, R-Net, O-Net), Zhang et al. 2016",
        "implementation": "facetrack.tracking.detectors.mtcnn",
        "file": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "num_tensors": len(tensors),
        "input": "RGB, (x - 127.5) / 128, NCHW",
        "source": {
            "package": "facenet-pytorch==2.6.0 (PyPI wheel), files facenet_pytorch/data/{pnet,rnet,onet}.pt",
            "wheel_sha256": hashlib.sha256(args.wheel.read_bytes()).hexdigest(),
            "licence": "MIT (Copyright (c) 2019 Timothy Esler)",
            "origin": "The weights are Kaipeng Zhang et al.'s original MTCNN Caffe models "
            "(kpzhang93/MTCNN_face_detection_alignment, 'Joint Face Detection and Alignment using "
            "Multi-task Cascaded Convolutional Networks', IEEE SPL 2016), converted to PyTorch by "
            "facenet-pytorch (via davidsandberg/facenet). Trained on WIDER FACE and CelebA.",
        },
        "conversion": "tools/convert_mtcnn.py: torch.load(weights_only=True) once, float32, keys prefixed "
        "with the network name; no other change.",
    }
    (args.out / "mtcnn.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {weights} ({len(tensors)} tensors) and {args.out / 'mtcnn.json'}")


if __name__ == "__main__":
    main()
