"""OpenCV's Haar face cascade, evaluated in torch on a whole batch of frames at once.

`HaarDetector` (pipeline/detect.py) runs OpenCV's `detectMultiScale3` one frame at a time on the
CPU. On a GPU that is the bottleneck: the network waits while the CPU scans windows. This module
evaluates the *same* cascade (`haarcascade_frontalface_default.xml`, parsed here) the way OpenCV
4.x's `cascadedetect.cpp` does, but as tensor operations over every window of every scale of
every frame of a batch, so that one call keeps a GPU busy:

- the same downscale to `detect_side` (INTER_AREA) and the same scale pyramid: scales are
  `scale_factor**k` stored as float32, each scale's image is the frame resized to
  `round(size / scale)` with OpenCV's bit-exact fixed-point bilinear resize (reproduced bit for
  bit, see `resize_linear_exact`), windows step 2 px below scale 2 and 1 px from scale 2 up;
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
  levels (the score is the best final-stage sum of a group), clipped to the image like
  `clipObjects` and mapped back to the input's pixels.

Checked in tests/test_haar_torch.py: the resizes equal OpenCV's bit for bit, the raw windows that
pass all 25 stages and their final-stage sums are identical to `detectMultiScale3` with
minNeighbors=0, and the boxes match `HaarDetector`'s. On a CPU it is ~4x slower than OpenCV
(one thread each, a 640x480 frame at scale 1.1: ~470 ms against ~115 ms), so the CPU profiles keep
`HaarDetector`; this is for batches of frames already on a GPU.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from .detect import _cascade_path

GROUP_EPS = 0.2
_GATHER_LIMIT = 1 << 22          # elements of one gather index tensor (memory per chunk)
_GATHER_LIMIT_CUDA = 1 << 26     # on a GPU: fewer, larger chunks (each chunk is a dozen kernel launches)
MAX_BATCH = 16                   # frames scanned together (~250 MB of device memory each at 640x480, scale step 1.1)


# ---------------------------------------------------------------------------------------------
# The cascade


@dataclass(frozen=True)
class Cascade:
    """A stump-based Haar cascade as flat arrays, one row per stump (weak classifier)."""
    window: tuple[int, int]            # (width, height) of the training window
    stage_ends: tuple[int, ...]        # stump index after each stage's last stump
    stage_threshold: np.ndarray        # (S,) float32, already minus OpenCV's 1e-5 epsilon
    rects: np.ndarray                  # (T, 3, 4) int64 x, y, w, h (unused third rect: zeros)
    weights: np.ndarray                # (T, 3) float32 (unused third rect: 0)
    threshold: np.ndarray              # (T,) float32 stump thresholds
    left: np.ndarray                   # (T,) float32 leaf taken when value < threshold
    right: np.ndarray                  # (T,) float32


@lru_cache(maxsize=4)
def load_cascade(path: str) -> Cascade:
    """Parse an OpenCV (new format, stump-based, upright Haar) cascade XML once."""
    root = ET.parse(path).getroot().find("cascade")
    if root is None or root.findtext("featureType", "").strip() != "HAAR":
        raise ValueError(f"{path}: not a new-format Haar cascade")
    win = (int(root.findtext("width")), int(root.findtext("height")))
    feats = []
    for f in root.find("features"):
        if int((f.findtext("tilted") or "0").strip() or 0):
            raise ValueError(f"{path}: tilted features are not supported")
        rs = [[float(v) for v in r.text.split()] for r in f.find("rects")]
        feats.append(rs)
    stage_thr, ends, fidx, thr, left, right = [], [], [], [], [], []
    for st in root.find("stages"):
        # OpenCV: stage.threshold = (float)stageThreshold - THRESHOLD_EPS (1e-5f), in float32
        stage_thr.append(np.float32(float(st.findtext("stageThreshold"))) - np.float32(1e-5))
        for wc in st.find("weakClassifiers"):
            nodes = wc.findtext("internalNodes").split()
            leaves = wc.findtext("leafValues").split()
            if len(nodes) != 4 or len(leaves) != 2:
                raise ValueError(f"{path}: only stump cascades are supported")
            fidx.append(int(nodes[2]))
            thr.append(float(nodes[3]))
            left.append(float(leaves[0]))
            right.append(float(leaves[1]))
        ends.append(len(fidx))
    rects = np.zeros((len(fidx), 3, 4), np.int64)
    weights = np.zeros((len(fidx), 3), np.float32)
    for t, fi in enumerate(fidx):
        for k, r in enumerate(feats[fi]):
            rects[t, k] = r[:4]
            weights[t, k] = r[4]
    return Cascade(win, tuple(ends), np.array(stage_thr, np.float32), rects, weights,
                   np.array(thr, np.float32), np.array(left, np.float32), np.array(right, np.float32))


# ---------------------------------------------------------------------------------------------
# OpenCV's resizes, bit-exact, on (B, H, W) uint8 tensors


def _round_half_even(x: np.ndarray) -> np.ndarray:
    return np.rint(x).astype(np.int64)


def resize_linear_exact(img: torch.Tensor, dw: int, dh: int) -> torch.Tensor:
    """cv2.resize(..., INTER_LINEAR_EXACT) for uint8, bit for bit: what the cascade's setImage
    uses for every scale (plain INTER_LINEAR differs by 1 grey level in ~5 % of pixels, enough
    to change which windows pass). Coefficients are 8-bit fixed point, rounded to nearest from
    float64; columns then rows, each pixel (h0*b0 + h1*b1 + 2^15) >> 16."""
    b, h, w = img.shape
    if (dw, dh) == (w, h):
        return img
    x0, x1, a0, a1 = _on(_exact_tab, w, dw, img.device)
    y0, y1, b0, b1 = _on(_exact_tab, h, dh, img.device)
    src = img.to(torch.int32)
    rows = src.index_select(2, x0) * a0 + src.index_select(2, x1) * a1
    out = (rows.index_select(1, y0) * b0[:, None] + rows.index_select(1, y1) * b1[:, None]
           + (1 << 15)) >> 16
    return out.clamp_(0, 255).to(torch.uint8)


@lru_cache(maxsize=1024)
def _on(table, src: int, dst: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """A resize table's arrays as tensors on `device`, made once: a GPU call then copies nothing."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in table(src, dst))


