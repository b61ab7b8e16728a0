"""``python -m facetrack``: the same command line as ``facetrack``."""
import sys

from facetrack.cli import main

sys.exit(main())
