"""Reading ahead on a second thread changes when frames are decoded, never which frames come out or in what order."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from facetrack.io.prefetch import prefetch


def test_items_in_order() -> None:
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))
    assert list(prefetch(iter([]))) == []


def test_reads_ahead_on_another_thread() -> None:
    readers: list[str] = []

    def items() -> Iterator[int]:
        for i in range(3):
            readers.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items())) == [0, 1, 2]
    assert set(readers) == {"facetrack-prefetch"}


def test_reader_error_raised_where_it_happened() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("damaged packet")

    got = []
    with pytest.raises(OSError, match="damaged packet"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_leaving_early_stops_the_reader_and_closes_its_source() -> None:
    closed = threading.Event()
    produced = []

    def items() -> Iterator[int]:
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = prefetch(items(), depth=2)
    assert [next(stream), next(stream)] == [0, 1]
    stream.close()  # what a `break` out of a for loop does
    assert closed.is_set()  # the reader finished before close() returned: the source may now be released
    assert len(produced) <= 6  # it never ran far ahead
    assert not any(t.name == "facetrack-prefetch" and t.is_alive() for t in threading.enumerate())


def test_slow_consumer_keeps_at_most_depth_ahead() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(20):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    time.sleep(0.2)
    assert len(produced) <= 4  # the item handed out, two queued, one waiting for room
    assert list(stream) == list(range(1, 20))


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        list(prefetch(iter([1]), depth=0))
