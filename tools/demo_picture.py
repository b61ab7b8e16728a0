"""Make README's demo picture: evenly spaced frames of a ``facetrack demo``/``track --render`` overlay, tiled.

    facetrack demo --out facetrack_demo && python tools/demo_picture.py facetrack_demo/overlay.mp4 docs/demo.jpg
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def montage(video: Path, count: int = 6, columns: int = 3, width: int = 960) -> np.ndarray:
    """``count`` frames spread over the video, ``columns`` per row, the whole picture ``width`` pixels wide."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if len(frames) < count:
        raise SystemExit(f"{video}: {len(frames)} frames, need at least {count}")
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    tile_w = width // columns
    tile_h = round(picks[0].shape[0] * tile_w / picks[0].shape[1])
    tiles = [cv2.resize(f, (tile_w, tile_h), interpolation=cv2.INTER_AREA) for f in picks]
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, count, columns)]
    return np.vstack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=6)
    args = parser.parse_args()
    cv2.imwrite(str(args.out), montage(args.video, args.count), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
