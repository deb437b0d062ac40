"""A whole landmark pass on the GPU replayed as one CUDA graph: crops, network input, contrast,
mirror and network, from the frames already on the device.

`GraphedNet` (graphed.py) makes the network one launch; the rest of a pass was still ~65 small
tensor calls (the warp's 45, the input's scaling, the contrast, the mirror), each handing the GIL
back and forth with the stream threads of a GPU actor (docs/bench/gil_calls.py: ~3 ms a call
beside busy threads). Here the pass is captured once per bucket: faces N and distinct frames F
rounded up to powers of two (at least SMALLEST and FRAME_MIN), the frame size and whether the
mirror is read. The inputs are fixed buffers: the frames (shared by every graph of one F bucket
and size), each face's source grid (`crop_torch.source_grid`) and frame index; padding faces
read frame 0 and are dropped. A call is then four copies in, one replay and two read-backs.

Each capture is checked against the eager pass on random frames and faces; any failure or difference
turns these graphs off for good (`broken` says why) and the eager pass runs, as it does for a call
too large for the buckets or with frames of several sizes. `FACETRACKS_CUDA_GRAPHS=0` turns them
off (graphed.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .crop_torch import grid_dtype, source_grid
from .graphed import capture

SMALLEST, LARGEST = 16, 1024      # faces a call, as buckets (larger calls run eagerly)
FRAME_MIN, FRAME_MAX = 8, 512     # distinct frames a call, as buckets

# (frames (F, H, W) uint8, grids (N, 2, 2, S), frame indices (N,), mirror) -> (network output
# (N or 2N, 68, 2) float32, contrast (N,)), all on the device
PassFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor]]


def _check_same(graph_out: tuple[torch.Tensor, torch.Tensor], eager: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Raise unless a replay's points (crop units) and contrast (grey levels / 255) match the eager pass's."""
    diff = max(float((graph_out[0] - eager[0]).abs().max()), float((graph_out[1] - eager[1]).abs().max()) / 255)
    if not diff <= 1e-2:
        raise RuntimeError(f"the graph's pass differs from the eager one by {diff}")


def _bucket(n: int, least: int) -> int:
    return max(least, 1 << (n - 1).bit_length())


@dataclass
class GraphedPass:
    fn: PassFn
    size: int                          # crop side (the model's input size)
    broken: str | None = None          # why graphs were turned off, if they were
    eager: bool = False                # True: the same buffers and buckets, run without capturing (the CPU's tests)
    _graphs: dict = field(default_factory=dict, repr=False)
    _frames: dict = field(default_factory=dict, repr=False)
    _pool: object = field(default=None, repr=False)

    def __call__(self, frames: torch.Tensor, index: np.ndarray, mats: np.ndarray,
                 mirror: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """The pass for faces `mats` (N, 2, 3) on `frames` (F, H, W) at `index` (N,): network
        output (N, or 2N with the mirror, 68, 2) and contrast (N,) on the CPU; None when this
        call runs eagerly instead."""
        n, (f, h, w) = len(mats), frames.shape
        if self.broken is not None or n == 0 or n > LARGEST or f > FRAME_MAX:
            return None
        nb, fb = _bucket(n, SMALLEST), _bucket(f, FRAME_MIN)
        key = (nb, fb, h, w, mirror)
        g = self._graphs.get(key) or self._make(key, frames.device)
        if g is None:
            return None
        graph, buf, grid, idx, out = g
        it = grid.dtype
        buf[:f].copy_(frames)
        grid[:n].copy_(torch.from_numpy(source_grid(mats, self.size)).to(it))
        grid[n:].zero_()
        idx[:n].copy_(torch.from_numpy(np.asarray(index, np.int64)).to(it))
        idx[n:].zero_()
        if graph is None:                  # eager, same buffers (no capture)
            out = self.fn(buf, grid, idx, mirror)
        else:
            graph.replay()
        y, contrast = out
        y = y.cpu().numpy()
        y = np.concatenate([y[:n], y[nb:nb + n]]) if mirror else y[:n]
        return y, contrast[:n].cpu().numpy()

    def _make(self, key: tuple, dev: torch.device):
        nb, fb, h, w, mirror = key
        try:
            if (fb, h, w) not in self._frames:
                self._frames[fb, h, w] = torch.zeros((fb, h, w), dtype=torch.uint8, device=dev)
            buf = self._frames[fb, h, w]
            it = grid_dtype(buf)
            grid = torch.zeros((nb, 2, 2, self.size), dtype=it, device=dev)
            idx = torch.zeros(nb, dtype=it, device=dev)
            if self.eager:
                self._graphs[key] = (None, buf, grid, idx, None)
                return self._graphs[key]
            graph, out = capture(lambda: self.fn(buf, grid, idx, mirror), dev, self._pool)
            self._pool = graph.pool()
            # checked on random frames and faces in them against the eager pass
            buf.copy_(torch.randint(0, 256, buf.shape, dtype=torch.uint8, device=dev))
            scale = self.size / (min(h, w) / 2)            # the middle of each frame, a little turned
            turn = np.linspace(-0.3, 0.3, nb)
            mats = np.zeros((nb, 2, 3))
            mats[:, 0, 0], mats[:, 0, 1] = scale * np.cos(turn), scale * np.sin(turn)
            mats[:, 1, 0], mats[:, 1, 1] = -scale * np.sin(turn), scale * np.cos(turn)
            mats[:, :, 2] = self.size / 2 - (mats[:, :, :2] @ np.array([w / 2, h / 2]))
            grid.copy_(torch.from_numpy(source_grid(mats, self.size)).to(it))
            idx.copy_(torch.arange(nb, device=dev, dtype=it) % fb)
            graph.replay()
            _check_same(out, self.fn(buf, grid, idx, mirror))
        except Exception as e:  # noqa: BLE001 - any failure: eager from now on, and say why
            self.broken = f"{type(e).__name__}: {e}"[:300]
            self._graphs.clear()
            return None
        self._graphs[key] = (graph, buf, grid, idx, out)
        return self._graphs[key]