@lru_cache(maxsize=512)
def _exact_tab(src: int, dst: int):
    scale = 1.0 / (dst / src)
    d = np.arange(dst, dtype=np.float64)
    f = scale * (d + 0.5) - 0.5
    i = np.floor(f).astype(np.int64)
    c1 = _round_half_even((f - i) * 256)
    inside = (i >= 0) & (i < src - 1)
    o0 = np.where(inside, i, np.where(i < 0, 0, src - 1))
    c1 = np.where(inside, c1, 0)
    c0 = 256 - c1
    return o0, np.minimum(o0 + 1, src - 1), c0.astype(np.int32), c1.astype(np.int32)


def resize_area(img: torch.Tensor, dw: int, dh: int) -> torch.Tensor:
    """cv2.resize(..., INTER_AREA) for uint8 downscaling, bit for bit (HaarDetector's downscale).

    Integer factors average k x k blocks with OpenCV's rounding ((sum + 2) >> 2 for 2x2, its SIMD
    path; round-half-even of sum / k^2 otherwise); other factors weight each source pixel by
    its overlap as `resizeArea_` does: float32 weights, columns then rows accumulated in
    OpenCV's order in float32, rounded to nearest even.
    """
    b, h, w = img.shape
    if (dw, dh) == (w, h):
        return img
    sx, sy = w / dw, h / dh
    ix, iy = int(round(sx)), int(round(sy))
    if abs(sx - ix) < 2.2e-16 and abs(sy - iy) < 2.2e-16:
        blocks = img[:, :dh * iy, :dw * ix].to(torch.int32).reshape(b, dh, iy, dw, ix).sum((2, 4))
        area = ix * iy
        if area == 4:
            return ((blocks + 2) >> 2).to(torch.uint8)
        return torch.round(blocks.float() * (1.0 / area)).clamp_(0, 255).to(torch.uint8)
    dev = img.device
    xi, xa = _on(_area_taps, w, dw, dev)
    yi, ya = _on(_area_taps, h, dh, dev)
    src = img.float()
    rows = torch.zeros((b, h, dw), dtype=torch.float32, device=dev)
    for k in range(xi.shape[1]):
        rows = rows + src.index_select(2, xi[:, k]) * xa[:, k]
    out = torch.zeros((b, dh, dw), dtype=torch.float32, device=dev)
    for k in range(yi.shape[1]):
        out = out + rows.index_select(1, yi[:, k]) * ya[:, k, None]
    return torch.round(out).clamp_(0, 255).to(torch.uint8)


