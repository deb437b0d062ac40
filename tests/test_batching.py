"""Several streams through one detector call and one forward pass (pipeline/batching.py): each
video's rows and ids are what it gets alone, and the batches really are shared."""
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch

from facetracks.models.crop import crop_matrices, warp_crop
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.batching import SharedStages
from facetracks.pipeline.profiles import load_profile

from .clips import gray_frames
from .compare import assert_tracks_match

CLIPS = [("pyfeat_single_face.mp4", None), ("liveportrait_driving_d0.mp4", None),
         ("sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", 2.5), ("pyfeat_no_face.mp4", 1.5)]


@pytest.fixture(scope="module")
def fast():
    return load_profile("fast", device="cpu")


def alone(videos_dir, parts, predictor=None):
    return [annotate_video(os.path.join(videos_dir, n), n, parts.detector, predictor or parts.predictor,
                           parts.follow, end_s=end).table.to_pandas() for n, end in CLIPS]


def together(videos_dir, parts, predictor=None) -> tuple[list, SharedStages]:
    # a long wait_s: every call waits for the other streams (a slow CI machine cannot split batches)
    shared = SharedStages(parts.detector, predictor or parts.predictor, wait_s=2.0)

    def one(clip):
        name, end = clip
        with shared.stream() as (det, pred):
            return annotate_video(os.path.join(videos_dir, name), name, det, pred, parts.follow, end_s=end)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(CLIPS)) as pool:
        results = list(pool.map(one, CLIPS))
    shared.wall_s = time.perf_counter() - t0
    return [r.table.to_pandas() for r in results], shared


def test_streams_together_give_each_video_its_own_rows(videos_dir, fast):
    ref = alone(videos_dir, fast)
    got, shared = together(videos_dir, fast)
    for a, b in zip(ref, got):
        assert_tracks_match(a, b)
    assert sum(df.track_id.notna().sum() for df in ref) > 100       # faces were followed, not only empty frames
    st = shared.stats
    # one stream alone sends at most one chunk's faces (batch_size frames) per call
    assert st.landmark_calls > 0 and st.detect_calls > 0
    assert st.landmark_crops / st.landmark_calls > max(fast.follow.batch_size, 1) * 1.2, st
    assert st.detect_frames > st.detect_calls                         # several streams' frames per detector call
    assert st.detect_rects > 0              # rescans of what changed (change_scan.py) went through them too
    # the stages' time, told apart: running batches, calls waiting for the other streams, idle
    told = st.detect_s + st.landmark_s + st.waiting_s + st.idle_s
    assert st.waiting_s > 0 and st.idle_s > 0 and 0.5 * shared.wall_s < told <= shared.wall_s, (told, shared.wall_s, st)


def test_device_crops_through_shared_stages_keep_rows(videos_dir, fast):
    """The GPU actor's path (crops cut by warp_crops from frames sent once), run on the CPU."""
    ref = alone(videos_dir, fast)
    got, _ = together(videos_dir, fast, replace(fast.predictor, device_crops=True))
    for a, b in zip(ref, got):
        assert_tracks_match(a, b, points_px=0.05, score=1e-3)


class _FailsOnSmallFrames:
    """A detector that fails on one stream's frames (640x360): that stream sees the error, the
    others finish."""
    def __init__(self, inner):
        self.inner = inner

    def detect(self, gray):
        if gray.shape == (360, 640):
            raise RuntimeError("detector broke")
        return self.inner.detect(gray)


def test_an_error_reaches_its_stream_and_the_others_finish(videos_dir, fast):
    shared = SharedStages(_FailsOnSmallFrames(fast.detector), fast.predictor)
    errors, done = [], []
    lock = threading.Lock()

    def one(clip):
        name, end = clip
        try:
            with shared.stream() as (det, pred):
                r = annotate_video(os.path.join(videos_dir, name), name, det, pred, fast.follow, end_s=end)
            with lock:
                done.append((name, r.stats.frames))
        except RuntimeError as e:
            with lock:
                errors.append((name, str(e)))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, CLIPS[:2]))
    assert errors == [("pyfeat_single_face.mp4", "detector broke")]
    assert [n for n, _ in done] == ["liveportrait_driving_d0.mp4"] and done[0][1] == 78


