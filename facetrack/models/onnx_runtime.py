"""Run a model's network with onnxruntime on the CPU: an AOHR's encoder, or a temporal model's whole step.

At batch 1 a small network spends much of its PyTorch time in per-operator dispatch; onnxruntime runs the same
graph (exported once, BatchNorm already folded) about 1.5-2x faster on two cores (benchmarks/README.md,
"Landmark model speed"). The ONNX graph is derived from the loaded safetensors weights, never shipped, so the
weights file stays the single source of truth; it is cached under ``$FACETRACK_CACHE`` (default
``~/.cache/facetrack``) keyed by a hash of the weights, so only the first load of a model pays the export.

- Per-frame models (AOHR, and any ``LandmarkModel``): ``predict`` moves whole -- the network and the decoding
  of its heatmaps to coordinates and confidences (about 30 small operators that cost ~1 ms in PyTorch).
- Temporal models (1DFormer, the AOHR tracker): ``step`` moves whole -- encoder, temporal head, decoders and the
  decoding to coordinates (extra outputs ``decoded_coords``, ``decoded_conf``), with the state's tensors (a
  fixed-size window cache and a validity mask, no Python-side counters) as extra inputs and outputs -- since the
  head's few hundred small operators cost more dispatch than arithmetic.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from facetrack.errors import ModelError

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "torch", "int8")
# A step graph's outputs also carry the decoded landmarks under these keys (crop pixels, confidences): decoding in
# the graph saves the tracker ~30 small PyTorch operators per frame.
DECODED = ("decoded_coords", "decoded_conf")
STEP_GRAPH = "step+decode"  # the cache key's kind: graphs made before decoding moved in are never reused


class _Predict(nn.Module):
    """``decode(forward(images))`` plus the raw outputs (for the self-check), which is what the exporter traces."""

    def __init__(self, model: nn.Module, out_keys: list[str]) -> None:
        super().__init__()
        self.model, self.out_keys = model, out_keys

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(images)
        coords, conf = self.model.decode(outputs)
        return (coords, conf, *(outputs[k] for k in self.out_keys))


class _Step(nn.Module):
    """A temporal model's ``step`` with its state flattened into named tensors, which is what the exporter traces."""

    def __init__(self, model: nn.Module, state_keys: list[str], out_keys: list[str]) -> None:
        super().__init__()
        self.model, self.state_keys, self.out_keys = model, state_keys, out_keys

    def forward(self, images: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        from facetrack.models.temporal.base import TemporalState

        out, new = self.model.step(images, TemporalState(dict(zip(self.state_keys, state))))
        coords, conf = self.model.decode(out)
        return (*(out[k] for k in self.out_keys), coords, conf, *(new.tensors[k] for k in self.state_keys))


def cache_dir() -> Path:
    """Where exported graphs are kept: ``$FACETRACK_CACHE`` or ``~/.cache/facetrack``, subfolder ``onnx``."""
    root = os.environ.get("FACETRACK_CACHE") or Path.home() / ".cache" / "facetrack"
    return Path(root) / "onnx"


def _weights_key(model: nn.Module, kind: str) -> str:
    digest = hashlib.sha256(f"{kind} {torch.__version__}".encode())
    digest.update(repr(getattr(model, "config", {})).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _export(module: nn.Module, inputs: tuple[Tensor, ...], input_names: list[str], output_names: list[str]) -> bytes:
    """ONNX bytes of ``module`` with every input and output batch-first and the batch dimension dynamic."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")  # shape checks that are constant for a fixed F are harmless ...
        torch.onnx.export(
            module.eval(), inputs, buffer, input_names=input_names, output_names=output_names,
            dynamic_axes={name: {0: "batch"} for name in input_names + output_names}, dynamo=False,
        )
    untraceable = [str(w.message) for w in caught if "NumPy" in str(w.message)]
    if untraceable:  # ... values computed in NumPy are frozen into the graph as constants
        raise RuntimeError(f"{type(module).__name__} computes in NumPy, which a traced graph cannot follow")
    return buffer.getvalue()


def _graph(model: nn.Module, kind: str, export: Callable[[], bytes]) -> bytes:
    path = cache_dir() / f"{_weights_key(model, kind)}.onnx"
    if path.is_file():
        return path.read_bytes()
    # Seconds of work on a model's first use: say so, on one line, rather than stall silently.
    label = str((getattr(model, "card", None) or {}).get("name") or type(model).__name__)
    print(f"facetrack: preparing {label} for onnxruntime, once (cached in {path.parent}) ...", end="",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        graph = export()
    finally:
        print(f" {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    try:  # a cache that cannot be written only costs the export next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(graph)
        tmp.replace(path)
    except OSError as exc:
        log.debug("could not cache the ONNX graph in %s: %s", path.parent, exc)
    return graph


# Extra onnxruntime session config entries for every session made after they are set (diagnostics, e.g.
# {"session.disable_quant_qdq": "1"}: an int8 QDQ graph computed in float, its rounding without the int8 kernels).
SESSION_CONFIG: dict[str, str] = {}


def _session_from(graph: bytes, threads: int | None) -> Any:
    """An onnxruntime CPU session of ``graph`` with facetrack's options."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.log_severity_level = 3
    # No busy-waiting between runs: spinning ORT threads steal the cores from the PyTorch decoding, cropping and
    # validation that follow each call (medians doubled in the tracking loop without this).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _session(model: nn.Module, kind: str, export: Callable[[], bytes], threads: int | None) -> Any:
    try:
        return _session_from(_graph(model, kind, export), threads)
    except ImportError:
        raise
    except Exception as exc:  # exporter and onnxruntime raise many types for an unsupported graph
        raise RuntimeError(f"could not run {type(model).__name__} with onnxruntime: {exc}") from exc


def _graph_predict(session: Any) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """``predict(crops) -> (coords, confidences)`` of a predict graph's session (its first two outputs)."""

    def predict(images: Tensor) -> tuple[Tensor, Tensor]:
        coords, conf = session.run(None, {"images": _array(images)})[:2]
        return torch.from_numpy(coords), torch.from_numpy(conf)

    return predict


def _self_check(name: str, expected: list[Tensor], got: list[Tensor]) -> None:
    """Refuse a graph whose outputs differ from PyTorch's on a probe input (a model the tracer cannot capture)."""
    for a, b in zip(expected, got):
        a = a.detach().float()
        if a.shape != b.shape or not torch.allclose(a, b.float(), rtol=1e-3, atol=1e-3 * (1 + float(a.abs().max()))):
            raise RuntimeError(f"the onnxruntime graph of {name} does not reproduce its PyTorch outputs")


def _probe(size: int) -> Tensor:
    """The fixed input on which a graph must reproduce PyTorch: two random crops (the batch dimension is dynamic)."""
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def _array(x: Tensor) -> np.ndarray:
    x = x.detach().cpu()
    return np.ascontiguousarray(x.numpy() if x.dtype == torch.bool else x.float().numpy())


def onnx_function(module: nn.Module, kind: str, example: Tensor, threads: int | None = 1) -> Callable[[Tensor], Tensor]:
    """``module``'s forward (one batch-first tensor in, one out) as an onnxruntime session, checked against PyTorch
    on ``example``. For the tracker's small helper networks (the face validator): at batch 1 PyTorch's dispatch
    costs more than their arithmetic, and one thread is enough."""
    export = lambda: _export(module, (example,), ["input"], ["output"])  # noqa: E731
    session = _session(module, kind, export, threads)

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {"input": _array(x)})[0])

    with torch.no_grad():
        _self_check(type(module).__name__, [module(example)], [run(example)])
    return run


