"""Decode ahead: a video's next frames are read on a second thread while the current one is processed.

Decoding is a fixed cost per frame (1-3 ms for 640x360-960x540 H.264 here, far more for 1080p) that OpenCV runs
without Python's GIL, so on a machine with two or more cores it overlaps with the landmark step instead of adding
to it. The frames come out in the same order and are the same arrays; only when they are decoded changes.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    """An exception raised by the reader, handed to the consumer at the place where it happened."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` in order, read up to ``depth`` ahead on a background thread.

    An exception of the reader is raised here when the consumer reaches it. Closing the generator (or leaving a
    ``for`` loop early) stops the reader and waits for it, so that the source can be closed safely afterwards.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    ahead: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        """Wait for room unless told to stop; False when stopped."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer, not swallowed
            put(_Failure(exc))
        finally:  # a generator's own clean-up runs here, on the thread that iterated it
            close = getattr(items, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=read, name="facetrack-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item = ahead.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while reader.is_alive():  # free the reader if it waits for room, then let it finish its current read
            try:
                ahead.get_nowait()
            except queue.Empty:
                pass
            reader.join(timeout=0.05)
