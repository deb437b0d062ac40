"""The crop contract of models/crop.py, for a whole batch of faces in one tensor operation.

`warp_crop` runs `cv2.warpAffine` on the CPU one face at a time, on numpy frames. When frames
are already torch tensors on a GPU, copying them back to cut 112 px crops would undo the point of
having them there. `warp_crops` makes every crop of a batch at once, from (B, H, W) uint8 frames
on any device, and gives the *same* pixels as `warp_crop`: OpenCV's INTER_LINEAR warp is fixed
point (source positions rounded to 1/32 px, bilinear weights in 1/32768, result rounded to
uint8), and that arithmetic is reproduced here (a bilinear `grid_sample` in float would differ
by a grey level here and there, which is enough to move predicted points by ~0.01 px).

Conventions, as in `crop_matrix`/`warp_crop`: a 2x3 matrix maps image pixels to crop pixels,
pixel centres at integer coordinates, the warp samples the inverse map at every crop pixel,
and outside the image the edge is replicated (BORDER_REPLICATE).
"""
from __future__ import annotations

import numpy as np
import torch

from .crop import CropSpec

_BITS = 5                  # INTER_BITS: source positions in 1/32 px
_AB_BITS = 10              # warpAffine's fixed-point precision of the affine map
_COEF_BITS = 15            # INTER_REMAP_COEF_BITS


def invert_affine(m: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) float64 -> inverse maps, computed as cv::warpAffine does (1/D, then products)."""
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    det = torch.where(det != 0, 1.0 / det, torch.zeros_like(det))
    a2, e2 = e * det, a * det
    b2, d2 = -b * det, -d * det
    c2 = -a2 * c - b2 * f
    f2 = -d2 * c - e2 * f
    return torch.stack([torch.stack([a2, b2, c2], 1), torch.stack([d2, e2, f2], 1)], 1)


def warp_crops(frames: torch.Tensor, frame_index: torch.Tensor | np.ndarray | list[int],
               matrices: torch.Tensor | np.ndarray, spec: CropSpec) -> torch.Tensor:
    """Crops of many faces at once: face i is frames[frame_index[i]] warped by matrices[i].

    frames: (B, H, W) uint8 on any device; matrices: (N, 2, 3) image -> crop (`crop_matrix`).
    Returns (N, S, S) uint8 on the frames' device, equal to `warp_crop` for each face.
    """
    dev = frames.device
    n, size = len(matrices), spec.input_size
    if n == 0:
        return torch.zeros((0, size, size), dtype=torch.uint8, device=dev)
    _, h, w = frames.shape
    m = torch.as_tensor(np.asarray(matrices) if not isinstance(matrices, torch.Tensor) else matrices,
                        dtype=torch.float64).to(dev).reshape(n, 2, 3)
    inv = invert_affine(m)
    idx = torch.as_tensor(np.asarray(frame_index, np.int64) if not isinstance(frame_index, torch.Tensor)
                          else frame_index, dtype=torch.int64).to(dev)
    scale = float(1 << _AB_BITS)
    x = torch.arange(size, dtype=torch.float64, device=dev)
    # X = (round((M1*y + M2)*1024) + 16 + round(M0*x*1024)) >> 5, likewise Y: 1/32 px positions
    rnd = 1 << (_AB_BITS - _BITS - 1)
    x0 = torch.round((inv[:, 0, 1, None] * x + inv[:, 0, 2, None]) * scale).long() + rnd   # (N, S) by row
    y0 = torch.round((inv[:, 1, 1, None] * x + inv[:, 1, 2, None]) * scale).long() + rnd
    dx = torch.round(inv[:, 0, 0, None] * x * scale).long()                              # (N, S) by column
    dy = torch.round(inv[:, 1, 0, None] * x * scale).long()
    gx = (x0[:, :, None] + dx[:, None, :]) >> (_AB_BITS - _BITS)                          # (N, S, S)
    gy = (y0[:, :, None] + dy[:, None, :]) >> (_AB_BITS - _BITS)
    ix, fx = gx >> _BITS, gx & ((1 << _BITS) - 1)
    iy, fy = gy >> _BITS, gy & ((1 << _BITS) - 1)
    one = 1 << _BITS
    # 2-D weights in 1/32768: products of the 1-D weights (exact, they always sum to 32768)
    wgt = ((one - fy) * (one - fx), (one - fy) * fx, fy * (one - fx), fy * fx)
    xs = (ix.clamp(0, w - 1), (ix + 1).clamp(0, w - 1))
    ys = (iy.clamp(0, h - 1), (iy + 1).clamp(0, h - 1))
    flat = frames.reshape(-1)
    base = idx[:, None, None] * (h * w)
    acc = torch.zeros_like(gx)
    for k, (yy, xx) in enumerate(((ys[0], xs[0]), (ys[0], xs[1]), (ys[1], xs[0]), (ys[1], xs[1]))):
        acc += flat[base + yy * w + xx].long() * (wgt[k] << (_COEF_BITS - 2 * _BITS))
    return ((acc + (1 << (_COEF_BITS - 1))) >> _COEF_BITS).clamp_(0, 255).to(torch.uint8)

