"""One face filling a large photo: boxes found, time and peak memory of the default face detector, with the
coarse-to-fine bounded search and with the old single full-resolution pass (``--single-pass``):
``python benchmarks/large_photo.py [--sizes 2000x2400,3024x4032,6000x8000]``. Each size runs in a fresh process
(peak RSS = ru_maxrss, which includes the photo itself: 144 MB at 8000x6000)."""
from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import resource, sys, time
import cv2
from skimage import data
import facetrack.tracking.detectors.base as base
from facetrack.tracking.detectors import build_detector
w, h, single = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if single:
    base.COARSE_SIDE, base.MAX_PASS_PIXELS = 10**9, 10**12
head = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[20:260, 120:320]
photo = cv2.resize(head, (w, h), interpolation=cv2.INTER_CUBIC)
detector = build_detector("retinaface")
t = time.perf_counter()
found = detector.detect(photo)
print(len(found), round(time.perf_counter() - t, 2), round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2000x2400,3024x4032,6000x8000")
    args = parser.parse_args()
    print("| photo (w x h) | search | boxes | time (s) | peak RSS (MB) |\n|---|---|---|---|---|")
    for size in args.sizes.split(","):
        w, h = size.split("x")
        for single in ("0", "1"):
            out = subprocess.run([sys.executable, "-c", CHILD, w, h, single], capture_output=True, text=True)
            boxes, seconds, rss = (out.stdout.split() + ["?", "?", "?"])[:3]
            label = "single full-resolution pass (before)" if single == "1" else "coarse to fine, bounded"
            print(f"| {w} x {h} | {label} | {boxes} | {seconds} | {rss} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
