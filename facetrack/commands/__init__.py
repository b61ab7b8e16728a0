"""Sub-commands of the ``facetrack`` CLI, one module each (see facetrack/cli.py)."""

# ``--runtime`` choices of detect/track; the same names as facetrack.models.onnx_runtime.RUNTIMES (tested), kept
# here so that the CLI parses arguments without importing torch.
RUNTIMES = ("auto", "onnx", "torch")
