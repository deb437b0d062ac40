"""prefetch: same items in the same order, errors where they happened, nothing left running."""
import threading

import pytest

from facetracks.pipeline.prefetch import prefetch


def test_yields_everything_in_order_and_bounded():
    seen = []

    def source():
        for i in range(100):
            seen.append(i)
            yield i

    it = prefetch(source(), depth=4)
    assert next(it) == 0
    threading.Event().wait(0.2)
    assert len(seen) <= 1 + 4 + 1          # one taken, four queued, one waiting to be put
    assert [0] + list(it) == list(range(100))


def test_errors_reach_the_consumer_after_the_items_before_them():
    def source():
        yield 1
        yield 2
        raise ValueError("bad frame 3")

    got = []
    with pytest.raises(ValueError, match="bad frame 3"):
        for x in prefetch(source(), depth=8):
            got.append(x)
    assert got == [1, 2]


def test_stopping_early_closes_the_source_and_the_thread():
    closed = threading.Event()

    def source():
        try:
            for i in range(10_000):
                yield i
        finally:
            closed.set()

    before = threading.active_count()
    for x in prefetch(source(), depth=2):
        if x == 3:
            break
    assert closed.wait(2)
    assert threading.active_count() == before


def test_a_source_that_fails_to_start_raises_instead_of_hanging():
    class Bad:
        def __iter__(self):
            raise OSError("cannot open")

    with pytest.raises(OSError, match="cannot open"):
        list(prefetch(Bad(), depth=2))
