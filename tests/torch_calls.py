"""Counting the tensor operations a piece of code dispatches: on a GPU actor each one hands the
GIL back and forth with the stream threads, so the GPU paths keep their number small and flat."""
from torch.utils._python_dispatch import TorchDispatchMode


class TorchCalls(TorchDispatchMode):
    """`with TorchCalls() as c: ...`; then `c.calls` is how many operations ran inside."""
    calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))
