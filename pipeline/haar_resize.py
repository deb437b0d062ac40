"""OpenCV's resizes, bit-exact, on (B, H, W) uint8 tensors, for the torch Haar detector
(`haar_torch.py`):

- `resize_area`: the downscale of a frame to `detect_side` (INTER_AREA), as `HaarDetector` does;
- `resize_linear_exact`: OpenCV's bit-exact fixed-point bilinear resize (INTER_LINEAR_EXACT),
  what the cascade's setImage uses to make each scale's image; the scan plan (`haar_plan.py`)
  builds its packed all-scales tables from the same `_exact_tab`.

Each size pair's tables are made once in numpy and, through `_on`, sent once to each device.
Checked in tests/test_haar_torch.py: both equal OpenCV's bit for bit.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


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