@lru_cache(maxsize=64)
def _area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's computeResizeAreaTab as (dst, K) source indices and float32 weights in
    accumulation order (padding taps have weight 0, which leaves a float sum unchanged)."""
    scale = src / dst
    taps: list[list[tuple[int, np.float32]]] = []
    for d in range(dst):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src - f1)
        s1, s2 = int(np.ceil(f1)), int(np.floor(f2))
        s2 = min(s2, src - 1)
        s1 = min(s1, s2)
        t = []
        if s1 - f1 > 1e-3:
            t.append((s1 - 1, np.float32((s1 - f1) / cell)))
        t += [(s, np.float32(1.0 / cell)) for s in range(s1, s2)]
        if f2 - s2 > 1e-3:
            t.append((s2, np.float32(min(min(f2 - s2, 1.0), cell) / cell)))
        taps.append(t)
    k = max(len(t) for t in taps)
    idx = np.zeros((dst, k), np.int64)
    alpha = np.zeros((dst, k), np.float32)
    for d, t in enumerate(taps):
        for j, (s, a) in enumerate(t):
            idx[d, j], alpha[d, j] = s, a
    return idx, alpha


# ---------------------------------------------------------------------------------------------
# Scan plan: scales, packing, window grid (depends only on image size and parameters)


@dataclass(frozen=True)
class _Layer:
    scale: np.float32
    size: tuple[int, int]          # (w, h) of the resized image
    step: int                      # window step in that image
    origin: int                    # flat offset of its integral image in the packed frame buffer
    grid: tuple[int, int]          # (nx, ny) window positions
    first: int                     # index of its first window in the frame's window list


@dataclass(frozen=True)
class _Plan:
    """Every scale's integral image sits in one buffer per frame, the scales' blocks one under the
    other (each `lh + 1` rows of `stride` = the largest width + 1), so that a window's corners are
    at the same offsets at every scale and every stage gathers from one flat tensor, and so that
    all scales are resized, summed and normalised by a few tensor operations, not a few per scale."""
    layers: tuple[_Layer, ...]
    stride: int                    # row stride of the packed buffer
    rows: int                      # rows of the packed buffer (every block's, its zero row included)
    frame_elems: int               # elements of one frame's packed buffer
    n_windows: int
    win_offset: np.ndarray         # (Nw,) flat offset of each window's top-left in the frame buffer
    row_start: np.ndarray          # (Nw,) index of the first window of the same row
    rect: np.ndarray               # (Nw, 4) int32 x, y, w, h the window reports (OpenCV's rounding)
    resize: tuple[np.ndarray, ...] # INTER_LINEAR_EXACT tables into the packed layout (see `_resize_tables`)


def opencv_scales(size: tuple[int, int], window: tuple[int, int], scale_factor: float,
                  min_size: tuple[int, int]) -> list[np.float32]:
    """The scales `detectMultiScaleNoGrouping` scans (maxSize = image size), as float32."""
    w, h = size
    out, factor = [], 1.0
    while True:
        ww, wh = int(np.rint(window[0] * factor)), int(np.rint(window[1] * factor))
        if ww > w or wh > h:
            break
        if ww >= min_size[0] and wh >= min_size[1]:
            out.append(np.float32(factor))
        factor *= scale_factor
    return out


@lru_cache(maxsize=64)
def _plan(size: tuple[int, int], window: tuple[int, int], scale_factor: float, min_side: int) -> _Plan | None:
    w, h = size
    scales = opencv_scales(size, window, scale_factor, (min_side, min_side))
    if not scales:
        return None
    sizes = [(int(np.rint(np.float32(w) / s)), int(np.rint(np.float32(h) / s))) for s in scales]
    stride = max(lw for lw, _ in sizes) + 1
    layers, top, first = [], 0, 0
    offs, starts, rects = [], [], []
    for s, (lw, lh) in zip(scales, sizes):
        iw, ih = lw + 1, lh + 1                     # integral image size
        step = 1 if s >= 2 else 2
        xs = np.arange(0, max(iw - window[0], 0), step)
        ys = np.arange(0, max(ih - window[1], 0), step)
        origin = top * stride
        layers.append(_Layer(s, (lw, lh), step, origin, (len(xs), len(ys)), first))
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        offs.append((origin + gy * stride + gx).ravel())
        starts.append((first + np.arange(len(ys))[:, None] * len(xs) + np.zeros_like(gx)).ravel())
        win = (int(np.rint(np.float32(window[0]) * s)), int(np.rint(np.float32(window[1]) * s)))
        rx = np.rint(gx.astype(np.float32) * s).astype(np.int32).ravel()
        ry = np.rint(gy.astype(np.float32) * s).astype(np.int32).ravel()
        rects.append(np.stack([rx, ry, np.full_like(rx, win[0]), np.full_like(rx, win[1])], 1))
        first += len(xs) * len(ys)
        top += ih
    return _Plan(tuple(layers), stride, top, top * stride, first, np.concatenate(offs).astype(np.int64),
                 np.concatenate(starts).astype(np.int64), np.concatenate(rects),
                 _resize_tables(size, tuple(layers), stride, top))


def _resize_tables(size: tuple[int, int], layers: tuple[_Layer, ...], stride: int, rows: int
                   ) -> tuple[np.ndarray, ...]:
    """`resize_linear_exact` to every layer at once, into the packed layout with a zero first row
    and column per block: columns (L, stride) source index and weight pairs per layer, rows (R,)
    source index and weight pairs and each packed row's layer and first row. Pads get weight 0
    (the result there is (0 + 2^15) >> 16 = 0)."""
    w, h = size
    n = len(layers)
    x0, x1 = np.zeros((n, stride), np.int64), np.zeros((n, stride), np.int64)
    a0, a1 = np.zeros((n, stride), np.int32), np.zeros((n, stride), np.int32)
    y0, y1 = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    b0, b1 = np.zeros(rows, np.int32), np.zeros(rows, np.int32)
    layer_of, block_of = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    for k, L in enumerate(layers):
        lw, lh = L.size
        top = L.origin // stride
        x0[k, 1:lw + 1], x1[k, 1:lw + 1], a0[k, 1:lw + 1], a1[k, 1:lw + 1] = _exact_tab(w, lw)
        r = slice(top + 1, top + 1 + lh)
        y0[r], y1[r], b0[r], b1[r] = _exact_tab(h, lh)
        layer_of[top:top + lh + 1], block_of[top:top + lh + 1] = k, top
    return x0, x1, a0, a1, y0, y1, b0, b1, layer_of, block_of


# ---------------------------------------------------------------------------------------------
# The detector


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
        f = min(1.0, self.detect_side / max(h, w))
        size = (w, h) if f == 1.0 else (round(w * f), round(h * f))
        img = frames if f == 1.0 else resize_area(frames, *size)
        min_side = max(8, round(self.min_face * f))
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


# ---------------------------------------------------------------------------------------------
# Grouping (OpenCV's groupRectangles with reject levels), on the CPU: a few hundred rects


def group_rectangles(rects: np.ndarray, weights: np.ndarray, threshold: int, eps: float,
                     size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """cv::groupRectangles(rects, levels, weights, threshold, eps) then clipObjects(size):
    clusters of similar rects (transitively), averaged, kept with more than `threshold` members
    and not inside a stronger cluster; score = best weight in the cluster."""
    rects = np.asarray(rects, np.int64).reshape(-1, 4)
    n = len(rects)
    if n == 0:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    if threshold <= 0:
        boxes, scores = rects, np.asarray(weights, np.float64)
    else:
        labels = _partition(rects, eps)
        ncls = labels.max() + 1
        sums = np.zeros((ncls, 4), np.int64)
        np.add.at(sums, labels, rects)
        count = np.bincount(labels, minlength=ncls)
        best = np.full(ncls, -np.inf)
        np.maximum.at(best, labels, np.asarray(weights, np.float64))
        s = (np.float32(1) / count.astype(np.float32)).astype(np.float32)
        avg = np.rint(sums.astype(np.float32) * s[:, None]).astype(np.int64)
        keep = []
        for i in range(ncls):
            n1 = count[i]
            if n1 <= threshold:
                continue
            inside = False
            for j in range(ncls):
                n2 = count[j]
                if j == i or n2 <= threshold:
                    continue
                dx, dy = int(np.rint(avg[j, 2] * eps)), int(np.rint(avg[j, 3] * eps))
                r1, r2 = avg[i], avg[j]
                if (r1[0] >= r2[0] - dx and r1[1] >= r2[1] - dy and r1[0] + r1[2] <= r2[0] + r2[2] + dx
                        and r1[1] + r1[3] <= r2[1] + r2[3] + dy and (n2 > max(3, n1) or n1 < 3)):
                    inside = True
                    break
            if not inside:
                keep.append(i)
        boxes, scores = avg[keep], best[keep]
    # clipObjects: intersect with the image, drop empty
    w, h = size
    x0 = np.maximum(boxes[:, 0], 0)
    y0 = np.maximum(boxes[:, 1], 0)
    x1 = np.minimum(boxes[:, 0] + boxes[:, 2], w)
    y1 = np.minimum(boxes[:, 1] + boxes[:, 3], h)
    ok = (x1 > x0) & (y1 > y0)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], 1)[ok]
    return out, np.asarray(scores)[ok]


def _partition(rects: np.ndarray, eps: float) -> np.ndarray:
    """Connected components of OpenCV's SimilarRects relation; labels 0..k-1."""
    x, y, w, h = (rects[:, i].astype(np.float64) for i in range(4))
    delta = eps * (np.minimum(w[:, None], w[None]) + np.minimum(h[:, None], h[None])) * 0.5
    adj = ((np.abs(x[:, None] - x[None]) <= delta) & (np.abs(y[:, None] - y[None]) <= delta)
           & (np.abs(x[:, None] + w[:, None] - x[None] - w[None]) <= delta)
           & (np.abs(y[:, None] + h[:, None] - y[None] - h[None]) <= delta))
    labels = np.arange(len(rects))
    while True:
        nxt = np.where(adj, labels[None], len(rects)).min(1)
        nxt = nxt[nxt]                                  # pointer jumping speeds convergence
        if np.array_equal(nxt, labels):
            break
        labels = nxt
    _, inv = np.unique(labels, return_inverse=True)
    return inv
