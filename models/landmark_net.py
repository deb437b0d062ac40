"""LandmarkNet: a small residual CNN that regresses 68 (x, y) points from a grayscale face crop.

Why this shape: faces in video are small (YTF median inter-ocular distance 43 px), so a 112 px
input loses nothing; three stride-2 residual stages keep a 7x7 map whose layout the head keeps
(global pooling would throw away where things are, which is the whole task): flattened into a
fully connected regressor ("fc"), or read cell by cell ("heatmap", the default model's since
2026.11.27: 3.96 -> 3.87 % identity-test NME at the same cost; reading the stage before the last
too, `head_levels=2`, let a body of 0.7x the work reach 3.84 %). Trains in under an hour on a
2-core CPU and costs about 1 ms per face there.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .landmarks68 import NUM_POINTS


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = _conv_bn(cout, cout)
        self.short = None if (cin == cout and stride == 1) else _conv_bn(cin, cout, stride, k=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        return self.act(y + (x if self.short is None else self.short(x)))


class HeatmapHead(nn.Module):
    """Each point as a soft choice of a cell of the last feature map plus an offset within it
    (pixel-in-pixel, Jin et al. 2021, with a softmax in place of the argmax so the whole head trains
    on the coordinates' own loss): one 1x1 conv gives, per point and cell, a logit and an (x, y)
    offset in cell sides; the point is the probability-weighted mean of cell centre + offset.

    Why: a fully connected head must learn every point's position at every place on the map from
    few faces; here a cell that sees an eye corner says so wherever it is, and the offset keeps the
    map's cells (7x7 or 14x14 at 112 px) from limiting precision.
    """

    def __init__(self, cin: int, side: int, num_points: int):
        super().__init__()
        self.num_points, self.side = num_points, side
        self.out = nn.Conv2d(cin, num_points * 3, 1)
        c = (torch.arange(side, dtype=torch.float32) * 2 + 1) / side - 1       # cell centres in [-1, 1]
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        self.register_buffer("centres", torch.stack([cx.flatten(), cy.flatten()]), persistent=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        p = self.num_points
        # read cells-major: a view of the convolution's channels-last output (inference), and the
        # weighted sums below then run over contiguous rows: 3x faster than point-major on a CPU at
        # batch 48 (1.5 against 4.7 ms), the same numbers to float rounding
        o = self.out(feats).float().permute(0, 2, 3, 1).flatten(1, 2)    # (B, cells, 3P); float32 even in float16
        prob = o[..., :p].softmax(1)                                     # (B, cells, P)
        centre = self.centres.float() @ prob                             # (B, 2, P): the expected cell centre ...
        shift = torch.stack([(prob * o[..., p::2]).sum(1), (prob * o[..., p + 1::2]).sum(1)], 1)   # ... and offset
        return (centre + shift * (2.0 / self.side)).transpose(1, 2).to(feats.dtype)   # (B, P, 2)


class LandmarkNet(nn.Module):
    """Input (B, 1, S, S) in [0, 1]; output (B, 68, 2) in crop-normalised coordinates (about [-1, 1]).
    `head`: "fc" (the layout flattened into a fully connected regressor) or "heatmap" (`HeatmapHead`).
    `head_levels`: how many of the last stages feed the heatmap head; 2 adds the stage before the last
    (top-down, as in a feature pyramid), so the head reads a map of twice the side: finer cells
    for the points to choose from, at 17 % more multiply-adds on ft68-resnet-s's body."""

    def __init__(self, input_size: int, widths: tuple[int, ...], depths: tuple[int, ...], head_channels: int,
                 hidden: int, num_points: int = NUM_POINTS, head: str = "fc", head_levels: int = 1):
        super().__init__()
        if head not in ("fc", "heatmap"):
            raise ValueError(f"unknown head {head!r} (fc or heatmap)")
        if len(widths) != len(depths) + 1:
            raise ValueError(f"widths {widths}: one for the stem and one per stage, {len(depths) + 1} for depths {depths}")
        if input_size % 2 ** len(widths):
            raise ValueError(f"input size {input_size}: must divide by {2 ** len(widths)} (one halving per width)")
        if not 1 <= head_levels <= len(depths) or (head_levels > 1 and head != "heatmap"):
            raise ValueError(f"head_levels {head_levels}: 1, or up to {len(depths)} with the heatmap head")
        self.num_points, self.head = num_points, head
        self.stem = nn.Sequential(_conv_bn(1, widths[0], stride=2), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for cout, depth in zip(widths[1:], depths):
            blocks = [BasicBlock(cin, cout, stride=2)] + [BasicBlock(cout, cout) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.reduce = nn.Sequential(_conv_bn(cin, head_channels, k=1), nn.ReLU(inplace=True))
        self.laterals = nn.ModuleList(_conv_bn(c, head_channels, k=1) for c in widths[-head_levels:-1][::-1])
        self.smooth = nn.Sequential(_conv_bn(head_channels, head_channels), nn.ReLU(inplace=True)) \
            if head_levels > 1 else None
        side = input_size // 2 ** (len(widths) + 1 - head_levels)
        if head == "heatmap":
            self.heatmap = HeatmapHead(head_channels, side, num_points)
        else:
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(head_channels * side * side, hidden),
                                    nn.ReLU(inplace=True), nn.Linear(hidden, num_points * 2))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x, outs = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        f = self.reduce(x)
        for lateral, o in zip(self.laterals, outs[-2::-1]):
            f = F.interpolate(f, scale_factor=2.0, mode="nearest") + lateral(o)
        return f if self.smooth is None else self.smooth(f)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        if self.head == "heatmap":
            return self.heatmap(feats)
        return self.fc(feats).view(-1, self.num_points, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def body_to(self, dtype: torch.dtype) -> "LandmarkNet":
        """Everything but the head in `dtype`, in place. For inference in bfloat16: the arithmetic
        of `precision.forward_mixed` unchanged (its autocast casts the convolutions' weights to
        bfloat16 anyway), without casting every weight again on every call: 1-10 % of a forward
        at the batch sizes video gives, most at the small ones."""
        head = self.heatmap if self.head == "heatmap" else self.fc
        for child in self.children():
            if child is not head:
                child.to(dtype)
        return self


def fused_for_inference(model: LandmarkNet) -> LandmarkNet:
    """A copy with every BatchNorm folded into the convolution before it, in channels-last layout.

    Same outputs (to float rounding), half the ops: on a 2-core CPU the small model runs about
    1.5-2x faster at the batch sizes video following uses. Inference only: the copy cannot train.
    """
    out = copy.deepcopy(model).eval()
    for mod in out.modules():
        if isinstance(mod, nn.Sequential) and len(mod) >= 2 and isinstance(mod[0], nn.Conv2d) \
                and isinstance(mod[1], nn.BatchNorm2d):
            mod[0] = fuse_conv_bn_eval(mod[0], mod[1])
            mod[1] = nn.Identity()
    return out.to(memory_format=torch.channels_last)
