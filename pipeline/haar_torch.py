"""OpenCV's Haar face cascade, evaluated in torch on a whole batch of frames at once.

`HaarDetector` (pipeline/detect.py) runs OpenCV's `detectMultiScale3` one frame at a time on the
CPU. On a GPU that is the bottleneck: the network waits while the CPU scans windows. This module
evaluates the *same* cascade (`haarcascade_frontalface_default.xml`, parsed by `haar_cascade.py`)
the way OpenCV 4.x's `cascadedetect.cpp` does, but as tensor operations over every window of
every scale of every frame of a batch, so that one call keeps a GPU busy:

- the same downscale to `detect_side` (INTER_AREA) and the same scale pyramid, with OpenCV's
  resizes reproduced bit for bit (`haar_resize.py`); the scales, window grid and packed layout
  are the scan plan (`haar_plan.py`);
- integral images per scale; the variance normalisation of `HaarEvaluator::setWindow` (normrect
  inset by 1 px, `nf = area*sqsum - sum^2` from exact int64 sums where OpenCV relies on unsigned
  wrap-around, factor `float(1/sqrt(nf))`, windows with a standard deviation under ~10 grey
  levels rejected); feature values in float32 exactly as `OptFeature::calc` rounds them, stage
  sums in float64 and OpenCV's stage thresholds (`stageThreshold - 1e-5f`);
- the first stage runs densely on every window of a scale (strided slices of its integral image,
  no gathers); OpenCV's scan skips the next window of a row after a first-stage rejection, which
  makes the set of windows evaluated at all depend on their neighbours, so that is reproduced
  too (a prefix maximum per row, no sequential loop);
- the survivors are then compacted after every stage, so the work shrinks stage by stage (from
  ~400k windows a 640x360 frame to ~70k after stage 1 and a few hundred at the end); the later
  stages gather from all scales' integral images packed into one buffer of one row stride, so a
  feature's corner offsets are the same for every window of every scale and frame;
- the survivors of a frame are grouped on the CPU exactly like `groupRectangles` with reject
  levels (`haar_group.py`; the score is the best final-stage sum of a group), clipped to the
  image like `clipObjects` and mapped back to the input's pixels.

Checked in tests/test_haar_torch.py: the resizes equal OpenCV's bit for bit, the raw windows that
pass all 25 stages and their final-stage sums are identical to `detectMultiScale3` with
minNeighbors=0, and the boxes match `HaarDetector`'s. On a CPU it is ~4x slower than OpenCV
(one thread each, a 640x480 frame at scale 1.1: ~470 ms against ~115 ms), so the CPU profiles keep
`HaarDetector`; this is for batches of frames already on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .detect import _cascade_path, min_window, scan_scale
from .haar_cascade import Cascade, load_cascade
from .haar_group import group_rectangles
from .haar_plan import _Plan, _plan
from .haar_resize import resize_area

GROUP_EPS = 0.2
_GATHER_LIMIT = 1 << 22          # elements of one gather index tensor (memory per chunk)
_GATHER_LIMIT_CUDA = 1 << 26     # on a GPU: fewer, larger chunks (each chunk is a dozen kernel launches)
MAX_BATCH = 16                   # frames scanned together (~250 MB of device memory each at 640x480, scale step 1.1)


@dataclass
class TorchHaarDetector:
    """Drop-in for `HaarDetector` (same fields, same N x 5 x, y, w, h, score contract) that
    evaluates the cascade with torch on `device`, one batch of equal-size frames per call."""
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face: int = 24
    detect_side: int = 640
    cascade: str = "haarcascade_frontalface_default.xml"
    device: str | torch.device = "cpu"
    _c: Cascade = field(init=False, repr=False)
    _t: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self._c = load_cascade(_cascade_path(self.cascade))
        c, dev = self._c, self.device
        self._t = {
            "rects": torch.from_numpy(c.rects).to(dev),
            "weights": torch.from_numpy(c.weights).to(dev),
            "threshold": torch.from_numpy(c.threshold).to(dev),
            "left": torch.from_numpy(c.left).to(dev),
            "right": torch.from_numpy(c.right).to(dev),
        }
        self._corner_cache: dict[int, torch.Tensor] = {}
        self._plan_cache: dict[int, tuple] = {}

    def detect(self, gray: np.ndarray) -> np.ndarray:
        return self.detect_batch([gray])[0]

    @torch.inference_mode()
    def detect_batch(self, grays: list[np.ndarray] | torch.Tensor) -> list[np.ndarray]:
        """Boxes for each of a batch of equal-size uint8 gray frames ((B, H, W) tensor, possibly
        already on the device, or a list of arrays); each result as `HaarDetector.detect`."""
        frames = self._as_tensor(grays)
        b, h, w = frames.shape
        if b == 0:
            return []
        f, size = scan_scale((h, w), self.detect_side)
        img = frames if f == 1.0 else resize_area(frames, *size)
        min_side = min_window(self.min_face, f)
        raw = [r for k in range(0, b, MAX_BATCH) for r in self.candidates(img[k:k + MAX_BATCH], min_side)]
        out = []
        for rects, weights in raw:
            boxes, scores = group_rectangles(rects, weights, self.min_neighbors, GROUP_EPS, size)
            if len(boxes) == 0:
                out.append(np.zeros((0, 5), np.float32))
                continue
            res = np.hstack([boxes.astype(np.float32) / f, scores.astype(np.float32)[:, None]])
            out.append(res[np.argsort(-res[:, 4])])
        return out

    def _as_tensor(self, grays: list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        if isinstance(grays, torch.Tensor):
            t = grays
        else:
            if len(grays) == 0:
                return torch.zeros((0, 1, 1), dtype=torch.uint8, device=self.device)
            t = torch.from_numpy(np.stack([np.asarray(g) for g in grays]))
        if t.dtype != torch.uint8 or t.dim() != 3:
            raise ValueError(f"expected (B, H, W) uint8 frames, got {tuple(t.shape)} {t.dtype}")
        return t.to(self.device)

    def candidates(self, img: torch.Tensor, min_side: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every window that passes all stages, per frame: (N, 4) int rects and (N,) final-stage
        sums: what `detectMultiScale3(..., minNeighbors=0, outputRejectLevels=True)` returns."""
        b, h, w = img.shape
        c = self._c
        plan = _plan((w, h), c.window, float(self.scale_factor), int(min_side))
        if plan is None:
            return [(np.zeros((0, 4), np.int32), np.zeros(0, np.float64)) for _ in range(b)]
        dev = self.device
        buf, vnf, valid = self._integrals(img, plan)
        offs, row_start, _ = self._plan_tensors(plan)
        flat, corners = buf.reshape(-1), self._corners(plan.stride)
        # the first stage on every window of every scale and frame: one gather per chunk of windows
        every = (torch.arange(b, device=dev)[:, None] * plan.frame_elems + offs[None]).reshape(-1)
        s0 = self._stage_sum(flat, corners, every, vnf.reshape(-1), 0, c.stage_ends[0]).reshape(b, -1)
        del every
        # OpenCV's scan skips the window after a first-stage reject; then compact the survivors
        fail = valid & (s0 < float(c.stage_threshold[0]))
        keep = valid & ~fail & _evaluated(fail, row_start)
        idx = keep.reshape(-1).nonzero().squeeze(1)
        base = (idx // plan.n_windows) * plan.frame_elems + offs[idx % plan.n_windows]
        v, s = vnf.reshape(-1)[idx], s0.reshape(-1)[idx]
        for si in range(1, len(c.stage_ends)):
            s = self._stage_sum(flat, corners, base, v, c.stage_ends[si - 1], c.stage_ends[si])
            ok = (s >= float(c.stage_threshold[si])).nonzero().squeeze(1)
            idx, base, v, s = idx[ok], base[ok], v[ok], s[ok]
        idx, s = idx.cpu().numpy(), s.cpu().numpy()
        frame, win = idx // plan.n_windows, idx % plan.n_windows
        return [(plan.rect[win[frame == i]], s[frame == i]) for i in range(b)]

    def _integrals(self, img: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every scale at once: resize (`resize_linear_exact`'s arithmetic through the plan's
        tables), integral images of the pixels and their squares (cumulative sums down the packed
        buffer, less the sum above each block), and for every window OpenCV's variance factor and
        whether setWindow accepts the window. Returns the packed int32 integral images,
        (B, frame_elems), which every stage gathers from, and the windows' factors and validity,
        (B, n_windows)."""
        b = img.shape[0]
        x0, x1, a0, a1, y0, y1, b0, b1, layer_of, block_of = self._plan_tensors(plan)[2]
        n = len(plan.layers)
        src = img.to(torch.int32)
        cols = (src.index_select(2, x0.reshape(-1)) * a0.reshape(-1)
                + src.index_select(2, x1.reshape(-1)) * a1.reshape(-1)).view(b, img.shape[1], n, plan.stride)
        x = ((cols[:, y0, layer_of] * b0[:, None] + cols[:, y1, layer_of] * b1[:, None] + (1 << 15)) >> 16)
        x = x.clamp_(0, 255).to(torch.int64)                                        # (B, rows, stride)

        def integral(v: torch.Tensor) -> torch.Tensor:
            v = v.cumsum(2).cumsum(1)
            return v - v[:, block_of]                   # each block's sums start at its zero row

        s, q = integral(x), integral(x * x)
        win_w, win_h = self._c.window
        nx0, ny0, nw, nh = 1, 1, win_w - 2, win_h - 2        # the normalisation rect, inset by 1 px
        at = plan.stride
        corner = (ny0 * at + nx0, ny0 * at + nx0 + nw, (ny0 + nh) * at + nx0, (ny0 + nh) * at + nx0 + nw)
        offs = self._plan_tensors(plan)[0]

        def box(v: torch.Tensor) -> torch.Tensor:
            flat = v.reshape(b, -1)
            tl, tr, bl, br = (flat[:, offs + k] for k in corner)
            return (br - bl - tr + tl).double()

        area = float(nw * nh)
        vs, vq = box(s), box(q)
        nf = area * vq - vs * vs
        pos = nf > 0
        vnf = (1.0 / torch.sqrt(torch.where(pos, nf, torch.ones_like(nf)))).float()
        valid = pos & (area * vnf.double() < 0.1)
        return s.to(torch.int32).reshape(b, -1), vnf, valid

    def _plan_tensors(self, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """The plan's window offsets, row starts and resize tables on the device, sent once per plan."""
        key = id(plan)              # plans are cached (`_plan`), so a plan's id names it while it lives
        if key not in self._plan_cache:
            on = lambda a: torch.from_numpy(a).to(self.device)
            self._plan_cache[key] = (plan, on(plan.win_offset), on(plan.row_start),
                                     tuple(on(a) for a in plan.resize))
        return self._plan_cache[key][1:]

    def _corners(self, stride: int) -> torch.Tensor:
        """(T, 3, 4) flat offsets of each stump's rect corners for a buffer row stride."""
        if stride not in self._corner_cache:
            r = self._t["rects"]
            x, y, w, h = r.unbind(-1)
            self._corner_cache[stride] = torch.stack(
                [y * stride + x, y * stride + x + w, (y + h) * stride + x, (y + h) * stride + x + w], -1)
        return self._corner_cache[stride]

    def _stage_sum(self, flat: torch.Tensor, corners: torch.Tensor, base: torch.Tensor, vnf: torch.Tensor,
                   t0: int, t1: int) -> torch.Tensor:
        """Sum of stumps t0..t1 for each window (float64, as predictOrderedStump's `tmp`).

        OpenCV adds the leaves one by one; here they are summed in any order, which gives the same
        double: leaves are float32 of magnitude >= 5.6e-5 and a stage's leaves add up to <= 207 in
        absolute value, so every partial sum needs < 47 bits and is exact in float64.
        """
        t = self._t
        corners = corners[t0:t1]                                       # (F, 3, 4)
        wts = t["weights"][t0:t1]
        thr, left, right = t["threshold"][t0:t1], t["left"][t0:t1], t["right"][t0:t1]
        n, nf = base.shape[0], t1 - t0
        out = torch.empty(n, dtype=torch.float64, device=flat.device)
        chunk = max(1, (_GATHER_LIMIT_CUDA if flat.is_cuda else _GATHER_LIMIT) // (nf * 12))
        for a in range(0, n, chunk):
            bb = base[a:a + chunk]
            v = flat.index_select(0, (bb[:, None] + corners.reshape(1, -1)).reshape(-1)).view(len(bb), nf, 3, 4)
            rs = (v[..., 0] - v[..., 1] - v[..., 2] + v[..., 3]).float()  # rect sums, exact
            ret = wts[:, 0] * rs[..., 0] + wts[:, 1] * rs[..., 1]
            ret = ret + wts[:, 2] * rs[..., 2]
            val = ret * vnf[a:a + chunk, None]
            leaf = torch.where(val < thr, left, right).double()
            out[a:a + chunk] = leaf.sum(1)
        return out


def _evaluated(fail: torch.Tensor, row_start: torch.Tensor) -> torch.Tensor:
    """Which windows OpenCV's scan evaluates: after a first-stage reject it skips the next window
    of the row, so within a run of rejects every other window is skipped and the window after
    an odd-length run too. fail: (B, Nw) bool; row_start: (Nw,) first window of each row."""
    n = fail.shape[1]
    k = torch.arange(n, device=fail.device)
    marks = torch.where(fail, torch.full_like(k, -1), k).expand_as(fail)
    last = torch.cummax(marks, dim=1).values
    prev = torch.cat([torch.full_like(last[:, :1], -1), last[:, :-1]], 1)
    prev = torch.maximum(prev, (row_start - 1)[None])
    return (k[None] - prev - 1) % 2 == 0
