"""Does onnxruntime's dynamic int8 quantisation speed up the landmark step? A probe, not a shipped path.

    python benchmarks/quantize_probe.py --models aohr-68 1dformer-68

For each packaged model, the ONNX graph ``facetrack`` runs (a per-frame model's predict, a temporal model's step;
exported and cached on first use) is quantised with ``onnxruntime.quantization.quantize_dynamic`` (int8 weights,
activations quantised at run time), and both graphs are timed at batch 1 on the same random input (median of 40
runs, 2 threads, no spinning), with the largest change of the first output (crop-pixel coordinates for a per-frame
model). Why: issue "Landmarks you can trust" asks for a landmark step of about 3.5 ms per face.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _feeds(session) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for item in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in item.shape]
        if item.type == "tensor(float)":
            feeds[item.name] = rng.random(shape, dtype=np.float32)
        else:
            feeds[item.name] = np.zeros(shape, {"tensor(bool)": np.bool_, "tensor(int64)": np.int64}[item.type])
    return feeds


def time_graph(path: Path, threads: int) -> tuple[float, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = _feeds(session)
    for _ in range(5):
        session.run(None, feeds)
    times = []
    for _ in range(40):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times)), session.run(None, feeds)[0]


def main() -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from facetrack.landmarker import Landmarker
    from facetrack.models.onnx_runtime import _weights_key, cache_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["aohr-68", "1dformer-68"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("| model | graph | fp32 ms | int8 (dynamic) ms | max change of the first output |")
    print("|---|---|---|---|---|")
    for name in args.models:
        landmarker = Landmarker(name, runtime="onnx")  # exports and caches the graph facetrack runs
        kind = "step" if landmarker.predictor.step is not None else "predict"
        graph = cache_dir() / f"{_weights_key(landmarker.model, kind)}.onnx"
        with tempfile.TemporaryDirectory() as tmp:
            quantised = Path(tmp) / "int8.onnx"
            quantize_dynamic(str(graph), str(quantised), weight_type=QuantType.QInt8)
            fp32, out32 = time_graph(graph, args.threads)
            int8, out8 = time_graph(quantised, args.threads)
        print(f"| {name} | {kind} | {fp32:.2f} | {int8:.2f} | {float(np.abs(out32 - out8).max()):.3f} |")


if __name__ == "__main__":
    main()
