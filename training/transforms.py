"""Composable sample transforms: the crop to the network's input, Normalize and ToTensor, and the
augmentation that makes a landmark model survive video (mirror with the 68-point permutation,
rotation, detector-shaped box jitter, brightness / contrast / blur).

A sample is a dict: `gray` (H, W) uint8, `points` (68, 2) float32 pixels, `square` (cx, cy, side)
float32 — the face square the crop is made around (see models/crop.py) — and optionally
`det_square`, the calibrated square of a real detector box. Geometric transforms move all of them
together, so image, points and squares can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from facetracks.models.crop import CropSpec, crop_matrix, to_crop_coords, to_input, warp_crop
from facetracks.models.landmarks68 import FLIP_PERM

Sample = dict
SQUARE_KEYS = ("square", "det_square")


class Compose:
    def __init__(self, transforms: list):
        self.transforms = transforms

    def __call__(self, s: Sample) -> Sample:
        for t in self.transforms:
            s = t(s)
        return s


def _warp_sample(s: Sample, m: np.ndarray, size: tuple[int, int]) -> Sample:
    out = dict(s)
    out["gray"] = cv2.warpAffine(s["gray"], m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out["points"] = (s["points"] @ m[:, :2].T + m[:, 2]).astype(np.float32)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    for key in SQUARE_KEYS:
        if s.get(key) is not None:
            cx, cy, side = s[key]
            c = np.array([cx, cy]) @ m[:, :2].T + m[:, 2]
            out[key] = np.array([c[0], c[1], side * scale], np.float32)
    return out


@dataclass
class RandomFlip:
    """Mirror left-right; point i of the result is point FLIP_PERM[i] of the mirrored original."""
    p: float = 0.5
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def __call__(self, s: Sample) -> Sample:
        if self.rng.random() >= self.p:
            return s
        return flip(s)


def flip(s: Sample) -> Sample:
    w = s["gray"].shape[1]
    out = dict(s)
    out["gray"] = np.ascontiguousarray(s["gray"][:, ::-1])
    pts = s["points"].copy()
    pts[:, 0] = w - 1 - pts[:, 0]
    out["points"] = pts[FLIP_PERM]
    for key in SQUARE_KEYS:
        if s.get(key) is not None:
            sq = s[key].copy()
            sq[0] = w - 1 - sq[0]
            out[key] = sq
    return out


@dataclass
class RandomRotate:
    """Rotate about the face square's centre by N(0, std) degrees, clipped to +-max_deg."""
    std_deg: float = 12.0
    max_deg: float = 35.0
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def __call__(self, s: Sample) -> Sample:
        return rotate(s, float(np.clip(self.rng.normal(0, self.std_deg), -self.max_deg, self.max_deg)))


def rotate(s: Sample, angle_deg: float) -> Sample:
    """Rotate image, points and square by angle_deg (counter-clockwise as displayed) about the square centre."""
    cx, cy = (float(v) for v in s["square"][:2])
    m = cv2.getRotationMatrix2D((cx, cy), angle_deg, 1.0)
    h, w = s["gray"].shape[:2]
    return _warp_sample(s, m, (w, h))


@dataclass
class DetectorBoxJitter:
    """Replace the landmark square by one shaped like a detector's.

    With probability `p_box` (and when the sample carries a real detector square `det_square`), the
    square is that one, lightly jittered; otherwise the landmark square is shifted and scaled at random with
    the spread measured for Haar boxes (`centre_std`, `scale_std`, in units of the side), times a
    factor drawn from [min_factor, 1.3] so the model also sees the tight squares of the refinement
    pass (square from the previous frame's or the first pass's landmarks).
    """
    centre_std: tuple[float, float] = (0.105, 0.045)
    scale_std: float = 0.10
    min_factor: float = 0.15
    p_box: float = 0.35
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def __call__(self, s: Sample) -> Sample:
        out = dict(s)
        det = s.get("det_square")
        if det is not None and self.rng.random() < self.p_box:
            sq = det
            k = 0.3
        else:
            sq = s["square"]
            k = self.rng.uniform(self.min_factor, 1.3)
        cx, cy, side = (float(v) for v in sq)
        dx, dy = self.rng.normal(0, 1, 2) * np.array(self.centre_std) * k * side
        out["square"] = np.array([cx + dx, cy + dy, side * np.exp(self.rng.normal(0, self.scale_std * k))],
                                 np.float32)
        return out


