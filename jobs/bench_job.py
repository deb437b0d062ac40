"""The whole Ray `annotate` job timed per actor count (`facetracks bench --actors`): the corpus
of real clips it runs on (one per source with a face, looped to length), the GPU sampled while
each run goes, and per run its fps, steady fps and batching figures. Apart from the per-video
paths (bench_paths.py) because it starts Ray and runs the job as users do, not one path in-process.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np

from facetracks.models.registry import resolve_weights
from facetracks.pipeline.profiles import get_profile
from facetracks.pipeline.video import iter_frames

from .bench_paths import ROOT, SAMPLE
from .clips import letterboxed, loop_video, write_video

CLIPS = os.path.join(os.path.dirname(ROOT), "shared", "videos")
VIDEO_EXT = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def source_fps(path: str, default: int = 30) -> int:
    """The source's frame rate rounded to a whole number (`default` when it gives none sensible)."""
    with av.open(path) as c:
        rate = c.streams.video[0].average_rate
    return round(float(rate)) if rate and 5 <= float(rate) <= 120 else default


def corpus_clip(path: str, source: str, seconds: float, size: tuple[int, int] = (640, 480)) -> dict:
    """`seconds` of `source` letterboxed into `size` at the source's (rounded) frame rate: its
    frames encoded once, cheaply (x264 ultrafast, no B-frames, a keyframe every 2 s, as real video
    has), then looped to length by copying packets (`clips.loop_video`), so a long clip costs what
    one pass over its source costs."""
    fps = source_fps(source)
    total = max(1, round(seconds * fps))
    once = path + ".once.mp4"
    n = [0]

    def counted():
        for img in letterboxed(source, size, total, loop=False):
            n[0] += 1
            yield img
    write_video(once, counted(), fps=fps, bframes=False, preset="ultrafast", gop=2 * fps)
    if n[0] >= total:
        os.replace(once, path)
    else:
        loop_video(once, path, total)
        os.remove(once)
    return {"file": os.path.basename(path), "source": os.path.basename(source), "fps": fps, "frames": total,
            "seconds": total / fps, "source_frames": n[0], "loops": math.ceil(total / n[0])}


def has_face(path: str, detector, frames: int = 300, every: int = 15) -> bool:
    """Whether `detector` finds a face on any of the first `frames` frames, every `every`-th."""
    for f in iter_frames(path):
        if f.index >= frames:
            break
        if f.index % every == 0 and len(detector.detect(f.gray)):
            return True
    return False


def corpus_sources(clips_dir: str | None, detector) -> tuple[list[str], list[str]]:
    """The bundled sample, then every video in `clips_dir` (sorted, one per file name) on which
    `detector` finds a face; also the names skipped for having none."""
    names = sorted(n for n in os.listdir(clips_dir) if n.lower().endswith(VIDEO_EXT)) if clips_dir and os.path.isdir(clips_dir) else []
    out, seen, skipped = [SAMPLE], {os.path.basename(SAMPLE)}, []
    for n in names:
        if n in seen:
            continue
        seen.add(n)
        p = os.path.join(clips_dir, n)
        (out if has_face(p, detector) else skipped).append(p)
    return out, [os.path.basename(p) for p in skipped]


def make_corpus(workdir: str, k: int, seconds: float, clips_dir: str | None, detector,
                size: tuple[int, int] = (640, 480)) -> dict:
    """`k` clips of `seconds` each, each from a different source while there are enough (then the
    sources again, in order), written in parallel."""
    sources, skipped = corpus_sources(clips_dir, detector)
    picks = [sources[i % len(sources)] for i in range(k)]
    paths = [os.path.join(workdir, f"corpus_{i:02d}_{os.path.splitext(os.path.basename(s))[0]}.mp4")
             for i, s in enumerate(picks)]
    t = time.perf_counter()
    with ThreadPoolExecutor(max(1, min(k, os.cpu_count() or 1))) as ex:
        files = list(ex.map(lambda a: corpus_clip(a[0], a[1], seconds, size), zip(paths, picks)))
    for f, p in zip(files, paths):
        f["path"] = p
    return {"clips": k, "seconds_each": seconds, "size": list(size), "files": files,
            "frames": sum(f["frames"] for f in files), "sources_without_face": skipped,
            "write_seconds": time.perf_counter() - t}


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all the machine's cores since boot (Linux's /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)        # idle + iowait
    return sum(ticks) - idle, sum(ticks)


class GpuSampler:
    """`nvidia-smi` every `every` seconds in a background thread while a block runs: GPU
    utilisation (%, the mean over the node's GPUs at each sample) and memory used (MiB, summed).
    Where nvidia-smi is absent or fails, every figure is None. Also the machine's CPU use over the
    block (%, of all cores, /proc/stat; None elsewhere): whether the cores, not the GPU, are the wall."""
    QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, every: float = 0.25):
        self.every, self.util, self.mem = every, [], []
        self._stop, self._thread = threading.Event(), None
        self._cpu0 = self._cpu1 = None

    def _sample(self) -> bool:
        try:
            out = subprocess.run(self.QUERY, capture_output=True, text=True, timeout=5, check=True).stdout
            rows = [[float(x) for x in line.split(",")] for line in out.strip().splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError, ValueError):
            return False
        if not rows:
            return False
        self.util.append(sum(r[0] for r in rows) / len(rows))
        self.mem.append(sum(r[1] for r in rows))
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> "GpuSampler":
        self._cpu0 = cpu_jiffies()
        if shutil.which(self.QUERY[0]) and self._sample():
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._cpu1 = cpu_jiffies()
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def summary(self) -> dict:
        u = np.asarray(self.util)
        cpu = None
        if self._cpu0 and self._cpu1 and self._cpu1[1] > self._cpu0[1]:
            cpu = 100.0 * (self._cpu1[0] - self._cpu0[0]) / (self._cpu1[1] - self._cpu0[1])
        return {"gpu_samples": len(u), "gpu_util_mean": float(u.mean()) if len(u) else None,
                "gpu_util_p90": float(np.percentile(u, 90)) if len(u) else None,
                "gpu_mem_peak_mb": float(max(self.mem)) if self.mem else None, "cpu_util_mean": cpu}


