"""Sub-commands of the ``facetrack`` CLI, one module each (see facetrack/cli.py)."""
