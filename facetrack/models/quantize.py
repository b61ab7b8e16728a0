"""Static int8 copies of a model's onnxruntime graph, for ``--runtime int8``.

The convolutions of the graph ``facetrack`` runs for a model (``onnx_runtime.onnx_predict``: network and decoding
of a per-frame model; ``onnx_runtime.onnx_step``: encoder, temporal head and decoders of a temporal model, whose
calibration runs whole clips so that the state inputs carry real histories) are quantised in QDQ format,
per-channel int8 weights and uint8 activations whose ranges are calibrated on crops of *training* faces; the
decoding and the attention stay in float. Measured for ``1dformer-68``'s step (64 calibration clips): 9.8 -> 6.1 ms
of CPU per face on one thread, held-out pseudo-videos NRMSE 4.101 -> 4.117 % and jitter e3 0.188 -> 0.216 % with
the default output filter (quantising the backbone alone gave the same jitter: it comes from the encoder), so
int8 stays opt-in for tracking (benchmarks/README.md, "int8 tracking"). Measured for ``aohr-68``: 3.71 -> 1.88 ms per face at batch 1 on
two cores, held-out NME 3.337 -> 3.339 % (``benchmarks/quantize_probe.py --static``). Calibration needs annotated
faces, so the int8 graph is made once (``facetrack quantize``) and shipped next to the weights, named in the card's
``int8`` section with its sha256 and that of the weights it was made from.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facetrack.errors import ModelError

SUFFIX = ".int8.onnx"


def quantize_predict(landmarker: Any, crops: Sequence[np.ndarray], out: str | Path) -> Path:
    """Write the static int8 graph of ``landmarker``'s per-frame model, calibrated on model-input ``crops``
    ((1, 3, F, F) float32 arrays, RGB [0, 1]), to ``out``."""
    from facetrack.models.onnx_runtime import _weights_key, cache_dir, predictor_for

    if callable(getattr(landmarker.model, "init_state", None)):
        raise ModelError(f"{landmarker.name} is a temporal model: quantize its step graph (quantize_step)")
    predictor_for(landmarker.model, "onnx")  # exports and caches the float graph
    graph = cache_dir() / f"{_weights_key(landmarker.model, 'predict')}.onnx"
    return _quantize(graph, ({"images": crop} for crop in crops), out)


def quantize_step(landmarker: Any, clips: Sequence[Sequence[np.ndarray]], out: str | Path) -> Path:
    """Write the static int8 graph of a temporal model's ``step`` (``onnx_runtime.onnx_step``), calibrated on
    ``clips``: sequences of model-input crops ((1, 3, F, F) float32, RGB [0, 1]) of one face each, as tracking cuts
    them. Each clip runs through the float model from an empty history, so the convolutions that read the state see
    the ranges of real histories, not of zeros."""
    import torch

    from facetrack.models.onnx_runtime import STEP_GRAPH, _weights_key, cache_dir, predictor_for, step_feeds

    model = landmarker.model
    if not callable(getattr(model, "init_state", None)):
        raise ModelError(f"{landmarker.name} is a per-frame model: quantize its predict graph (quantize_predict)")
    predictor_for(model, "onnx")  # exports and caches the float step graph
    graph = cache_dir() / f"{_weights_key(model, STEP_GRAPH)}.onnx"

    def feeds() -> Any:
        with torch.inference_mode():
            for clip in clips:
                state = model.init_state(1)
                for crop in clip:
                    images = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))
                    yield step_feeds(images, state)
                    state = model.step(images, state)[1]

    return _quantize(graph, feeds(), out)


def _quantize(graph: Path, feeds: Any, out: str | Path) -> Path:
    """QDQ static quantisation of ``graph``'s convolutions, calibrated on the feed dicts ``feeds``, to ``out``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    items = iter(feeds)

    class Feeds(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(items, None)
            return None if item is None else {k: np.ascontiguousarray(v) for k, v in item.items()}

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:  # the quantiser writes side files next to its output
        staged = Path(tmp) / out.name
        quantize_static(str(graph), str(staged), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=["Conv"], activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(staged.read_bytes())
    out.chmod(0o644)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def int8_graph(card: dict[str, Any], card_dir: Path | None) -> Path:
    """The card's int8 graph, checked: a plain file name next to the card, its sha256, made from these weights."""
    section = card.get("int8")
    name = card.get("name", "model")
    if not isinstance(section, dict) or card_dir is None:
        raise ModelError(f"{name} has no int8 graph: make one with `facetrack quantize {name} --dataset D --root R` "
                         "(training faces), or use --runtime onnx")
    graph = section.get("graph")
    if not isinstance(graph, str) or Path(graph).name != graph or not (card_dir / graph).is_file():
        raise ModelError(f"{card_dir}: the card's int8 graph {graph!r} is not a file in the card's folder")
    path = card_dir / graph
    if section.get("sha256") != sha256(path):
        raise ModelError(f"{path}: sha256 differs from the one in {name}'s card (corrupt or replaced file)")
    if section.get("weights_sha256") != card.get("sha256"):
        raise ModelError(f"{path}: made from other weights than {name}'s; run facetrack quantize again")
    return path
