"""prefetch: same items in the same order, errors where they happened, nothing left running."""
import threading

import pytest

from facetracks.pipeline.prefetch import prefetch


def test_yields_everything_in_order_reading_ahead_at_most_depth_items():
    """The source records how far ahead of the consumer each item is read; the consumer takes each
    item only once the source has got `depth` items ahead (so read-ahead is exercised, by events,
    not by sleeping)."""
    depth, n = 4, 100
    cond = threading.Condition()
    state = {"produced": 0, "consumed": 0, "lead": 0}

    def source():
        for i in range(n):
            with cond:
                state["lead"] = max(state["lead"], i - state["consumed"])
                state["produced"] = i + 1
                cond.notify_all()
            yield i

    got = []
    for x in prefetch(source(), depth=depth):
        with cond:
            state["consumed"] += 1
            assert cond.wait_for(lambda: state["produced"] >= min(state["consumed"] + depth, n), timeout=60), \
                "the source was not read ahead"
        got.append(x)
    assert got == list(range(n))
    # taken: consumed (+1 on its way to the consumer); queued: depth; the source's own item
    assert depth - 1 <= state["lead"] <= depth + 1


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


def test_decoding_reads_ahead_a_whole_lookahead_within_a_memory_bound():
    """The follow loop takes a whole lookahead at once: `fast` (24 frames) gets 24 frames decoded
    ahead at 640x480, `accurate` (8) its 8, and a 4K video no more than the 8 it always had."""
    from facetracks.pipeline.annotate import PREFETCH_FRAMES, prefetch_depth
    from facetracks.pipeline.follow import FollowParams
    from facetracks.pipeline.profiles import get_profile
    fast, accurate = (FollowParams(**get_profile(p).follow) for p in ("fast", "accurate"))
    assert fast.lookahead == 24 and accurate.lookahead == 8
    assert prefetch_depth(fast, 640, 480) == 24 and prefetch_depth(accurate, 640, 480) == 8
    assert prefetch_depth(fast, 3840, 2160) == PREFETCH_FRAMES == 8
    assert prefetch_depth(None, 640, 480) == 8
