"""The landmark network replayed as CUDA graphs: one launch per forward pass, not one per layer.

A GPU actor's forward passes are small (tens to hundreds of 112 px crops) and the network has
dozens of layers, so launching its kernels one by one from Python costs more than running them,
and more again when other threads of the actor want the GIL between launches. A CUDA graph
captured once per batch-size bucket (powers of two; a batch is padded up to its bucket, the
padding's outputs dropped) replays them all in one call. Each bucket's capture is checked
against the eager model on random input; any failure or difference turns graphs off for good
and the eager model runs, so this can only cost a capture, never a wrong point.
`FACETRACKS_CUDA_GRAPHS=0` turns them off.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import torch
from torch import nn

T = TypeVar("T")
SMALLEST, LARGEST = 16, 1024        # buckets; larger batches run in LARGEST-sized pieces
ENV = "FACETRACKS_CUDA_GRAPHS"


def wanted(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get(ENV, "1") != "0"


def capture(run: Callable[[], T], device: torch.device, pool=None) -> tuple["torch.cuda.CUDAGraph", T]:
    """`run` captured as a CUDA graph, after two runs on a side stream outside the capture
    (cuDNN picks its kernels, caches fill, tensors reach the device); its outputs are the graph's,
    rewritten by each replay. `pool`: share another graph's memory (graphs replayed one at a time)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        out = run()
    return graph, out


@dataclass
class GraphedNet:
    model: nn.Module
    input_shape: tuple[int, int, int]           # (1, S, S)
    dtype: torch.dtype
    device: torch.device
    broken: str | None = None                   # why graphs were turned off, if they were
    _graphs: dict = field(default_factory=dict, repr=False)
    _pool: object = field(default=None, repr=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.broken is not None:
            return self.model(x)
        if len(x) > LARGEST:
            return torch.cat([self(x[k:k + LARGEST]) for k in range(0, len(x), LARGEST)])
        size = max(SMALLEST, 1 << (len(x) - 1).bit_length())
        g = self._graphs.get(size) or self._capture(size)
        if g is None:
            return self.model(x)
        graph, xin, yout = g
        xin[:len(x)].copy_(x)
        graph.replay()
        return yout[:len(x)].clone()

    def _capture(self, size: int):
        try:
            xin = torch.zeros((size, *self.input_shape), dtype=self.dtype, device=self.device)
            xin = xin.contiguous(memory_format=torch.channels_last)
            graph, yout = capture(lambda: self.model(xin), self.device, self._pool)
            self._pool = graph.pool()
            probe = torch.rand((size, *self.input_shape), device=self.device).to(self.dtype)
            xin.copy_(probe)
            graph.replay()
            eager = self.model(probe.contiguous(memory_format=torch.channels_last))
            diff = float((yout.float() - eager.float()).abs().max())
            if not diff <= 1e-2:
                raise RuntimeError(f"graph replay differs from the eager model by {diff}")
        except Exception as e:  # noqa: BLE001 - any failure: eager from now on, and say why
            self.broken = f"{type(e).__name__}: {e}"[:300]
            self._graphs.clear()
            return None
        self._graphs[size] = (graph, xin, yout)
        return self._graphs[size]
