"""Landmarks for many faces at once: crop every face square, one batched forward pass, map back.

`refine` re-crops each face around its own first-pass landmarks and predicts again: the detector's
box is a rough guess at where the face is, the first pass's points are a much better one, and the
network was trained on both kinds of square. `flip` averages with the mirrored crop (the
68-point permutation undoes the mirror). Both trade compute for accuracy; the defaults are what
the evaluation numbers use.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .crop import crop_matrix, from_crop_coords, square_from_box, square_from_points, to_input, warp_crop
from .landmark_net import LandmarkNet, fused_for_inference
from .landmarks68 import FLIP_PERM
from .registry import ModelCfg, load_model
from .score import ScoreParts, score_parts


@dataclass
class LandmarkPredictor:
    model: LandmarkNet
    cfg: ModelCfg
    device: torch.device = torch.device("cpu")
    refine: int = 1
    flip: bool = True
    flip_last: bool = False      # without `flip`: mirror the last pass only (points and score), 1 forward more
    half: bool = False

    @classmethod
    def load(cls, weights: str | None = None, device: str | None = None, half: bool | None = None,
             **kw) -> "LandmarkPredictor":
        """`half` None: float16 on CUDA (points agree with float32 to a small fraction of a pixel;
        see the README), float32 on the CPU, where float16 convolutions are slow."""
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, cfg = load_model(weights, dev)
        model = fused_for_inference(model)
        half = dev.type == "cuda" and (half is None or half)
        if half:
            model = model.half()
        return cls(model, cfg, dev, half=half, **kw)

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

    def predict_with_parts(self, grays: list[np.ndarray], squares: np.ndarray) -> tuple[np.ndarray, ScoreParts]:
        """Points and the score with what it is made of: how far the last pass is from its mirrored
        twin (with `flip`) and from the pass before it (with `refine`), and the shape distance."""
        squares = np.asarray(squares, np.float32).reshape(-1, 3)
        if len(squares) == 0:
            return np.zeros((0, 68, 2), np.float32), score_parts(np.zeros((0, 68, 2), np.float32), None, None)
        last = self.flip_last and not self.flip
        pts, mirrored = self._pass(grays, squares, flip=True) if last and not self.refine else self._pass(grays, squares)
        prev = None
        for k in range(self.refine):
            prev = pts
            sq = square_from_points(pts)
            pts, mirrored = self._pass(grays, sq, flip=True) if last and k == self.refine - 1 else self._pass(grays, sq)
        return pts, score_parts(pts, mirrored, prev)

    def _pass(self, grays: list[np.ndarray], squares: np.ndarray, flip: bool | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """One batched pass; returns the points and, with `flip` (default: self.flip), the mirrored
        pass's points alone."""
        spec = self.cfg.crop
        mats = [crop_matrix(sq, spec) for sq in squares]
        crops = np.stack([warp_crop(g, m, spec) for g, m in zip(grays, mats)])
        coords, mirrored = self._forward(crops), None
        if self.flip if flip is None else flip:
            mirrored = self._forward(np.ascontiguousarray(crops[:, :, ::-1]))[:, FLIP_PERM]
            mirrored[..., 0] = -mirrored[..., 0] - 2.0 / spec.input_size  # pixel i <-> S-1-i
            mirrored = np.stack([from_crop_coords(c, m, spec) for c, m in zip(mirrored, mats)])
        pts = np.stack([from_crop_coords(c, m, spec) for c, m in zip(coords, mats)])
        return ((pts + mirrored) / 2 if mirrored is not None else pts), mirrored

    @torch.inference_mode()
    def _forward(self, crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(to_input(crops))
        if self.device.type == "cuda":
            x = x.pin_memory()           # lets the copy below run asynchronously
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if self.half:
            x = x.half()
        return self.model(x).float().cpu().numpy()