def onnx_predict(model: nn.Module, threads: int | None = None) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """An onnxruntime function with ``model.predict``'s signature: crops (B, 3, F, F) -> coords, confidences.

    Raises ImportError when onnx/onnxruntime are missing and RuntimeError when the graph cannot be exported,
    loaded, or does not reproduce PyTorch; :func:`predictor_for` turns these into a fallback to PyTorch.
    """
    size = int(model.input_size)
    probe = _probe(size)
    with torch.no_grad():
        raw = model(probe)
        expected = model.decode(raw)
    out_keys = sorted(raw)

    def export() -> bytes:
        return _export(_Predict(model, out_keys), (torch.zeros(1, 3, size, size),), ["images"],
                       ["coords", "confidences", *out_keys])

    session = _session(model, "predict", export, threads)

    def run(images: Tensor) -> list[Tensor]:
        return [torch.from_numpy(r) for r in session.run(None, {"images": _array(images)})]

    predict = _graph_predict(session)

    try:
        got = run(probe)
    except Exception as exc:  # onnxruntime's own errors for inputs the graph did not capture
        raise RuntimeError(f"the onnxruntime graph of {type(model).__name__} does not run: {exc}") from exc
    # Raw outputs must match; decoded coordinates may differ where float noise flips an argmax between two
    # near-equal bins of the probe's (meaningless) heatmaps, so they must agree at the median.
    _self_check(type(model).__name__, [raw[k] for k in out_keys] + [expected[1]], got[2:] + [got[1]])
    if float((got[0] - expected[0]).abs().median()) > 1e-3:
        raise RuntimeError(f"the onnxruntime graph of {type(model).__name__} does not reproduce its PyTorch outputs")
    return predict


