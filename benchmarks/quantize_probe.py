"""Does int8 quantisation in onnxruntime speed up the landmark step, and at what accuracy? A probe, not a shipped path.

    python benchmarks/quantize_probe.py --models aohr-68 1dformer-68            # dynamic int8, both graphs
    python benchmarks/quantize_probe.py --static --models aohr-68 --faces 200   # static int8 + held-out NME

The ONNX graph ``facetrack`` runs for each packaged model (a per-frame model's predict, a temporal model's step;
exported and cached on first use) is quantised and timed against itself at batch 1 (median of 40 runs, 2 threads,
no spinning). Dynamic: ``quantize_dynamic`` (int8 weights, activations quantised at run time), on a random input.
``--static`` (per-frame models): ``quantize_static`` in QDQ format, convolutions only, per-channel int8 weights and
uint8 activations calibrated on ``--faces`` crops of *training* faces (``shared300w --split train``), then the
held-out faces' NME (single pass on the ground-truth box) with each graph. Why: issue "Landmarks you can trust"
asks for a landmark step of about 3.5 ms per face.
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


def static_probe(name: str, root: Path, faces: int, threads: int) -> None:
    """Static QDQ int8 of a per-frame model's predict graph: time and held-out NME against the fp32 graph."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from facetrack.data.transforms import box_from_landmarks
    from facetrack.evaluation import load_shared300w
    from facetrack.landmarker import Landmarker
    from facetrack.metrics.nme import nme, normaliser
    from facetrack.models.onnx_runtime import Predictor, _weights_key, cache_dir

    landmarker = Landmarker(name, runtime="onnx", refine=0)
    graph = cache_dir() / f"{_weights_key(landmarker.model, 'predict')}.onnx"
    crops = [landmarker.crops(s.load_image(), box_from_landmarks(s.landmarks)[None])[0].numpy()
             for s in load_shared300w(root, "train")[:faces]]

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            crop = next(self.items, None)
            return None if crop is None else {"images": crop}

    held_out = load_shared300w(root, "val")
    with tempfile.TemporaryDirectory() as tmp:
        quantised = Path(tmp) / "int8.onnx"
        quantize_static(str(graph), str(quantised), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=["Conv"], activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        for label, path in (("fp32", graph), ("int8 static", quantised)):
            ms, _ = time_graph(path, threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            def predict(images: torch.Tensor, session: object = session) -> tuple[torch.Tensor, torch.Tensor]:
                coords, conf = session.run(None, {"images": images.numpy()})[:2]
                return torch.from_numpy(coords), torch.from_numpy(conf)

            landmarker.predictor = Predictor("onnx", predict)
            errors = []
            for sample in held_out:
                points, _ = landmarker.predict_boxes(sample.load_image(), box_from_landmarks(sample.landmarks)[None])
                norm = normaliser(sample.landmarks[None], "ibug68", "ocular")
                errors.append(float(nme(points, sample.landmarks[None], norm)[0]))
            print(f"| {name} | {label} | {ms:.2f} | {100 * np.mean(errors):.3f} |")


def main() -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from facetrack.landmarker import Landmarker
    from facetrack.models.onnx_runtime import _weights_key, cache_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["aohr-68", "1dformer-68"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--static", action="store_true", help="static int8 of per-frame models, with held-out NME")
    parser.add_argument("--faces", type=int, default=200, help="training faces to calibrate on (--static)")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/300w"))
    args = parser.parse_args()
    if args.static:
        print("| model | graph | ms per face (graph) | held-out NME % (one pass, GT box) |")
        print("|---|---|---|---|")
        for name in args.models:
            static_probe(name, args.root, args.faces, args.threads)
        return
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