def run_figures(summary: dict, frames: int, seconds: float) -> dict:
    """Per run: fps per GPU used, steady fps (actor start-up left out, when the summary says how
    long it took: `actors.ready_s`), the actors' batching counters and the stage shares they give."""
    a = summary["actors"]
    gpus = max(1, math.ceil(a["count"] * (a.get("gpus_per_actor") or 0) - 1e-9))
    ready = a.get("ready_s")
    busy = seconds - ready if ready is not None and seconds > ready else None
    out = {"gpus_used": gpus, "fps_per_gpu": frames / seconds / gpus, "ready_s": ready,
           "steady_fps": frames / busy if busy else None, "batching": a.get("batching"), "stage_share": None}
    b = a.get("batching")
    if b:
        actor_s = a["count"] * (busy or seconds)       # the actors' seconds once started
        out["stage_share"] = {
            "detect": b["detect_s"] / actor_s,
            "landmarks": b["landmark_s"] / actor_s,
            "waiting": b.get("waiting_s", 0.0) / actor_s,     # calls waiting for the other streams
            "idle": b.get("idle_s", 0.0) / actor_s,           # no call: every stream decoding or following
            "frames_per_detect_call": b["detect_frames"] / b["detect_calls"] if b.get("detect_calls") else None,
            "crops_per_landmark_pass": b["landmark_crops"] / b["landmark_calls"] if b.get("landmark_calls") else None}
        if b.get("process_cpu_s") is not None:       # the actors' processes, every thread: CPU ms a frame
            out["actor_cpu_ms_per_frame"] = 1000 * b["process_cpu_s"] / frames
    return out


def scaling(videos: list[str], profile: str, counts: list, segment_s: float, address: str | None,
            gpus_per_actor: float | None = None, streams: int = 0, detector: dict | None = None,
            on_run=None, stage_server: bool = False) -> dict:
    """The whole `annotate` job (Ray actors, segments, Parquet) per actor count, same inputs,
    fresh output folder each time; efficiency = fps(n) / (n * fps(first count) / first count).
    `counts`: actor counts, or (count, GPU share of each actor) pairs (share None: `gpus_per_actor`).
    `detector`: the detector settings (the profile's, with a backend) when not the profile's own.
    The GPU is sampled while each run goes (`GpuSampler`); `on_run(row)` is called after each run."""
    from .inputs import VideoItem
    from .ray_runner import RunOptions, init_ray, run_annotate
    init_ray(address)                   # Ray's own start-up is not the job's time; actor start-up is
    prof = get_profile(profile)
    with open(resolve_weights(prof.model), "rb") as f:   # bytes, as annotate sends them: no node needs the file
        weights = f.read()
    items = [VideoItem(os.path.abspath(v), os.path.basename(v)) for v in videos]
    rows = []
    for c in counts:
        n, gpa = c if isinstance(c, tuple) else (c, None)
        gpa = gpus_per_actor if gpa is None else gpa
        with tempfile.TemporaryDirectory() as out:
            opt = RunOptions(
                out_dir=out, weights=weights, model_id=prof.model, detector=dict(detector or prof.detector),
                follow=dict(prof.follow), predictor=dict(prof.predictor), address=address, actors=n,
                segment_s=segment_s, gpus_per_actor=gpa, streams=streams, stage_server=stage_server)
            with GpuSampler() as gpu:
                t = time.perf_counter()
                summary = run_annotate(items, opt)
                dt = time.perf_counter() - t
        failed = [k for k, v in summary["videos"].items() if v["status"] != "ok"]
        if failed:
            raise RuntimeError(f"scaling run with {n} actors failed on {failed}")
        frames = sum(v["frames"] for v in summary["videos"].values())
        rows.append({"actors": summary["actors"]["count"], "requested": n, "frames": frames, "seconds": dt, "fps": frames / dt,
                     "device": summary["actors"]["device"], "cpus_per_actor": summary["actors"]["cpus_per_actor"],
                     "gpus_per_actor": summary["actors"]["gpus_per_actor"],
                     "streams": summary["actors"].get("streams"), "streams_requested": streams,
                     "stage_servers": summary["actors"].get("stage_servers"),
                     **run_figures(summary, frames, dt), **gpu.summary()})
        base = rows[0]["fps"] / rows[0]["actors"]
        rows[-1]["efficiency"] = rows[-1]["fps"] / (rows[-1]["actors"] * base) if base else float("nan")
        if on_run:
            on_run(rows[-1])
    return {"profile": profile, "segment_seconds": segment_s, "detector": dict(detector or prof.detector),
            "runs": rows}
