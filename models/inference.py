"""Landmarks for many faces at once: crop every face square, one batched forward pass, map back.

`refine` re-crops each face around its own first-pass landmarks and predicts again: the detector's
box is a rough guess at where the face is, the first pass's points are a much better one, and the
network was trained on both kinds of square. `flip` averages with the mirrored crop (the
68-point permutation undoes the mirror). Both trade compute for accuracy; the defaults are what
the evaluation numbers use.

Where crops are cut: on the CPU by `cv2.warpAffine`, one face at a time; with `device_crops` (the
default on CUDA) the distinct frames of a call are sent to the device once and every pass cuts all
its crops there in one batched warp (`crop_torch.warp_crops`, the same pixels), so a GPU actor
moves frames, not crops, and its CPU does no per-face image work. There each pass (crops, input,
contrast, mirror, network) is replayed as one CUDA graph where it can be (`graphed_pass.py`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .crop import (CropSpec, crop_matrices, points_from_crops, square_along_face, square_from_box, squares_2d, to_input,
                   unmirror_coords, warp_crop)
from .crop_torch import warp_crops, warp_grid
from .graphed import GraphedNet, wanted as graphs_wanted
from .graphed_pass import GraphedPass
from .landmark_net import LandmarkNet, fused_for_inference
from .precision import forward_mixed, native_bf16, resolve_device
from .registry import ModelCfg, load_model
from .score import ScoreParts, score_parts


@dataclass
class DeviceFrames:
    """The distinct images under a call's faces, on the model's device: one (B, H, W) uint8 tensor
    per image size, and where each face's image sits in them."""
    tensors: list[torch.Tensor]
    group: np.ndarray        # (N,) which tensor holds face i's image
    index: np.ndarray        # (N,) its position in that tensor

    @classmethod
    def of(cls, grays: list[np.ndarray], device: torch.device) -> "DeviceFrames":
        slot: dict[int, tuple[int, int]] = {}
        by_shape: dict[tuple, list[np.ndarray]] = {}
        for g in grays:
            if id(g) not in slot:
                members = by_shape.setdefault(g.shape, [])
                slot[id(g)] = (list(by_shape).index(g.shape), len(members))
                members.append(g)
        where = np.array([slot[id(g)] for g in grays], np.int64).reshape(-1, 2)
        tensors = [torch.from_numpy(np.stack(m)).to(device, non_blocking=True) for m in by_shape.values()]
        return cls(tensors, where[:, 0], where[:, 1])


def _take(images: list[np.ndarray] | DeviceFrames, faces: np.ndarray) -> list[np.ndarray] | DeviceFrames:
    """The images under some of the faces, in the same form."""
    if isinstance(images, DeviceFrames):
        return DeviceFrames(images.tensors, images.group[faces], images.index[faces])
    return [images[i] for i in faces]


@contextmanager
def threads_at_most(n: int) -> Iterator[None]:
    """torch's intra-op threads capped at `n` (0: unchanged) for the block, then restored. torch
    keeps the count for the whole process: two threads forwarding on a CPU at once would share
    the cap (an actor's shared stages run one forward at a time). Switching costs nothing
    measurable next to a forward call."""
    before = torch.get_num_threads()
    if not 0 < n < before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def face_contrast(x: torch.Tensor, spec: CropSpec) -> torch.Tensor:
    """(N,) grey-level standard deviation (0-255) of the face square inside each network input
    (N, 1, S, S): the crop less its `expand` margin. The score's guard against flat crops. Left on
    `x`'s device: read back after the forward pass, it adds no wait of its own on a GPU."""
    s = spec.input_size
    m = int(round(s * (1 - 1 / spec.expand) / 2))
    v = x[:, 0, m:s - m, m:s - m].flatten(1)
    d = v - v.mean(1, keepdim=True)             # torch's std(1) is the same number 8x slower on a CPU at batch 48
    return (d.square().sum(1) / (v.shape[1] - 1)).sqrt() * 255


