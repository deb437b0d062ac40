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

from .crop import CropSpec, invert_affines

_BITS = 5                  # INTER_BITS: source positions in 1/32 px
_AB_BITS = 10              # warpAffine's fixed-point precision of the affine map
_COEF_BITS = 15            # INTER_REMAP_COEF_BITS


def source_grid(matrices: np.ndarray, size: int) -> np.ndarray:
    """(N, 2, 2, S) int64: for x and y, the source position of each crop row's first pixel
    (`[:, :, 0]`, by row) and each column's step from it (`[:, :, 1]`, by column), in warpAffine's
    1/1024 px, rounded as it rounds them. Small (N x 4 x S): made on the CPU, where the matrices
    are, and sent in one copy; a pixel's position is one sum of the two on the device."""
    inv = invert_affines(np.asarray(matrices, np.float64).reshape(-1, 2, 3))
    x = np.arange(size, dtype=np.float64)
    scale = float(1 << _AB_BITS)
    # X = (round((M1*y + M2)*1024) + 16 + round(M0*x*1024)) >> 5, likewise Y: 1/32 px positions
    start = np.round((inv[:, :, 1, None] * x + inv[:, :, 2, None]) * scale).astype(np.int64) \
        + (1 << (_AB_BITS - _BITS - 1))
    step = np.round(inv[:, :, 0, None] * x * scale).astype(np.int64)
    return np.stack([start, step], 2)


def warp_crops(frames: torch.Tensor, frame_index: torch.Tensor | np.ndarray | list[int],
               matrices: torch.Tensor | np.ndarray, spec: CropSpec) -> torch.Tensor:
    """Crops of many faces at once: face i is frames[frame_index[i]] warped by matrices[i].

    frames: (B, H, W) uint8 on any device; matrices: (N, 2, 3) image -> crop (`crop_matrix`).
    Returns (N, S, S) uint8 on the frames' device, equal to `warp_crop` for each face.
    About 45 tensor calls whatever N (x and y, and the four taps, go together; 146 before): on a GPU actor
    each call hands the GIL back and forth with the busy stream threads, so their number counts.
    """
    dev = frames.device
    n, size = len(matrices), spec.input_size
    if n == 0:
        return torch.zeros((0, size, size), dtype=torch.uint8, device=dev)
    mats = matrices.cpu().numpy() if isinstance(matrices, torch.Tensor) else matrices
    it = grid_dtype(frames)
    grid = torch.from_numpy(source_grid(mats, size)).to(dev, it)
    idx = torch.as_tensor(np.asarray(frame_index, np.int64) if not isinstance(frame_index, torch.Tensor)
                          else frame_index).to(dev, it)
    return warp_grid(frames, grid, idx)


def grid_dtype(frames: torch.Tensor) -> torch.dtype:
    """int32 where every pixel index of `frames` fits (half the bytes of int64)."""
    return torch.int32 if frames.numel() < 2 ** 31 else torch.int64


def warp_grid(frames: torch.Tensor, grid: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The device half of `warp_crops`: (N, S, S) uint8 crops from `source_grid`'s (N, 2, 2, S)
    and each face's frame index (N,), both on the frames' device in `grid_dtype`. No tensor is
    made from host data here, so a CUDA graph can capture it (models/graphed_pass.py)."""
    n = len(grid)
    _, h, w = frames.shape
    it = grid.dtype
    g = (grid[:, :, 0, :, None] + grid[:, :, 1, None, :]) >> (_AB_BITS - _BITS)    # (N, xy, S, S) in 1/32 px
    cell, frac = g >> _BITS, g & ((1 << _BITS) - 1)
    taps = torch.stack([cell, cell + 1], 2).clamp_(min=0)                          # (N, xy, 2, S, S)
    tx, ty = taps[:, 0].clamp_(max=w - 1), taps[:, 1].clamp_(max=h - 1)
    weights = torch.stack([(1 << _BITS) - frac, frac], 2)                          # in 1/32
    at = idx.view(n, 1, 1, 1, 1) * (h * w) + ty[:, :, None] * w + tx[:, None, :]   # (N, 2y, 2x, S, S)
    # 2-D weights in 1/32768: products of the 1-D weights (exact, they always sum to 32768)
    wgt = (weights[:, 1, :, None] * weights[:, 0, None, :]) << (_COEF_BITS - 2 * _BITS)
    acc = (frames.reshape(-1)[at].to(it) * wgt).sum((1, 2), dtype=it)     # at most 255 * 32768
    return ((acc + (1 << (_COEF_BITS - 1))) >> _COEF_BITS).clamp_(0, 255).to(torch.uint8)
