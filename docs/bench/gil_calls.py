"""What a tensor call costs beside busy Python threads: the GPU actor's situation, on a CPU.

A GPU actor's batch thread launches the detector's and the network's tensor operations while the
stream threads run Python (following, Parquet rows). Each operation releases the GIL and must win
it back, and at the actor's switch interval (0.5 ms, jobs/worker.py) that wait is paid per call,
however small the call's arithmetic. This times the GPU paths' calls, on the CPU with one torch
thread, alone and beside 4 Python threads that only spin (the worst case), with their tensor-call
counts at CUDA's chunk sizes. Run from the repo: `python docs/bench/gil_calls.py` writes
docs/bench/gil_calls.json.
"""
import json
import os
import sys
import threading
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from facetracks.models.crop import CropSpec, crop_matrix              # noqa: E402
from facetracks.models.crop_torch import warp_crops                   # noqa: E402
from facetracks.pipeline import haar_torch                            # noqa: E402
from facetracks.pipeline.haar_torch import TorchHaarDetector          # noqa: E402
from facetracks.pipeline.video import iter_frames                     # noqa: E402
from tests.torch_calls import TorchCalls                              # noqa: E402

SAMPLE = os.path.join(HERE, "..", "..", "samples", "pyfeat_WolfgangLanger_Pexels.mp4")


def median_s(f, n: int = 15) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2]


def main() -> None:
    sys.setswitchinterval(0.0005)
    torch.set_num_threads(1)
    haar_torch._GATHER_LIMIT = haar_torch._GATHER_LIMIT_CUDA
    frames = [f.gray for _, f in zip(range(4), iter_frames(SAMPLE))]
    small = [np.ascontiguousarray(g[::4, ::4]) for g in frames]      # 160x90: little arithmetic, calls dominate
    spec = CropSpec(64, 1.35)
    h, w = frames[0].shape
    stack = torch.from_numpy(np.stack(frames))
    mats = np.stack([crop_matrix(np.array([w / 2 + k, h / 2, h / 3], np.float32), spec) for k in range(8)])
    det = dict(detect_side=160, scale_factor=1.2, min_neighbors=3)
    paths = {
        "warp_crops, 8 faces": lambda: warp_crops(stack, np.arange(8) % 4, mats, spec),
        "cascade, 4 frames, stage by stage": (lambda d=TorchHaarDetector(**det, group_stages=False, static=False): d.detect_batch(small)),
        "cascade, 4 frames, stages grouped (CUDA's op by op)": (lambda d=TorchHaarDetector(**det, group_stages=True, static=False): d.detect_batch(small)),
    }
    res = {"switch_interval_s": 0.0005, "busy_threads": 4, "paths": {}}
    for name, f in paths.items():
        f(), f()
        with TorchCalls() as c:
            f()
        res["paths"][name] = {"tensor_calls": c.calls, "alone_ms": 1e3 * median_s(f)}
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1
    spinners = [threading.Thread(target=spin) for _ in range(res["busy_threads"])]
    for t in spinners:
        t.start()
    try:
        for name, f in paths.items():
            res["paths"][name]["beside_busy_ms"] = 1e3 * median_s(f)
    finally:
        stop.set()
        for t in spinners:
            t.join()
    for name, r in res["paths"].items():
        r["wait_ms_per_call"] = (r["beside_busy_ms"] - r["alone_ms"]) / r["tensor_calls"]
        print(f"{name:52s} {r['tensor_calls']:5d} calls  alone {r['alone_ms']:7.2f} ms  beside busy threads "
              f"{r['beside_busy_ms']:8.2f} ms  ({r['wait_ms_per_call']:.2f} ms a call)")
    with open(os.path.join(HERE, "gil_calls.json"), "w") as fh:
        json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
