"""The torch Haar cascade against OpenCV's: resizes bit for bit, raw windows identical, boxes matched."""
import os

import av
import cv2
import numpy as np
import pytest
import torch

from facetracks.pipeline.detect import HaarDetector, _cascade_path
from facetracks.pipeline.haar_cascade import load_cascade
from facetracks.pipeline.haar_group import group_rectangles
from facetracks.pipeline.haar_resize import resize_area, resize_linear_exact
from facetracks.pipeline import haar_torch
from facetracks.pipeline.haar_torch import TorchHaarDetector, _stage_groups
from facetracks.pipeline.tracking import box_iou
from facetracks.training.data import load_split

from .clips import gray_frames
from .torch_calls import TorchCalls

CLIPS = ("pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4", "pyfeat_no_face.mp4",
         "pyfeat_face_noface.mov", "liveportrait_driving_d0.mp4", "liveportrait_driving_d9.mp4",
         "liveportrait_source_s18.mp4", "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The detector's CPU work is thousands of small tensor ops; with torch's 2 OpenMP threads on
    a busy 2-core machine the threads spin against each other (measured 4x slower), so this
    module runs single-threaded and restores the setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _matched(ref: np.ndarray, got: np.ndarray, min_iou: float = 0.8) -> int:
    """OpenCV boxes with their own torch box at IoU >= min_iou (greedy, best pairs first)."""
    if len(ref) == 0 or len(got) == 0:
        return 0
    m = box_iou(ref[:, :4], got[:, :4])
    n = 0
    while m.size and m.max() >= min_iou:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        m[i, :], m[:, j] = -1, -1
        n += 1
    return n


def test_cascade_parsed_like_opencv():
    c = load_cascade(_cascade_path("haarcascade_frontalface_default.xml"))
    assert c.window == (24, 24) and len(c.stage_ends) == 25 and c.stage_ends[-1] == len(c.threshold) == 2913
    assert c.stage_ends[0] == 9 and np.isclose(c.stage_threshold[0], -5.0425500869750977 - 1e-5)
    # every feature has 2 or 3 rects, inside the window
    nrect = (c.weights != 0).sum(1)
    assert set(np.unique(nrect)) <= {2, 3}
    assert (c.rects[..., 0] + c.rects[..., 2] <= 24).all() and (c.rects[..., 1] + c.rects[..., 3] <= 24).all()


def test_resizes_are_opencvs_bit_for_bit(videos_dir):
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(30, 260, 2))
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        dw, dh = int(rng.integers(24, w + 1)), int(rng.integers(24, h + 1))
        t = torch.from_numpy(img)[None]
        assert np.array_equal(resize_linear_exact(t, dw, dh)[0].numpy(),
                              cv2.resize(img, (dw, dh), interpolation=cv2.INTER_LINEAR_EXACT))
        aw, ah = int(rng.integers(8, w // 2 + 9)), int(rng.integers(8, h // 2 + 9))
        assert np.array_equal(resize_area(t, aw, ah)[0].numpy(),
                              cv2.resize(img, (aw, ah), interpolation=cv2.INTER_AREA))
    # the real downscales: 960x540 (x1.5) and 1280x720 (x2) to 640 px, 640x360 to 320 px
    for name, size in (("pyfeat_no_face.mp4", (640, 360)), ("liveportrait_source_s18.mp4", (640, 360)),
                       ("pyfeat_single_face.mp4", (320, 180)), ("liveportrait_driving_d0.mp4", (320, 320))):
        g = gray_frames(os.path.join(videos_dir, name), 1, 1)[0]
        assert np.array_equal(resize_area(torch.from_numpy(g)[None], *size)[0].numpy(),
                              cv2.resize(g, size, interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("mode", [dict(group_stages=False, static=False), dict(group_stages=True, static=False),
                                  dict(static=True)])
def test_raw_windows_and_weights_identical_to_opencv(videos_dir, mode):
    """Before grouping: the same windows pass all 25 stages, with the same final-stage sums,
    stage by stage (the CPU's way), with stages evaluated in groups, and in fixed-size slots (what
    CUDA replays as a graph, here op by op)."""
    clf = cv2.CascadeClassifier(_cascade_path("haarcascade_frontalface_default.xml"))
    g = gray_frames(os.path.join(videos_dir, "pyfeat_single_face.mp4"), 1, 1)[0]
    for sf in (1.1, 1.2):
        rects, _, weights = clf.detectMultiScale3(g, scaleFactor=sf, minNeighbors=0, minSize=(24, 24),
                                                  outputRejectLevels=True)
        ref = sorted(zip(map(tuple, np.asarray(rects).tolist()), np.ravel(weights).tolist()))
        det = TorchHaarDetector(scale_factor=sf, **mode)
        r, wt = det.candidates(torch.from_numpy(g)[None], 24)[0]
        r, wt = group_rectangles(r, wt, 0, 0.2, (g.shape[1], g.shape[0]))       # clipping only
        got = sorted(zip(map(tuple, r.tolist()), wt.tolist()))
        assert len(ref) > 10
        assert got == ref
        assert det.static_overflows == 0


@pytest.mark.parametrize("profile,per_clip", [(dict(scale_factor=1.1, detect_side=640), 1),
                                              (dict(scale_factor=1.2, detect_side=320), 2)])
def test_boxes_match_opencv_on_clips_and_identity_images(videos_dir, data_dir, profile, per_clip):
    """The accurate and fast profiles' detector settings, on real clips (frames of 480 to 1280 px,
    downscaled as HaarDetector does) and identity-test images (~200 px)."""
    cv_det, t_det = HaarDetector(**profile), TorchHaarDetector(**profile)
    ref_n = got_n = matched = 0
    for name in CLIPS:
        frames = gray_frames(os.path.join(videos_dir, name), per_clip, 25)
        for f, got in zip(frames, t_det.detect_batch(frames)):
            ref = cv_det.detect(f)
            ref_n, got_n, matched = ref_n + len(ref), got_n + len(got), matched + _matched(ref, got)
    for s in load_split(data_dir, "identity", "test", limit=40):
        ref, got = cv_det.detect(s.gray), t_det.detect(s.gray)
        assert got.dtype == np.float32 and got.shape[1] == 5
        ref_n, got_n, matched = ref_n + len(ref), got_n + len(got), matched + _matched(ref, got)
    assert ref_n >= 40                          # faces were there to be found
    assert matched >= 0.98 * ref_n, (matched, ref_n)
    assert got_n - matched <= 0.02 * ref_n, (got_n, matched, ref_n)


def test_stage_groups_cover_every_stage_once_in_order():
    for n in (1, 3, 5, 6, 20, 25, 40):
        groups = _stage_groups(n)
        assert [s for a, b in groups for s in range(a, b)] == list(range(n))
        assert all(b > a for a, b in groups)
    assert len(_stage_groups(25)) == 9 and _stage_groups(25)[:5] == [(k, k + 1) for k in range(5)]


def test_grouped_call_makes_few_tensor_calls_whatever_the_frames(videos_dir, monkeypatch):
    """The GPU's way (stages in groups, CUDA's gather chunks): a few hundred tensor calls a
    detector call, nearly as many for 8 frames as for 1. On a GPU actor each call hands the GIL
    back and forth with the stream threads; evaluated stage by stage it was ~1,300 for 4 frames."""
    monkeypatch.setattr(haar_torch, "_GATHER_LIMIT", haar_torch._GATHER_LIMIT_CUDA)
    frames = gray_frames(os.path.join(videos_dir, "liveportrait_driving_d6.mp4"), 4, 3)
    counts = {}
    for grouped in (False, True):
        det = TorchHaarDetector(scale_factor=1.2, min_neighbors=3, detect_side=320, group_stages=grouped)   # fast's
        det.detect_batch(frames[:1])            # the plan and the stages sent to the device, once
        for n in (1, 4):
            with TorchCalls() as c:
                found = det.detect_batch(frames[:n])
            assert all(len(f) for f in found)
            counts[grouped, n] = c.calls
    assert counts[True, 4] <= 500 and counts[True, 4] <= 1.5 * counts[True, 1], counts
    assert counts[True, 4] < 0.6 * counts[False, 4], counts


def test_fixed_slots_that_overflow_fall_back_to_the_compacted_scan(videos_dir, monkeypatch):
    """A batch whose survivors outgrow `survivors_static`'s slots is scanned again op by op: the
    same boxes, and the overflow counted."""
    frames = gray_frames(os.path.join(videos_dir, "liveportrait_driving_d6.mp4"), 2, 3)
    ref = TorchHaarDetector(detect_side=320, static=False).detect_batch(frames)
    det = TorchHaarDetector(detect_side=320, static=True)
    assert all(np.array_equal(a, b) for a, b in zip(ref, det.detect_batch(frames))) and det.static_overflows == 0
    monkeypatch.setattr(haar_torch, "capacities", lambda windows, stages, frames: [64] * stages)
    got = det.detect_batch(frames)
    assert det.static_overflows == 1 and all(len(r) for r in ref)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_give_the_op_by_op_boxes(videos_dir):
    frames = gray_frames(os.path.join(videos_dir, "liveportrait_driving_d6.mp4"), 3, 3)
    graphed = TorchHaarDetector(device="cuda", static=True)
    ref = TorchHaarDetector(device="cuda", static=False).detect_batch(frames)
    for _ in range(3):                         # op by op, the capture, a replay
        got = graphed.detect_batch(frames)
        assert graphed.graphs_broken is None and graphed.static_overflows == 0
        assert all(np.array_equal(a, b) for a, b in zip(ref, got))
    assert len(graphed._graphed._graphs) == 1


def test_batch_tensor_input_equals_singlegray_frames(videos_dir):
    frames = gray_frames(os.path.join(videos_dir, "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"), 2, 20)
    det = TorchHaarDetector()
    one = [det.detect(f) for f in frames]
    many = det.detect_batch(torch.from_numpy(np.stack(frames)))
    assert len(many) == 2 and all(len(o) for o in one)
    for a, b in zip(one, many):
        assert np.array_equal(a, b)
    # scores sorted high to low, boxes inside the frame, in full-resolution pixels
    a = one[0]
    assert (np.diff(a[:, 4]) <= 0).all()
    assert (a[:, 0] >= 0).all() and (a[:, 0] + a[:, 2] <= frames[0].shape[1]).all()


def test_blank_tiny_and_empty_inputs():
    det = TorchHaarDetector()
    assert det.detect(np.full((240, 320), 128, np.uint8)).shape == (0, 5)
    assert det.detect(np.zeros((20, 20), np.uint8)).shape == (0, 5)        # smaller than the window
    assert det.detect_batch([]) == []
    with pytest.raises(ValueError):
        det.detect_batch(torch.zeros((2, 30, 30), dtype=torch.float32))


def test_annotate_with_the_torch_detector_gives_the_opencv_rows(videos_dir):
    """`--detector torch` end to end: the same boxes, so the same tracks, points and scores."""
    from facetracks.pipeline.annotate import annotate_video
    from facetracks.pipeline.profiles import build_parts, get_profile
    prof = get_profile("fast")
    clip = os.path.join(videos_dir, "pyfeat_single_face.mp4")
    tables = {}
    for backend in ("opencv", "torch"):
        parts = build_parts("fast", prof.model, {**prof.detector, "backend": backend}, prof.follow, prof.predictor)
        assert isinstance(parts.detector, TorchHaarDetector) == (backend == "torch")
        tables[backend] = annotate_video(clip, "c", parts.detector, parts.predictor, parts.follow).table.to_pandas()
    a, b = tables["opencv"], tables["torch"]
    assert a[["frame_index", "track_id"]].equals(b[["frame_index", "track_id"]]) and a.track_id.notna().any()
    np.testing.assert_allclose(a.drop(columns=["video"]).to_numpy(float), b.drop(columns=["video"]).to_numpy(float),
                               atol=1e-4, equal_nan=True)
