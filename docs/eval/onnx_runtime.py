"""ONNX Runtime on the CPU, issue 15's lever (README "Speed", measured and not taken).

1. Milliseconds a forward call, by batch: torch as the predictor runs it (bfloat16 convolutions
   where the CPU has them), torch float32, ONNX Runtime float32, and its static int8 (per-channel
   QDQ, calibrated on 982 crops of the train identities) for the `fast` model (one thread) and
   `accurate`'s (two).
2. What int8 does to the `fast` model: val NME reading each still from its label square as `fast`
   reads it (refine + mirrored last pass), how far the points move and how far the score moves.
3. `fast` with the calls of up to 8 crops sent to ONNX Runtime float32, against torch alone:
   in-process A/B on the bench's clips, 5 interleaved rounds, medians.

Needs what the project does not install: `pip install onnxruntime onnx`. Writes
docs/eval/onnx_runtime.json. Run from the repo: `python docs/eval/onnx_runtime.py` (about 8 minutes).
"""
import io
import json
import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import facetracks.jobs.bench_paths as bp
from facetracks.models import inference
from facetracks.models.crop import crop_matrices, square_from_points, to_input, warp_crop
from facetracks.models.landmark_net import fused_for_inference
from facetracks.models.precision import forward_mixed
from facetracks.models.registry import load_model
from facetracks.pipeline.profiles import load_profile
from facetracks.training.data import load_split
from facetracks.training.metrics import nme

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "shared", "data", "ytf68")
REAL = os.path.join(HERE, "..", "..", "..", "shared", "videos", "liveportrait_driving_d6.mp4")


def exported(name: str) -> tuple[bytes, object, torch.nn.Module]:
    model, cfg = load_model(name, torch.device("cpu"))
    f32 = fused_for_inference(model)
    s = cfg.crop.input_size
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(f32, torch.zeros(2, 1, s, s), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17)
    return buf.getvalue(), cfg, model


def session(onnx_bytes: bytes, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])


def int8(onnx_bytes: bytes, cfg) -> bytes:
    train = load_split(DATA, "identity", "train")[::6]
    rng = np.random.default_rng(0)
    sq = square_from_points(np.stack([t.points for t in train]))
    sq[:, :2] += rng.normal(0, 0.05, (len(sq), 2)) * sq[:, 2:3]
    sq[:, 2] *= np.exp(rng.normal(0, 0.05, len(sq)))
    crops = to_input(np.stack([warp_crop(t.gray, m, cfg.crop) for t, m in zip(train, crop_matrices(sq, cfg.crop))]))
    crops = np.concatenate([crops, crops[..., ::-1]]).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": crops[i:i + 32]} for i in range(0, len(crops), 32)])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f32.onnx"), os.path.join(d, "int8.onnx")
        open(src, "wb").write(onnx_bytes)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return open(dst, "rb").read()


def ms(fn, n: int = 40) -> float:
    for _ in range(5):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return round(float(np.median(ts)) * 1e3, 3)


def call_times(name: str, threads: int, q: bytes | None) -> dict:
    onnx_bytes, cfg, model = exported(name)
    bf = fused_for_inference(model).body_to(torch.bfloat16)
    f32 = fused_for_inference(model)
    a, b = session(onnx_bytes, threads), (session(q, threads) if q else None)
    torch.set_num_threads(threads)
    s, out = cfg.crop.input_size, {}
    for n in (1, 2, 4, 8, 16, 48):
        x = np.random.rand(n, 1, s, s).astype(np.float32)
        xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            row = {"torch_bf16": ms(lambda: forward_mixed(bf, xt, True)), "torch_f32": ms(lambda: f32(xt))}
        row["ort_f32"] = ms(lambda: a.run(None, {"x": x}))
        if b:
            row["ort_int8"] = ms(lambda: b.run(None, {"x": x}))
        out[n] = row
        print(name, n, row, flush=True)
    torch.set_num_threads(2)
    return out


def patched_net(sess: ort.InferenceSession, up_to: int):
    torch_net = inference.LandmarkPredictor._net

    def net(self, x, model):
        if len(x) <= up_to:
            return torch.from_numpy(sess.run(None, {"x": x.float().contiguous().numpy()})[0])
        return torch_net(self, x, model)
    return net


def int8_accuracy(q: bytes) -> dict:
    pred = load_profile("fast").predictor
    val = load_split(DATA, "identity", "val")
    gts = np.stack([v.points for v in val])
    grays, squares = [v.gray for v in val], square_from_points(gts)
    torch_net = inference.LandmarkPredictor._net
    base, base_score = pred.predict_with_score(grays, squares)
    inference.LandmarkPredictor._net = patched_net(session(q, 1), 1 << 30)
    got, score = pred.predict_with_score(grays, squares)
    inference.LandmarkPredictor._net = torch_net
    iod = np.linalg.norm(gts[:, 36] - gts[:, 45], axis=1)
    return {"val_nme_torch": float(nme(base, gts).mean()), "val_nme_int8": float(nme(got, gts).mean()),
            "points_moved_iod": float((np.linalg.norm(got - base, axis=2).mean(1) / iod).mean()),
            "score_moved_mean": float(np.abs(score - base_score).mean())}


def small_calls_ab(work: str) -> dict:
    clips = {"sample": bp.SAMPLE, "synthetic_640x480": bp.synthetic_clip(os.path.join(work, "s.mp4"), (640, 480), 240),
             "real_640x480": bp.synthetic_clip(os.path.join(work, "r.mp4"), (640, 480), 240, source=REAL)}
    parts = load_profile("fast")
    torch_net = inference.LandmarkPredictor._net
    hybrid = patched_net(session(exported("ft68-resnet-xs-hm")[0], 1), 8)
    out = {}
    for name, path in clips.items():
        bp.full_path(path, parts)
        fps = {"torch": [], "ort_up_to_8": []}
        for r in range(5):
            for v in ("torch", "ort_up_to_8") if r % 2 == 0 else ("ort_up_to_8", "torch"):
                inference.LandmarkPredictor._net = torch_net if v == "torch" else hybrid
                fps[v].append(bp.full_path(path, parts)["fps"])
        inference.LandmarkPredictor._net = torch_net
        out[name] = {k: statistics.median(v) for k, v in fps.items()}
        out[name]["ratio"] = out[name]["ort_up_to_8"] / out[name]["torch"]
        print(name, out[name], flush=True)
    return out


if __name__ == "__main__":
    fast_bytes, fast_cfg, _ = exported("ft68-resnet-xs-hm")
    q = int8(fast_bytes, fast_cfg)
    res = {"onnxruntime": ort.__version__,
           "call_ms": {"fast_1_thread": call_times("ft68-resnet-xs-hm", 1, q),
                       "accurate_2_threads": call_times("ft68-resnet-slim-hm", 2, None)},
           "fast_int8": int8_accuracy(q)}
    print(res["fast_int8"], flush=True)
    with tempfile.TemporaryDirectory() as work:
        res["fast_small_calls_to_ort"] = small_calls_ab(work)
    with open(os.path.join(HERE, "onnx_runtime.json"), "w") as f:
        json.dump(res, f, indent=2)
