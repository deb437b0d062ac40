"""Threads that each run torch on one core: on a CPU, a batch of faces is split between them.

Why: the networks here are small and their batches in video are tens of crops; torch's own
intra-op threads split each convolution of such a batch with more overhead than work (2 cores,
one `accurate` run: 1.94 cores busy for 193 fps on the bundled sample). Whole faces handed to
one thread per core, each running its convolutions single-threaded, keep the cores busier with
less waste: 217 fps at 1.65 cores busy there; `fast` 511 against 427 fps.

`torch.set_num_threads(1)` inside a thread sets that thread's OpenMP and MKL threads, but also
the count threads started later begin with; `pool` puts that count back once its threads run.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def pool(n: int) -> ThreadPoolExecutor:
    """The process's pool of `n` threads, each running torch single-threaded (made once)."""
    with _lock:
        if n not in _pools:
            before = torch.get_num_threads()
            started = threading.Barrier(n)

            def one_thread() -> None:
                torch.get_num_threads()    # torch's per-thread set-up first: it would reset the count later
                torch.set_num_threads(1)

            ex = ThreadPoolExecutor(n, thread_name_prefix="torch1", initializer=one_thread)
            for f in [ex.submit(started.wait) for _ in range(n)]:    # all n threads up, each set
                f.result()
            torch.set_num_threads(before)      # for threads started from now on, as it was
            _pools[n] = ex
        return _pools[n]