@dataclass
class CropToInput:
    """Warp the (expanded) face square to the network's input size: one interpolation, points follow."""
    spec: CropSpec                  # the model's (ModelCfg.crop): no default, so training cannot drift from it

    def __call__(self, s: Sample) -> Sample:
        m = crop_matrix(s["square"], self.spec)
        out = dict(s)
        out["gray"] = warp_crop(s["gray"], m, self.spec)
        out["points"] = (s["points"] @ m[:, :2].T + m[:, 2]).astype(np.float32)
        out["square"] = np.array([self.spec.input_size / 2] * 2 + [self.spec.input_size / self.spec.expand], np.float32)
        return out


@dataclass
class TeacherCrop:
    """The crop a distillation teacher reads (`teacher_image`): the same square at the teacher's
    own input size, cut before the photometric noise, so the teacher's answer is its best one and
    the student learns to give it from the noisy crop. Both crops are cut around the same square,
    so their normalised coordinates differ only by the ratio of their `expand`s
    (`train.teacher_coords`)."""
    spec: CropSpec

    def __call__(self, s: Sample) -> Sample:
        out = dict(s)
        out["teacher_image"] = to_input(warp_crop(s["gray"], crop_matrix(s["square"], self.spec), self.spec)[None])[0]
        return out


@dataclass
class Photometric:
    """Brightness, contrast, gamma, blur and noise: video is darker, softer and noisier than stills."""
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    p_blur: float = 0.3
    p_noise: float = 0.2

    def __call__(self, s: Sample) -> Sample:
        g = s["gray"].astype(np.float32) / 255.0
        g = np.clip(g, 1e-4, 1) ** np.exp(self.rng.normal(0, 0.25))
        g = (g - g.mean()) * np.exp(self.rng.normal(0, 0.25)) + g.mean() + self.rng.normal(0, 0.08)
        if self.rng.random() < self.p_blur:
            g = cv2.GaussianBlur(g, (0, 0), self.rng.uniform(0.4, 1.6))
        if self.rng.random() < self.p_noise:
            g = g + self.rng.normal(0, self.rng.uniform(0.005, 0.04), g.shape).astype(np.float32)
        out = dict(s)
        out["gray"] = (np.clip(g, 0, 1) * 255).astype(np.uint8)
        return out


@dataclass
class Normalize:
    """The seed's Normalize: grayscale to [0, 1] and points to about [-1, 1] around the crop centre."""
    spec: CropSpec                  # the model's (ModelCfg.crop): no default, so training cannot drift from it

    def __call__(self, s: Sample) -> Sample:
        out = dict(s)
        out["image"] = to_input(s["gray"][None])[0, 0]
        identity = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
        out["target"] = to_crop_coords(s["points"], identity, self.spec)
        return out


class ToTensor:
    """The seed's ToTensor: image (1, S, S) and target (68, 2) as torch tensors."""

    def __call__(self, s: Sample) -> Sample:
        out = dict(s)
        out["image"] = torch.from_numpy(np.ascontiguousarray(s["image"])[None])
        out["target"] = torch.from_numpy(s["target"])
        if "teacher_image" in s:
            out["teacher_image"] = torch.from_numpy(s["teacher_image"])
        return out


def train_transforms(spec: CropSpec, seed: int | list[int], teacher: CropSpec | None = None) -> Compose:
    """The augmentation; with `teacher`, each sample also carries the teacher's clean crop of the
    same square (the random draws, and so the student's crops, are the same either way)."""
    rng = np.random.default_rng(seed)
    return Compose([RandomFlip(rng=rng), RandomRotate(rng=rng), DetectorBoxJitter(rng=rng)]
                   + ([TeacherCrop(teacher)] if teacher else [])
                   + [CropToInput(spec), Photometric(rng=rng), Normalize(spec), ToTensor()])


def eval_transforms(spec: CropSpec) -> Compose:
    return Compose([CropToInput(spec), Normalize(spec), ToTensor()])