@dataclass
class LandmarkPredictor:
    model: LandmarkNet
    cfg: ModelCfg
    device: torch.device = torch.device("cpu")
    refine: int = 1
    flip: bool = True
    flip_last: bool = False      # without `flip`: mirror the last pass only (points and score), 1 forward more
    settled_move: float = 0.0    # with `flip`: skip the refine pass of a face already settled (0: never skip) ...
    settled_score: float = 1.0   # ... whose first-pass square moved at most this share of its side, scoring at least this
    threads: int = 0             # on a CPU, torch threads for the network at most (0: torch's setting); see `_read`
    half: bool = False           # float16 (CUDA)
    bf16: bool = False           # bfloat16 convolutions, float32 head (CPU; models/precision.py)
    device_crops: bool = False   # cut crops on `device` from the frames (see the module's docstring)
    graphed: GraphedNet | None = None   # the model as CUDA graphs (models/graphed.py), on CUDA
    pass_graphs: GraphedPass | None = None   # with device_crops on CUDA: whole passes as graphs (graphed_pass.py)
    # the network run elsewhere: (N, S, S) uint8 crops cut here and `mirror` -> what `forward_crops`
    # returns there (a GPU process's, jobs/stage_server.py; crops are then always cut here);
    # None: this predictor's own model
    forward: Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray]] | None = None

    @classmethod
    def load(cls, weights: str | None = None, device: str | None = None, half: bool | None = None,
             device_crops: bool | None = None, **kw) -> "LandmarkPredictor":
        """`half` None: the device's fast precision: float16 on CUDA (points agree with float32 to a
        small fraction of a pixel; see the README), and on a CPU that runs bfloat16 natively the
        mixed precision the weights were trained in (bfloat16 convolutions, float32 head), float32
        on other CPUs (float16 and emulated bfloat16 are slow there). `half` False: float32 on any
        device. `device_crops` None: on CUDA."""
        dev = resolve_device(device)
        model, cfg = load_model(weights, dev)
        model = fused_for_inference(model)
        fast = half is None or half
        half = dev.type == "cuda" and fast
        bf16 = dev.type == "cpu" and fast and native_bf16()
        if half:
            model = model.half()
        if bf16:
            model = model.body_to(torch.bfloat16)
        crops_here = dev.type == "cuda" if device_crops is None else device_crops
        size = cfg.crop.input_size
        graphed = GraphedNet(model, (1, size, size), torch.float16 if half else torch.float32, dev) \
            if graphs_wanted(dev) else None
        pred = cls(model, cfg, dev, half=half, bf16=bf16, device_crops=crops_here, graphed=graphed, **kw)
        if crops_here and graphs_wanted(dev):
            pred.pass_graphs = GraphedPass(pred._device_pass, size)
        return pred

    @property
    def precision(self) -> str:
        """How the network runs, for summaries and bench results."""
        return "float16" if self.half else "bfloat16 convolutions" if self.bf16 else "float32"

    @property
    def model_id(self) -> str:
        return f"{self.cfg.name}@{self.cfg.version}"

    def squares_from_boxes(self, boxes: np.ndarray) -> np.ndarray:
        return square_from_box(boxes, self.cfg.haar)

    def predict(self, grays: list[np.ndarray], squares: np.ndarray) -> np.ndarray:
        """grays[i] is the uint8 image holding face i (images may repeat); squares (N, 3) -> (N, 68, 2)."""
        return self.predict_with_score(grays, squares)[0]

    def predict_with_score(self, grays: list[np.ndarray], squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points (N, 68, 2) and a confidence (N,) in [0, 1] (models/score.py says what it means);
        NaN where it was not measured (one pass, no mirror)."""
        pts, parts = self.predict_with_parts(grays, squares)
        return pts, parts.score

    @torch.inference_mode()
    def predict_with_parts(self, grays: list[np.ndarray], squares: np.ndarray) -> tuple[np.ndarray, ScoreParts]:
        """Points and the score with what it is made of: how far the last pass is from its mirrored
        twin (with `flip`) and from the pass before it (with `refine`), and the shape distance."""
        squares = squares_2d(squares)
        if len(squares) == 0:
            return np.zeros((0, 68, 2), np.float32), score_parts(np.zeros((0, 68, 2), np.float32), None, None)
        images = DeviceFrames.of(grays, self.device) if self.device_crops and self.forward is None else grays
        last = self.flip_last and not self.flip
        pts, mirrored, contrast = self._pass(images, squares, flip=last and not self.refine)
        prev = None
        todo = self._unsettled(pts, mirrored, contrast, squares) if self.refine else None
        for k in range(self.refine):
            prev = pts.copy()
            prev[~todo] = np.nan                 # a settled face: its pass disagreement is not measured
            if not todo.any():
                break
            sub = np.flatnonzero(todo)      # pts and mirrored are this call's own arrays: filled in place
            p, m, c = self._pass(_take(images, sub), square_along_face(pts[sub]), flip=last and k == self.refine - 1)
            pts[sub], contrast[sub] = p, c
            if m is not None:
                mirrored = np.zeros_like(pts) if mirrored is None else mirrored
                mirrored[sub] = m
        return pts, score_parts(pts, mirrored, prev, contrast)

    def _unsettled(self, pts: np.ndarray, mirrored: np.ndarray | None, contrast: np.ndarray,
                   squares: np.ndarray) -> np.ndarray:
        """(N,) which faces the refine pass re-crops. All of them, unless `settled_move` is set (with
        `flip`): then a face whose first-pass points put its square within `settled_move` of the one
        it was cut from (centre and side, as shares of the side), and whose first-pass score reaches
        `settled_score`, keeps its first answer. Why: in video the square a followed face is cut
        from is the square around its points at the start of its chunk, so for a face that moved
        little the refine pass cuts nearly the same crop and reads nearly the same points (a tenth
        of a percent of the inter-ocular distance), at twice the cost. A face that moved, or that
        the mirrored read doubts, is refined and scored with both disagreements, as always. Only
        the squares are compared: a detector's box that lands that close settles too."""
        if not (self.settled_move > 0 and self.flip):
            return np.ones(len(pts), bool)
        new = square_along_face(pts)
        side = np.maximum(squares[:, 2], 1e-6)
        turn = squares[:, 3] if squares.shape[1] == 4 else 0.0     # radians: a turned crop that would turn again moved
        move = np.maximum.reduce([np.abs(new[:, :2] - squares[:, :2]).max(axis=1) / side,
                                  np.abs(np.log(np.maximum(new[:, 2], 1e-6) / side)),
                                  np.abs(np.remainder(new[:, 3] - turn + np.pi, 2 * np.pi) - np.pi)])   # pi and -pi: one turn
        first = score_parts(pts, mirrored, None, contrast).score
        return ~((move <= self.settled_move) & (first >= self.settled_score))

    def _pass(self, images: list[np.ndarray] | DeviceFrames, squares: np.ndarray, flip: bool = False
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """One batched pass; returns the points, with `flip` or self.flip the mirrored pass's
        points alone, and each crop's contrast (`face_contrast`). The crops and their mirror
        images go through one forward call; on CUDA the whole pass is one graph replay where it
        can be (`pass_graphs`)."""
        spec = self.cfg.crop
        mats = crop_matrices(squares, spec)
        mirror = self.flip or flip
        got = None
        if not isinstance(images, DeviceFrames):      # crops cut here, the network here or elsewhere
            got = (self.forward or self.forward_crops)(np.stack([warp_crop(g, m, spec) for g, m in zip(images, mats)]),
                                                       mirror)
        elif self.pass_graphs is not None and len(images.tensors) == 1:
            got = self.pass_graphs(images.tensors[0], images.index, mats, mirror)
        if got is None:
            out, contrast = self._read(self._crops(images, mats), mirror, self.graphed or self.model)
            out = out.cpu().numpy()
            contrast = contrast.float().cpu().numpy()         # after the forward's own read-back
        else:
            out, contrast = got
        n = len(mats)
        mirrored = points_from_crops(unmirror_coords(out[n:], spec), mats, spec) if mirror else None
        pts = points_from_crops(out[:n], mats, spec)
        return ((pts + mirrored) / 2 if mirrored is not None else pts), mirrored, contrast

    @torch.inference_mode()
    def forward_crops(self, crops: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        """The network's part of a pass for (N, S, S) uint8 crops cut elsewhere: its float32 output
        (the mirror images' after the crops', with `mirror`) and each crop's contrast, read back.
        What a process holding the GPU runs for predictors whose `forward` calls it."""
        x = torch.from_numpy(np.ascontiguousarray(crops))
        if self.device.type == "cuda":
            x = x.pin_memory()                       # lets the copy run asynchronously
        out, contrast = self._read(x.to(self.device, non_blocking=True), mirror, self.graphed or self.model)
        return out.cpu().numpy(), contrast.float().cpu().numpy()

    def _device_pass(self, frames: torch.Tensor, grid: torch.Tensor, idx: torch.Tensor,
                     mirror: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """A pass from frames on the device (`graphed_pass.PassFn`): the network's output for the
        crops (and their mirror images after them) and the crops' contrast, all on the device."""
        return self._read(warp_grid(frames, grid, idx), mirror, self.model)

    def _read(self, crops: torch.Tensor, mirror: bool, net) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, S, S) uint8 crops on the device -> the network's output for them (and their mirror
        images after them, in the same call) and their contrast, both left on the device. On a CPU
        with `threads` set, torch runs all of it on at most that many threads: the fast model's
        convolutions are too small to split between cores while the decoder needs one
        (`pipeline/profiles.py` says what it measured)."""
        with threads_at_most(self.threads if self.device.type == "cpu" else 0):
            x = to_input(crops)
            contrast = face_contrast(x, self.cfg.crop)
            return self._net(torch.cat([x, x.flip(-1)]) if mirror else x, net), contrast

    def _crops(self, images: DeviceFrames, mats: np.ndarray) -> torch.Tensor:
        """(N, S, S) uint8 crops cut on the device from frames already there."""
        spec = self.cfg.crop
        if len(images.tensors) == 1:
            return warp_crops(images.tensors[0], images.index, mats, spec)
        out = torch.empty((len(mats), spec.input_size, spec.input_size), dtype=torch.uint8, device=self.device)
        for k, frames in enumerate(images.tensors):
            faces = np.flatnonzero(images.group == k)
            out[torch.from_numpy(faces).to(self.device)] = warp_crops(frames, images.index[faces], mats[faces], spec)
        return out

    def _net(self, x: torch.Tensor, net) -> torch.Tensor:
        """The network's float32 output for network inputs `x`, in this predictor's precision;
        `net`: the model or its graphs."""
        x = x.contiguous(memory_format=torch.channels_last)
        if self.half:
            x = x.half()
        if self.bf16:
            return forward_mixed(self.model, x, True)
        return net(x).float()
