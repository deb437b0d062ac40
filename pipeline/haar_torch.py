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
- the survivors are then compacted after every stage (on CUDA after every group of stages,
  `_stage_groups`: a third of the tensor calls), so the work shrinks stage by stage (from
  ~400k windows a 640x360 frame to ~70k after stage 1 and a few hundred at the end); the later
  stages gather from all scales' integral images packed into one buffer of one row stride, so a
  feature's corner offsets are the same for every window of every scale and frame;
- on CUDA, opt-in (`FACETRACKS_CASCADE_GRAPHS=1`: measured slower on the H100), the whole scan
  is replayed as one CUDA graph (`haar_graphed.py`): `survivors_static` keeps a fixed number of
  slots at each compaction (`capacities`, ~3.5x the stumps evaluated, no host sync), and a batch
  that outgrows them is scanned again op by op;
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

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from facetracks.models.graphed import wanted as graphs_wanted

from .detect import _cascade_path, min_window, scan_scale
from .haar_graphed import GraphedCascade, read_static
from .haar_cascade import Cascade, load_cascade
from .haar_group import group_rectangles
from .haar_plan import _Plan, _plan
from .haar_resize import resize_area

GROUP_EPS = 0.2
_GATHER_LIMIT = 1 << 22          # elements of one gather index tensor (memory per chunk)
_GATHER_LIMIT_CUDA = 1 << 26     # on a GPU: fewer, larger chunks (each chunk is a dozen kernel launches)
MAX_BATCH = 16                   # frames scanned together (~250 MB of device memory each at 640x480, scale step 1.1)
# The scan as one CUDA graph is opt-in: its fixed slots evaluate ~3.5x the stumps of the compacted
# scan, and on the H100 that cost more than the ~400 launches it saves: 4 frames took 40 ms against
# 21 (`accurate`) and 9.2 against 5.8 (`fast`) alone, and in the Ray job (4 actors, `accurate`)
# a detector call took 112 ms against 45 op by op (docs/bench/gpu_check_h100.json,
# bench_gpu_h100_graphs.json, bench_gpu_h100_nographs.json)
CASCADE_GRAPHS_ENV = "FACETRACKS_CASCADE_GRAPHS"
CAPACITY_FLOOR = 1024            # fewest slots a frame a compaction of `survivors_static` keeps (~20 faces)


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
    group_stages: bool | None = None   # stages evaluated in groups (`_stage_groups`); None: on CUDA only
    static: bool | None = None         # fixed-size scans (`survivors_static`), as CUDA graphs on CUDA
                                       # (`haar_graphed.py`); None: only where CASCADE_GRAPHS_ENV is 1 and
                                       # graphs are wanted: on the H100 the graph was the slower (below)
    _c: Cascade = field(init=False, repr=False)
    _t: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        if self.group_stages is None:
            self.group_stages = self.device.type == "cuda"
        if self.static is None:
            self.static = os.environ.get(CASCADE_GRAPHS_ENV) == "1" and graphs_wanted(self.device)
        self._graphed = GraphedCascade(self) if self.static and self.device.type == "cuda" else None
        self.static_overflows = 0      # scans whose survivors outgrew their slots (done again by `survivors`)
        self._c = load_cascade(_cascade_path(self.cascade))
        c, dev = self._c, self.device
        self._t = {
            "rects": torch.from_numpy(c.rects).to(dev),
            "weights": torch.from_numpy(c.weights).to(dev),
            "threshold": torch.from_numpy(c.threshold).to(dev),
            "left": torch.from_numpy(c.left).to(dev),
            "right": torch.from_numpy(c.right).to(dev),
        }
        self._group_cache: dict[tuple[int, bool], list[_StageGroup]] = {}
        self._plan_cache: dict[int, tuple] = {}

    @property
    def graphs_broken(self) -> str | None:
        """Why the scan's CUDA graphs were turned off, if they were (`haar_graphed.py`)."""
        return self._graphed.broken if self._graphed is not None else None

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
        plan = _plan((w, h), self._c.window, float(self.scale_factor), int(min_side))
        if plan is None:
            return [(np.zeros((0, 4), np.int32), np.zeros(0, np.float64)) for _ in range(b)]
        found = None
        if self.static:
            out = self._graphed(img, plan) if self._graphed is not None else self.survivors_static(img, plan)
            found = read_static(out) if out is not None else None
            self.static_overflows += out is not None and found is None
        idx, s = found if found is not None else self.survivors(img, plan)
        frame, win = idx // plan.n_windows, idx % plan.n_windows
        return [(plan.rect[win[frame == i]], s[frame == i]) for i in range(b)]

    def _first_stage(self, img: torch.Tensor, plan: _Plan, static: bool = False) -> "_Scan":
        """The first stage on every window of every scale and frame, and which windows go on.
        `static`: the stages one by one after it (in a graph more groups cost nothing, and each
        compacts the work)."""
        b = img.shape[0]
        buf, vnf, valid = self._integrals(img, plan)
        offs, row_start, _ = self._plan_tensors(plan)
        flat, groups = buf.reshape(-1), self._groups(plan.stride, self.group_stages and not static)
        every = (torch.arange(b, device=self.device)[:, None] * plan.frame_elems + offs[None]).reshape(-1).int()
        s0 = self._group_sums(flat, groups[0], every, vnf.reshape(-1))[:, 0].reshape(b, -1)
        del every
        # OpenCV's scan skips the window after a first-stage reject
        fail = valid & (s0 < groups[0].stage_threshold[0])
        keep = valid & ~fail & _evaluated(fail, row_start)
        return _Scan(plan, flat, groups, keep.reshape(-1), vnf.reshape(-1), s0.reshape(-1), offs)

    def survivors(self, img: torch.Tensor, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
        """Flat window ids (frame * n_windows + window) that pass every stage, and their
        final-stage sums; the survivors compacted after every group of stages."""
        scan = self._first_stage(img, plan)
        flat, groups = scan.flat, scan.groups
        alive, v, s = scan.start(scan.keep.nonzero().squeeze(1))
        for g in groups[1:]:
            sums = self._group_sums(flat, g, alive[:, 1], v)
            ok = (sums >= g.stage_threshold).all(1).nonzero().squeeze(1)
            alive, v, s = alive[ok], v[ok], sums[ok, -1]
        return alive[:, 0].cpu().numpy(), s.cpu().numpy()

    def survivors_static(self, img: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, ...]:
        """`survivors` with every tensor's size fixed by the batch's shape alone, so that the whole
        scan can be captured as one CUDA graph (`haar_graphed.py`): each compaction keeps a fixed
        number of slots (`capacities`, `nonzero_static`), the live ones flagged. Returns (slots,)
        window ids and sums, which slots are live, and whether any compaction had more survivors
        than slots (then its answer is incomplete, and `read_static` says so). No host sync."""
        scan = self._first_stage(img, plan, static=True)
        flat, groups, keep = scan.flat, scan.groups, scan.keep
        caps = capacities(keep.numel(), len(groups), img.shape[0])
        count = keep.sum()
        over = count > caps[0]
        live = torch.arange(caps[0], device=self.device) < count
        alive, v, s = scan.start(torch.nonzero_static(keep, size=caps[0], fill_value=0).squeeze(1))
        for g, cap in zip(groups[1:], caps[1:]):
            sums = self._group_sums(flat, g, alive[:, 1], v)
            ok = (sums >= g.stage_threshold).all(1) & live
            count = ok.sum()
            over = over | (count > cap)
            live = torch.arange(cap, device=self.device) < count
            at = torch.nonzero_static(ok, size=cap, fill_value=0).squeeze(1)
            alive, v, s = alive[at], v[at], sums[at, -1]
        return alive[:, 0], s, live, over

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

    def _groups(self, stride: int, grouped: bool) -> list["_StageGroup"]:
        """The cascade's stages, in `_stage_groups` or one by one, on the device, for a buffer row
        stride (cached)."""
        if (stride, grouped) not in self._group_cache:
            c, t = self._c, self._t
            x, y, w, h = t["rects"].unbind(-1)
            corners = torch.stack([y * stride + x, y * stride + x + w, (y + h) * stride + x,
                                   (y + h) * stride + x + w], -1)                         # (T, 3, 4)
            starts = (0,) + c.stage_ends[:-1]
            out, signs = [], torch.tensor([1, -1, -1, 1], dtype=torch.int32, device=self.device)
            n = len(c.stage_ends)
            for s0, s1 in _stage_groups(n) if grouped else [(k, k + 1) for k in range(n)]:
                t0, t1 = starts[s0], c.stage_ends[s1 - 1]
                member = torch.zeros((t1 - t0, s1 - s0), dtype=torch.float64)
                for k in range(s0, s1):
                    member[starts[k] - t0:c.stage_ends[k] - t0, k - s0] = 1.0
                out.append(_StageGroup(
                    corners=corners[t0:t1].reshape(-1).int(), weights=t["weights"][t0:t1],
                    threshold=t["threshold"][t0:t1], left=t["left"][t0:t1], right=t["right"][t0:t1],
                    member=member.to(self.device),
                    stage_threshold=torch.from_numpy(c.stage_threshold[s0:s1].astype(np.float64)).to(self.device),
                    signs=signs))
            self._group_cache[stride, grouped] = out
        return self._group_cache[stride, grouped]

    def _group_sums(self, flat: torch.Tensor, g: "_StageGroup", base: torch.Tensor, vnf: torch.Tensor) -> torch.Tensor:
        """(N, stages of `g`): each stage's sum of stumps for each window (float64, as
        predictOrderedStump's `tmp`), whether or not the window passed the stages before it.

        OpenCV adds the leaves one by one; here they are summed in any order (a product with a 0/1
        membership matrix), which gives the same double: leaves are float32 of magnitude >= 5.6e-5
        and a stage's leaves add up to <= 207 in absolute value, so every partial sum needs < 47
        bits and is exact in float64. Each feature's value is rounded as `OptFeature::calc` rounds
        it: exact integer rect sums, float32 products, the first two rects added, then the third.
        """
        n, nf = base.shape[0], len(g.threshold)
        out = []
        chunk = max(1, (_GATHER_LIMIT_CUDA if flat.is_cuda else _GATHER_LIMIT) // (nf * 12))
        for a in range(0, n, chunk):
            bb = base[a:a + chunk]
            v = flat.index_select(0, (bb[:, None] + g.corners).reshape(-1)).view(len(bb), nf, 3, 4)
            p = (v * g.signs).sum(-1, dtype=torch.int32).float() * g.weights     # (n, F, 3)
            val = (p[..., 0] + p[..., 1] + p[..., 2]) * vnf[a:a + chunk, None]
            out.append(torch.where(val < g.threshold, g.left, g.right).double() @ g.member)
        if not out:
            return torch.zeros((0, len(g.stage_threshold)), dtype=torch.float64, device=flat.device)
        return out[0] if len(out) == 1 else torch.cat(out)


@dataclass(frozen=True)
class _Scan:
    """A batch after the first stage: what the later stages start from."""
    plan: _Plan
    flat: torch.Tensor              # the packed integral images, flat (int32)
    groups: list                    # the stages as `_StageGroup`s, the first stage first
    keep: torch.Tensor              # (B x Nw,) bool: passed the first stage and evaluated at all
    vnf: torch.Tensor               # (B x Nw,) variance factors
    s0: torch.Tensor                # (B x Nw,) first-stage sums
    offs: torch.Tensor              # (Nw,) each window's offset in a frame's buffer

    def start(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The windows at `pos` (flat window ids) as (N, 2) int32 window id and buffer offset (int32
        gathers: half the index bytes), with their variance factors and first-stage sums."""
        p = self.plan
        base = (pos // p.n_windows) * p.frame_elems + self.offs[pos % p.n_windows]
        return torch.stack([pos, base], 1).int(), self.vnf[pos], self.s0[pos]


@dataclass(frozen=True)
class _StageGroup:
    """Consecutive stages evaluated together: one gather and one compaction for all of them."""
    corners: torch.Tensor           # (F*12,) flat offsets of each stump's 3 rects' 4 corners
    weights: torch.Tensor           # (F, 3) float32
    threshold: torch.Tensor         # (F,) stump thresholds
    left: torch.Tensor              # (F,)
    right: torch.Tensor             # (F,)
    member: torch.Tensor            # (F, stages) float64: 1 where the stump belongs to the stage
    stage_threshold: torch.Tensor   # (stages,) float64
    signs: torch.Tensor             # (4,) int32: a rect's sum from its integral image's corners


def _stage_groups(n: int) -> list[tuple[int, int]]:
    """Stage ranges [s0, s1) evaluated together (`group_stages`): the first five alone (they drop
    most windows: 1.77 M of a 640x480 batch of 4 frames to 54 k), then 2, 3, 4 and the rest
    together. Why: each group is ~20 small torch calls and a host sync (the compaction), and on a
    GPU actor a thread making hundreds of small torch calls stalls beside the busy stream threads,
    as the GIL is handed back and forth at each. Grouping cuts a 4-frame call from ~1,300 torch
    calls to ~440 for ~15 % more stumps evaluated (windows that fail early in a group are
    evaluated to its end): worth it where the calls cost more than the arithmetic, not on a CPU."""
    ends, at = [], 0
    for size in (1, 1, 1, 1, 1, 2, 3, 4):
        if at >= n:
            break
        at = min(n, at + size)
        ends.append(at)
    if at < n:
        ends.append(n)
    return list(zip([0] + ends[:-1], ends))


def capacities(windows: int, stages: int, frames: int) -> list[int]:
    """Slots kept by each compaction of `survivors_static` (one a stage): half the windows after
    the first stage, 0.7 as many after each next one, at least CAPACITY_FLOOR a frame. What the
    shared clips need, at 640 and at 320 px (the fewer windows, the more of them survive): 7-27 %
    pass the first stage, 2.5-5 % four, 0.1-0.2 % all 25 (a few hundred windows a frame; a
    face gives about 50). A batch with more falls back to `survivors`; these slots cost about
    3.5x the stumps the compacted scan evaluates."""
    return [min(windows, max(CAPACITY_FLOOR * frames, math.ceil(windows * 0.5 * 0.7 ** k))) for k in range(stages)]


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
