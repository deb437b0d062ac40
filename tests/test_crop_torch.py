"""Batched torch crops against the CPU crop contract (cv2.warpAffine) and the landmarks they give."""
import os

import numpy as np
import pytest
import torch

from facetracks.models.crop import CropSpec, crop_matrix, from_crop_coords, square_from_points, warp_crop
from facetracks.models.crop_torch import to_input_torch, warp_crops
from facetracks.models.inference import LandmarkPredictor
from facetracks.models.landmarks68 import FLIP_PERM
from facetracks.pipeline.detect import HaarDetector

from .clips import gray_frames


def turned(m: np.ndarray, angle_deg: float, mirror: bool, size: int) -> np.ndarray:
    """`m` followed by a turn (and a mirror) about the crop's centre: matrices of every kind."""
    a, half = np.deg2rad(angle_deg), size / 2
    r = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) * np.array([[-1.0], [1.0]] if mirror else 1.0)
    out = r @ m
    out[:, 2] += np.array([half, half]) - r @ np.array([half, half])
    return out


@pytest.mark.parametrize("spec", [CropSpec(112, 1.35), CropSpec(64, 1.35)])
def test_crops_equal_warp_affine(videos_dir, spec):
    rng = np.random.default_rng(1)
    frames = gray_frames(os.path.join(videos_dir, "pyfeat_single_face.mp4"), 3, 10)
    h, w = frames[0].shape
    mats, idx = [], []
    for _ in range(120):                       # in-image, partly and wholly outside; rotated, mirrored
        sq = np.array([rng.uniform(-60, w + 60), rng.uniform(-60, h + 60), rng.uniform(16, 1.5 * h)], np.float32)
        mats.append(turned(crop_matrix(sq, spec), float(rng.uniform(-40, 40)) * (rng.random() < 0.5),
                           bool(rng.random() < 0.3), spec.input_size))
        idx.append(int(rng.integers(0, len(frames))))
    ref = np.stack([warp_crop(frames[i], m, spec) for i, m in zip(idx, mats)])
    got = warp_crops(torch.from_numpy(np.stack(frames)), idx, np.stack(mats), spec)
    assert got.dtype == torch.uint8 and got.shape == ref.shape
    d = np.abs(got.numpy().astype(np.int16) - ref)
    assert d.max() <= 1 and (d > 0).mean() < 1e-3, (d.max(), (d > 0).mean())
    assert len(np.unique(ref)) > 100            # real image content, not a blank


def test_empty_batch():
    out = warp_crops(torch.zeros((1, 20, 30), dtype=torch.uint8), [], np.zeros((0, 2, 3)), CropSpec(112, 1.35))
    assert out.shape == (0, 112, 112)


class _TorchCropPredictor(LandmarkPredictor):
    """LandmarkPredictor whose crops come from `warp_crops` on a frame tensor (the GPU path)."""
    frames: torch.Tensor
    frame_of: np.ndarray

    def _pass(self, grays, squares):
        spec = self.cfg.crop
        mats = np.stack([crop_matrix(sq, spec) for sq in squares])
        crops = warp_crops(self.frames, self.frame_of, mats, spec)
        coords = self._forward_t(crops)
        mirrored = None
        if self.flip:
            mirrored = self._forward_t(crops.flip(2))[:, FLIP_PERM]
            mirrored[..., 0] = -mirrored[..., 0] - 2.0 / spec.input_size
            mirrored = np.stack([from_crop_coords(c, m, spec) for c, m in zip(mirrored, mats)])
        pts = np.stack([from_crop_coords(c, m, spec) for c, m in zip(coords, mats)])
        return ((pts + mirrored) / 2 if mirrored is not None else pts), mirrored

    @torch.inference_mode()
    def _forward_t(self, crops: torch.Tensor) -> np.ndarray:
        x = to_input_torch(crops).to(self.device).contiguous(memory_format=torch.channels_last)
        return self.model(x).float().cpu().numpy()


@pytest.mark.parametrize("model", ["ft68-resnet-s", "ft68-resnet-xs"])
def test_landmarks_from_torch_crops_equal_cpu_path(videos_dir, model):
    det = HaarDetector()
    cpu = LandmarkPredictor.load(model, device="cpu")
    grays, squares = [], []
    for name in ("pyfeat_WolfgangLanger_Pexels.mp4", "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
                 "liveportrait_driving_d6.mp4"):
        for g in gray_frames(os.path.join(videos_dir, name), 3, 12):
            boxes = det.detect(g)
            if len(boxes):
                grays.append(g)
                squares.append(cpu.squares_from_boxes(boxes[:1, :4])[0])
    assert len(squares) >= 6
    squares = np.stack(squares)
    ref, ref_score = cpu.predict_with_score(grays, squares)
    tp = _TorchCropPredictor(cpu.model, cpu.cfg, cpu.device, refine=cpu.refine, flip=cpu.flip)
    got, score = np.zeros_like(ref), np.zeros_like(ref_score)
    for shape in {g.shape for g in grays}:      # clips differ in size: one frame tensor per size
        faces = [i for i, g in enumerate(grays) if g.shape == shape]
        tp.frames = torch.from_numpy(np.stack([grays[i] for i in faces]))
        tp.frame_of = np.arange(len(faces))
        got[faces], score[faces] = tp.predict_with_score([grays[i] for i in faces], squares[faces])
    err = np.abs(got - ref).max()
    assert err <= 0.05, err
    assert np.allclose(score, ref_score, atol=1e-3)
    # the points are real landmarks: spread over the face square, not collapsed
    assert (square_from_points(ref)[:, 2] > 0.5 * squares[:, 2]).all()