class _SmallDevice:
    """The real model and detector on a device that holds `crops` crops and `frames` frames a call
    at most: a larger call raises what torch raises when a GPU runs out of memory."""
    def __init__(self, parts, crops: int, frames: int):
        self.predictor, self.detector, self.crops, self.frames = parts.predictor, parts.detector, crops, frames

    def squares_from_boxes(self, boxes):
        return self.predictor.squares_from_boxes(boxes)

    def predict_with_score(self, grays, squares):
        if len(grays) > self.crops:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(grays)} crops")
        return self.predictor.predict_with_score(grays, squares)

    def detect(self, gray):
        return self.detector.detect(gray)

    def detect_batch(self, grays):
        if len(grays) > self.frames:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(grays)} frames")
        return [self.detector.detect(g) for g in grays]


def test_a_batch_that_runs_out_of_memory_is_run_in_halves_and_each_video_keeps_its_rows(videos_dir, fast):
    """Four streams whose merged calls do not fit (more than one chunk of one face and 8 crops, or 2 frames, at once): each
    batch that fails is run again in halves, down to one stream's call, and every video gets the
    rows it gets alone; a call too large by itself still fails, its video alone."""
    ref = alone(videos_dir, fast)
    small = _SmallDevice(fast, crops=fast.follow.batch_size + 8, frames=2)
    shared = SharedStages(small, small, wait_s=2.0)

    def one(clip):
        name, end = clip
        with shared.stream() as (det, pred):
            return annotate_video(os.path.join(videos_dir, name), name, det, pred, fast.follow, end_s=end)
    with ThreadPoolExecutor(len(CLIPS)) as pool:
        got = [r.table.to_pandas() for r in pool.map(one, CLIPS)]
    for a, b in zip(ref, got):
        assert_tracks_match(a, b)
    assert shared.stats.memory_splits > 0 and shared.stats.landmark_calls > 0
    tiny = _SmallDevice(fast, crops=0, frames=8)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        with SharedStages(tiny, tiny).stream() as (det, pred):
            annotate_video(os.path.join(videos_dir, CLIPS[0][0]), CLIPS[0][0], det, pred, fast.follow, end_s=1.0)


def test_a_lone_stream_is_not_held_up(videos_dir, fast):
    """One stream never waits for company: every call runs at once (no wait_s per call)."""
    shared = SharedStages(fast.detector, fast.predictor, wait_s=10.0)
    name, end = CLIPS[0]
    with shared.stream() as (det, pred):
        r = annotate_video(os.path.join(videos_dir, name), name, det, pred, fast.follow, end_s=end)
    assert r.stats.frames == 72 and r.seconds < 10.0
    assert np.isfinite(shared.stats.landmark_s)


def test_forward_and_multi_frame_detect_calls_merge_and_answer_each_caller(videos_dir, fast):
    """A stage server's calls (jobs/stage_server.py): crops cut elsewhere, with and without their
    mirror images, and lists of frames; merged into batches, each caller gets what it alone would."""
    pred, det = fast.predictor, fast.detector
    grays = gray_frames(os.path.join(videos_dir, "liveportrait_driving_d6.mp4"), 6, 5)
    sq = np.stack([pred.squares_from_boxes(det.detect(g)[:1, :4])[0] for g in grays])
    mats = crop_matrices(sq, pred.cfg.crop)
    crops = np.stack([warp_crop(g, m, pred.cfg.crop) for g, m in zip(grays, mats)])
    asks = [("forward", crops[:2], False), ("forward", crops[2:5], True), ("forward", crops[5:], True),
            ("detect", grays[:3]), ("detect", grays[3:4])]
    shared = SharedStages(det, pred, wait_s=2.0)
    everyone = threading.Barrier(len(asks))

    def one(ask):
        with shared.stream():
            everyone.wait()                   # every caller counted before the first call: one batch
            return shared.call(ask[0], *ask[1:])
    with ThreadPoolExecutor(len(asks)) as pool:
        got = list(pool.map(one, asks))
    for ask, res in zip(asks[:3], got[:3]):
        out, contrast = pred.forward_crops(ask[1], ask[2])
        assert res[0].shape == out.shape and np.abs(res[0] - out).max() < 1e-3 and np.abs(res[1] - contrast).max() < 1e-4
    for ask, res in zip(asks[3:], got[3:]):
        assert isinstance(res, list) and len(res) == len(ask[1])
        assert all(np.array_equal(a, det.detect(g)) for a, g in zip(res, ask[1]))
    st = shared.stats
    assert st.landmark_crops == len(crops) and st.landmark_calls == 2      # merged: one pass per mirror flag
    assert st.detect_frames == 4 and st.detect_calls == 1
