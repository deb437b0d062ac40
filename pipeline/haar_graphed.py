"""The torch cascade's scan replayed as CUDA graphs: one launch per detector call, not hundreds.

Evaluated op by op (`TorchHaarDetector.survivors`), a 4-frame scan is ~400 small tensor calls and
a host sync after every group of stages. On a GPU actor each call hands the GIL back and forth
with the stream threads: on the H100 a call that took 18 ms alone took 43-98 ms inside the job.
`survivors_static` gives every tensor a size fixed by the batch's shape (each compaction keeps a
fixed number of slots), so the whole scan, from the integral images to the last stage, can be
captured once per frame size and batch-size bucket (powers of two up to `MAX_BATCH`, padded with
blank frames, which no window survives) and replayed in one call, read back in one.

Only a shape met CAPTURE_AFTER times is captured, and at most MAX_GRAPHS of them (each holds its
outputs and shares one memory pool): video frames come in one size and a few batch sizes, while a
folder of photos has a size per photo, which are scanned op by op.

Each capture is checked against the op-by-op scan on the frames it was captured with; any
failure or difference turns graphs off for good (`broken` says why) and the op-by-op scan runs,
as it does for a batch whose survivors outgrow their slots: this can cost a capture, never a box.
Opt-in: `FACETRACKS_CASCADE_GRAPHS=1` (haar_torch.py says why); `FACETRACKS_CUDA_GRAPHS=0` turns every graph off.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from facetracks.models.graphed import capture

CAPTURE_AFTER = 2      # calls of one shape before it is captured
MAX_GRAPHS = 32        # shapes captured at most (a video: 5 batch buckets of its frames, a few of the windows
                       # around lost faces, `detect.detect_near`); others run op by op


def read_static(out: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """A fixed-size scan's answer (window ids, sums, live slots, overflowed) on the CPU as the
    op-by-op scan gives it, or None where a compaction ran out of slots."""
    idx, s, live, over = (t.cpu() for t in out)
    if bool(over):
        return None
    live = live.numpy()
    return idx.numpy()[live], s.numpy()[live]


@dataclass
class GraphedCascade:
    detector: object                  # a TorchHaarDetector on CUDA: its survivors_static and survivors
    broken: str | None = None         # why graphs were turned off, if they were
    _graphs: dict = field(default_factory=dict, repr=False)
    _seen: dict = field(default_factory=dict, repr=False)
    _pool: object = field(default=None, repr=False)

    def __call__(self, img: torch.Tensor, plan) -> tuple[torch.Tensor, ...] | None:
        """The scan of `img` (B, H, W) uint8 on the device, as `survivors_static` returns it
        (valid until the next call), or None when this shape runs op by op."""
        if self.broken is not None:
            return None
        b, h, w = img.shape
        key = (1 << (b - 1).bit_length(), h, w, id(plan))      # plans are cached: an id names one
        g = self._graphs.get(key)
        if g is None:
            self._seen[key] = seen = self._seen.get(key, 0) + 1
            if seen < CAPTURE_AFTER or len(self._graphs) >= MAX_GRAPHS:
                return None
            g = self._capture(key, img, plan)
            if g is None:
                return None
        graph, frames, out = g
        frames[:b].copy_(img)
        frames[b:].zero_()
        graph.replay()
        return out

    def _capture(self, key: tuple, img: torch.Tensor, plan):
        det, dev = self.detector, img.device
        try:
            frames = torch.zeros((key[0], *img.shape[1:]), dtype=torch.uint8, device=dev)
            frames[:len(img)].copy_(img)
            graph, out = capture(lambda: det.survivors_static(frames, plan), dev, self._pool)
            self._pool = graph.pool()
            graph.replay()
            got, ref = read_static(out), det.survivors(frames, plan)
            if got is not None and not (np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])):
                raise RuntimeError("the graph's survivors differ from the op-by-op scan's")
        except Exception as e:  # noqa: BLE001 - any failure: op by op from now on, and say why
            self.broken = f"{type(e).__name__}: {e}"[:300]
            self._graphs.clear()
            return None
        self._graphs[key] = (graph, frames, out)
        return self._graphs[key]
