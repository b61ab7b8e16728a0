"""Run a model's per-frame encoder (images -> 1D features) with onnxruntime on the CPU.

At batch 1 a small CNN spends much of its PyTorch time in per-operator dispatch; onnxruntime runs the same
graph (exported once, BatchNorm already folded) about 1.5x faster on two cores (benchmarks/README.md,
"Landmark model speed"). The ONNX graph is derived from the loaded safetensors weights, never shipped, so the
weights file stays the single source of truth; it is cached under ``$FACETRACK_CACHE`` (default
``~/.cache/facetrack``) keyed by a hash of the weights, so only the first load of a model pays the export.

Only the encoder moves: decoding, the temporal heads (1DFormer's state) and everything after stay in PyTorch.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "torch")


class _Encoder(nn.Module):
    """``encode_1d`` as a module's forward, which is what the exporter traces."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.encode_1d(images)


def cache_dir() -> Path:
    """Where exported graphs are kept: ``$FACETRACK_CACHE`` or ``~/.cache/facetrack``, subfolder ``onnx``."""
    root = os.environ.get("FACETRACK_CACHE") or Path.home() / ".cache" / "facetrack"
    return Path(root) / "onnx"


def _weights_key(model: nn.Module) -> str:
    digest = hashlib.sha256(torch.__version__.encode())
    digest.update(repr(getattr(model, "config", {})).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def export_encoder(model: nn.Module) -> bytes:
    """The ONNX graph (bytes) of ``model.encode_1d`` for crops (B, 3, F, F), B dynamic."""
    size = int(model.input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes about shape checks that are constant for a fixed F
        torch.onnx.export(
            _Encoder(model).eval(), (torch.zeros(1, 3, size, size),), buffer, input_names=["images"],
            output_names=["sx", "sy"], dynamic_axes={"images": {0: "batch"}, "sx": {0: "batch"}, "sy": {0: "batch"}},
            dynamo=False,
        )
    return buffer.getvalue()


def _graph(model: nn.Module) -> bytes:
    path = cache_dir() / f"{_weights_key(model)}.onnx"
    if path.is_file():
        return path.read_bytes()
    graph = export_encoder(model)
    try:  # a cache that cannot be written only costs the export next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(graph)
        tmp.replace(path)
    except OSError as exc:
        log.debug("could not cache the ONNX graph in %s: %s", path.parent, exc)
    return graph


def onnx_encoder(model: nn.Module, threads: int | None = None) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """An onnxruntime function with ``model.encode_1d``'s signature (CPU tensors in and out).

    Raises ImportError when onnx/onnxruntime are missing and RuntimeError when the graph cannot be exported
    or loaded; :func:`accelerate` turns both into a fallback to PyTorch.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(_graph(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # exporter and onnxruntime raise many types for an unsupported graph
        raise RuntimeError(f"could not run {type(model).__name__} with onnxruntime: {exc}") from exc

    def encode(images: Tensor) -> tuple[Tensor, Tensor]:
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        sx, sy = session.run(None, {"images": array})
        return torch.from_numpy(sx), torch.from_numpy(sy)

    return encode


def accelerate(model: Any, runtime: str = "auto", device: str | torch.device = "cpu") -> str:
    """Route ``model``'s encoder (an AOHR, or a temporal model's ``encoder``) through onnxruntime in place.

    ``runtime``: "onnx" (fail if impossible), "torch" (leave it), "auto" (onnx on the CPU when available,
    else torch). Use only on an eval-mode inference copy: the patched encoder has no gradients. Returns the
    runtime in use.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    target = getattr(model, "encoder", model)
    if runtime == "torch" or not hasattr(target, "encode_1d"):
        return "torch"
    if torch.device(device).type != "cpu":
        if runtime == "onnx":
            raise ValueError("the onnx runtime is for CPU inference; use runtime='torch' on other devices")
        return "torch"
    try:
        target.encode_1d = onnx_encoder(target)
    except (ImportError, RuntimeError) as exc:
        if runtime == "onnx":
            raise
        log.info("onnxruntime unavailable for this model (%s); running it with PyTorch", exc)
        return "torch"
    return "onnx"