def _first_frame_predict(model: Any, step: Callable[[Tensor, Any], tuple[dict[str, Tensor], Any]]
                         ) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """A temporal model's per-frame ``predict`` (what a fresh face and ``detect`` see: an empty history, as its
    ``forward`` does) through its step graph, which decodes in the graph: the refine passes of every track start
    then cost a graph call instead of a PyTorch forward at batch 1 (about half the time)."""

    def predict(images: Tensor) -> tuple[Tensor, Tensor]:
        outputs, _ = step(images, model.init_state(images.shape[0]))
        return outputs["decoded_coords"], outputs["decoded_conf"]

    return predict


def _step_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """(state keys, output keys) of a temporal model's step graph, sorted: the graph's input/output order."""
    size = int(model.input_size)
    example = model.init_state(1)
    with torch.no_grad():
        out_keys = sorted(model.step(torch.zeros(1, 3, size, size), example)[0])
    return sorted(example.tensors), out_keys


def step_feeds(images: Tensor, state: Any) -> dict[str, np.ndarray]:
    """The inputs of a step graph: the crops and the state's tensors, named ``images`` and ``state_<key>``."""
    return {"images": _array(images), **{f"state_{k}": _array(v) for k, v in state.tensors.items()}}


def _session_step(session: Any, state_keys: list[str], out_keys: list[str]
                  ) -> Callable[[Tensor, Any], tuple[dict[str, Tensor], Any]]:
    """``step(images, state) -> (outputs, state)`` of a step graph's session (float or int8)."""
    from facetrack.models.temporal.base import TemporalState

    def step(images: Tensor, state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        if state.batch != images.shape[0]:
            raise ValueError(f"state holds {state.batch} faces but {images.shape[0]} images were given")
        results = [torch.from_numpy(r) for r in session.run(None, step_feeds(images, state))]
        outputs = dict(zip([*out_keys, *DECODED], results[: len(out_keys) + 2]))
        return outputs, TemporalState(dict(zip(state_keys, results[len(out_keys) + 2:])))

    return step


def onnx_step(model: nn.Module, threads: int | None = None) -> Callable[[Tensor, Any], tuple[dict[str, Tensor], Any]]:
    """An onnxruntime function with a temporal model's ``step(images, state)`` signature (CPU tensors).

    Faces of any ages batch together, as in PyTorch: what differs between them is in the state's tensors.
    """
    size = int(model.input_size)
    example = model.init_state(1)
    state_keys, out_keys = _step_names(model)
    names = [f"state_{k}" for k in state_keys]

    def export() -> bytes:
        inputs = (torch.zeros(1, 3, size, size), *(example.tensors[k] for k in state_keys))
        return _export(_Step(model, state_keys, out_keys), inputs, ["images", *names],
                       [*out_keys, *DECODED, *(f"next_{k}" for k in state_keys)])

    step = _session_step(_session(model, STEP_GRAPH, export, threads), state_keys, out_keys)
    probe = _probe(size)
    try:
        with torch.no_grad():
            expected, expected_state = model.step(probe, model.init_state(2))
            expected, expected_state = model.step(probe.flip(-1), expected_state)  # a history, too
            got, got_state = step(probe, model.init_state(2))
            got, got_state = step(probe.flip(-1), got_state)
    except Exception as exc:  # onnxruntime's own errors for inputs the graph did not capture
        raise RuntimeError(f"the onnxruntime graph of {type(model).__name__} does not run: {exc}") from exc
    _self_check(type(model).__name__, [expected[k] for k in out_keys] + [expected_state.tensors[k] for k in state_keys],
                [got[k] for k in out_keys] + [got_state.tensors[k] for k in state_keys])
    return step


@dataclass(frozen=True)
class Predictor:
    """How a ``Landmarker`` runs its model: ``predict(crops) -> (coords, confidences)`` and, for a temporal model,
    ``step(images, state) -> (outputs, state)``; either the model's own methods or onnxruntime sessions exported
    from its weights. The model itself is never changed, so it stays usable (and trainable) as it was."""

    runtime: str  # "onnx" or "torch": what actually runs
    predict: Callable[[Tensor], tuple[Tensor, Tensor]] | None
    step: Callable[[Tensor, Any], tuple[dict[str, Tensor], Any]] | None = None


def predictor_for(model: Any, runtime: str = "auto", device: str | torch.device = "cpu",
                  int8_graph: Path | None = None) -> Predictor:
    """The ``Predictor`` of an eval-mode inference copy: a per-frame model's ``predict`` or a temporal model's
    ``step`` through onnxruntime when ``runtime`` allows it.

    ``runtime``: "onnx" (fail if impossible), "torch" (the model's own methods), "auto" (onnx on the CPU when
    available, else torch), "int8" (the static int8 graph ``int8_graph`` of a per-frame model's predict or a temporal model's step, made by
    ``facetrack.models.quantize``). The onnx functions have no gradients.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    temporal = callable(getattr(model, "init_state", None)) and callable(getattr(model, "step", None))
    if runtime == "int8":
        if int8_graph is None:
            raise ModelError("--runtime int8 needs a model whose card names an int8 graph (facetrack quantize)")
        session = _session_from(Path(int8_graph).read_bytes(), None)
        if temporal:
            return Predictor("int8", getattr(model, "predict", None), _session_step(session, *_step_names(model)))
        return Predictor("int8", _graph_predict(session))
    own = Predictor("torch", getattr(model, "predict", None), model.step if temporal else None)
    stand_in = any(name in vars(model) for name in ("predict", "step"))  # replaced on the instance (tests): keep it
    if runtime == "torch" or stand_in or not (temporal or callable(getattr(model, "decode", None))):
        return own
    if torch.device(device).type != "cpu":
        if runtime == "onnx":
            raise ValueError("the onnx runtime is for CPU inference; use runtime='torch' on other devices")
        return own
    try:
        if temporal:
            step = onnx_step(model)
            return Predictor("onnx", _first_frame_predict(model, step), step)
        return Predictor("onnx", onnx_predict(model))
    except (ImportError, RuntimeError) as exc:
        if runtime == "onnx":
            raise
        log.info("onnxruntime unavailable for this model (%s); running it with PyTorch", exc)
        return own
