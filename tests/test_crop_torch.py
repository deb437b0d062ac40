"""Batched torch crops against the CPU crop contract (cv2.warpAffine) and the landmarks they give."""
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from facetracks.models.crop import CropSpec, crop_matrix, square_from_points, warp_crop
from facetracks.models.crop_torch import warp_crops
from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.detect import HaarDetector

from .clips import gray_frames
from .torch_calls import TorchCalls


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


def test_a_batch_is_a_few_dozen_tensor_calls_whatever_its_size():
    """On a GPU actor every tensor call hands the GIL back and forth with the stream threads: the
    warp's count must not grow with the faces (it was 146 before x and y and the taps went together)."""
    spec = CropSpec(64, 1.35)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 90, 120), dtype=np.uint8))
    calls = []
    for n in (2, 40):
        mats = np.stack([crop_matrix(np.array([60.0 + k, 45.0, 50.0], np.float32), spec) for k in range(n)])
        with TorchCalls() as c:
            got = warp_crops(frames, np.arange(n) % 3, mats, spec)
        calls.append(c.calls)
        ref = np.stack([warp_crop(frames[k % 3].numpy(), m, spec) for k, m in enumerate(mats)])
        assert np.abs(got.numpy().astype(int) - ref).max() <= 1
    assert calls[0] == calls[1] <= 60, calls


def test_empty_batch():
    out = warp_crops(torch.zeros((1, 20, 30), dtype=torch.uint8), [], np.zeros((0, 2, 3)), CropSpec(112, 1.35))
    assert out.shape == (0, 112, 112)


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
    # the device path: frames of several sizes sent once, every crop cut by warp_crops
    got, score = replace(cpu, device_crops=True).predict_with_score(grays, squares)
    err = np.abs(got - ref).max()
    assert err <= 0.05, err
    assert np.allclose(score, ref_score, atol=1e-3)
    # the points are real landmarks: spread over the face square, not collapsed
    assert (square_from_points(ref)[:, 2] > 0.5 * squares[:, 2]).all()


def test_a_pass_through_fixed_buffers_gives_the_eager_points(videos_dir):
    """What CUDA replays as one graph a pass (models/graphed_pass.py), run eagerly on the CPU with
    the same buffers: faces and frames padded up to their buckets, padding dropped; the points and
    scores of the device-crops path, for calls of several sizes, with and without the mirror."""
    from facetracks.models.graphed_pass import GraphedPass
    det = HaarDetector()
    cpu = replace(LandmarkPredictor.load("ft68-resnet-xs-hm", device="cpu", refine=1, flip=False, flip_last=True),
                  device_crops=True)
    grays, squares = [], []
    for name in ("pyfeat_WolfgangLanger_Pexels.mp4", "liveportrait_driving_d6.mp4"):
        for g in gray_frames(os.path.join(videos_dir, name), 9, 5):
            boxes = det.detect(g)
            if len(boxes):
                grays.append(g)
                squares.append(cpu.squares_from_boxes(boxes[:1, :4])[0])
    squares = np.stack(squares)
    assert len(squares) >= 12
    buffered = replace(cpu)
    buffered.pass_graphs = GraphedPass(buffered._device_pass, cpu.cfg.crop.input_size, eager=True)
    for n in (1, 5, len(squares)):                  # one size of frame per call
        same = [i for i in range(len(grays)) if grays[i].shape == grays[0].shape][:n]
        g, sq = [grays[i] for i in same], squares[same]
        ref, ref_score = cpu.predict_with_score(g, sq)
        got, score = buffered.predict_with_score(g, sq)
        assert np.abs(got - ref).max() < 1e-3 and np.allclose(score, ref_score, atol=1e-4)
    assert len(buffered.pass_graphs._graphs) >= 2 and buffered.pass_graphs.broken is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graphed_passes_give_the_eager_points_on_cuda(videos_dir):
    det = HaarDetector()
    pred = LandmarkPredictor.load("ft68-resnet-xs-hm", device="cuda")
    eager = replace(pred, pass_graphs=None)
    grays = [g for g in gray_frames(os.path.join(videos_dir, "liveportrait_driving_d6.mp4"), 12, 3)]
    squares = np.stack([pred.squares_from_boxes(det.detect(g)[:1, :4])[0] for g in grays])
    ref, ref_score = eager.predict_with_score(grays, squares)
    for _ in range(2):                          # the capture, then a replay
        got, score = pred.predict_with_score(grays, squares)
        assert np.abs(got - ref).max() < 0.05 and np.allclose(score, ref_score, atol=1e-3)
    assert pred.pass_graphs.broken is None and pred.pass_graphs._graphs
