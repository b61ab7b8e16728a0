"""Sub-commands of the ``facetrack`` CLI, one module each (see facetrack/cli.py)."""

# ``--runtime`` choices of detect/track; the same names as facetrack.models.onnx_runtime.RUNTIMES (tested), kept
# here so that the CLI parses arguments without importing torch.
RUNTIMES = ("auto", "onnx", "torch", "int8")

# The packaged defaults, named in --help without importing torch.
from facetrack.packaged import DEFAULT_MODEL, DEFAULT_TRACKER  # noqa: E402

DEFAULT_DETECTOR_HELP = "default: retinaface (RetinaFace-MobileNet0.25), mtcnn without onnxruntime"
__all__ = ["DEFAULT_DETECTOR_HELP", "DEFAULT_MODEL", "DEFAULT_TRACKER", "RUNTIMES"]
