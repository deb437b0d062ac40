"""Run `AnnotateWorker` on Ray actors: in-process Ray on a laptop, or an existing cluster.

The driver lists the work, skips outputs that are current, splits long videos into keyframe-aligned
segments (`pipeline/segments.py`) so one video spreads over many actors, keeps at most `inflight`
tasks queued per actor (backpressure: the driver never holds more than actors x inflight results
in flight), stitches each video's segments, writes its table itself (temp name, then rename) and
rewrites `_summary.json` after every video, so a killed driver leaves a truthful record and a
rerun picks up where it stopped. Ray restarts an actor whose process dies (`max_restarts`) and
retries the task it held (`max_task_retries`); a video that still fails is reported and the job
goes on.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field

import pyarrow.fs as pafs
import ray
from tqdm import tqdm

from pipeline.parquet import is_current, run_key, track_meta, write_tracks
from pipeline.segments import Segment, plan_segments, stitch
from pipeline.video import VideoError, keyframe_times

from .inputs import VideoItem
from .outputs import exists, resolve, write_bytes
from .worker import AnnotateWorker


@dataclass
class RunOptions:
    out_dir: str
    weights: str | None
    model_id: str
    detector: dict
    follow: dict
    predictor: dict
    address: str | None = None
    actors: int = 0                  # 0: one per GPU, or per two CPUs
    cpus_per_actor: float = 0        # 0: share the machine's CPUs
    gpus_per_actor: float | None = None   # None: 1 when the cluster has GPUs
    inflight: int = 2                # tasks queued per actor
    overwrite: bool = False
    retries: int = 2
    segment_s: float = 0             # split videos at keyframes this far apart (0: never)
    overlap_s: float = 1.0
    render: dict | None = None       # filter name, overlay, anchor, crf, preset
    params_for_key: dict = field(default_factory=dict)


def init_ray(address: str | None) -> None:
    """Join the cluster named by --address or by RAY_ADDRESS (set by `ray job submit`); else start
    a private Ray here. Plain `ray.init()` would join whatever /tmp/ray/ray_current_cluster names,
    and a stale one left by a killed `ray start` makes every later run hang on a dead address."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)


def _plan_actors(opt: RunOptions, n_tasks: int) -> tuple[int, float, float]:
    """How many actors, and the CPUs and GPU share of each. A GPU actor still detects faces on its
    CPUs (Haar is most of its time), so by default it gets its GPU share of the CPUs of the
    leanest GPU node: 0.25 of a GPU on a 16-core, 1-GPU node gets 4 CPUs."""
    res = ray.cluster_resources()
    gpus = res.get("GPU", 0)
    gpa = opt.gpus_per_actor if opt.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    cpus = res.get("CPU", 1)
    n = opt.actors or (int(gpus / gpa) if gpa else max(1, int(cpus // 2)))
    n = max(1, min(n, n_tasks))
    if opt.cpus_per_actor:
        cpa = opt.cpus_per_actor
    elif gpa:
        per_gpu = [nd["Resources"].get("CPU", 1) / nd["Resources"]["GPU"]
                   for nd in ray.nodes() if nd.get("Alive") and nd["Resources"].get("GPU")]
        cpa = max(0.25, int(min(per_gpu, default=1.0) * gpa * 4) / 4)   # fractional: must fit beside its GPU share
    else:
        cpa = max(1.0, float(int(cpus // n)))
    return n, cpa, gpa


def _write_json(out: Out, name: str, data: dict) -> None:
    write_bytes(out.fs, f"{out.root}/{name}", json.dumps(data, indent=2).encode())


@dataclass
class Out:
    """The output folder as a pyarrow filesystem and the folder's path inside it."""
    fs: pafs.FileSystem
    root: str


def _key(it: VideoItem, opt: RunOptions) -> dict | None:
    try:
        st = os.stat(it.path)
    except OSError:
        return None
    return run_key(st.st_size, st.st_mtime, opt.model_id, opt.params_for_key)


def _segments(it: VideoItem, opt: RunOptions) -> list[Segment | None]:
    """Whole videos when rendering (the renderer needs every frame in one place) or when short."""
    if not opt.segment_s or opt.render:
        return [None]
    try:
        plan = plan_segments(keyframe_times(it.path), opt.segment_s, opt.overlap_s)
    except VideoError:
        return [None]          # the worker reports the error with its cause
    return plan if len(plan) > 1 else [None]


def run_annotate(items: list[VideoItem], opt: RunOptions) -> dict:
    out = Out(*resolve(opt.out_dir))
    out.fs.create_dir(out.root, recursive=True)
    summary = {"model": opt.model_id, "params": opt.params_for_key, "videos": {}}
    todo = []
    for it in items:
        key = _key(it, opt)
        rendered_ok = not opt.render or exists(out.fs, it.rendered(out.root, opt.render["name"]))
        if key is not None and not opt.overwrite and rendered_ok and is_current(it.output(out.root), key, out.fs):
            summary["videos"][it.name] = {"status": "skipped", "reason": "output is current",
                                          "output": it.output(opt.out_dir)}
        else:
            todo.append(it)
    t0 = time.perf_counter()
    if todo:
        init_ray(opt.address)
        tasks = deque((it, seg) for it in todo for seg in _segments(it, opt))
        n, cpa, gpa = _plan_actors(opt, len(tasks))
        actor_cls = ray.remote(AnnotateWorker).options(
            num_cpus=cpa, num_gpus=gpa, max_restarts=opt.retries, max_task_retries=opt.retries)
        actors = [actor_cls.remote(opt.weights, opt.detector, opt.follow, opt.predictor, None, max(1, int(cpa)))
                  for _ in range(n)]
        summary["ray"] = {"gcs_address": ray.get_runtime_context().gcs_address, "nodes": len(ray.nodes())}
        summary["actors"] = {"count": n, "cpus_per_actor": cpa, "gpus_per_actor": gpa,
                             "device": ray.get(actors[0].device.remote())}
        _drive(actors, tasks, opt, summary, out)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _write_json(out, "_summary.json", summary)
    return summary


def _drive(actors: list, tasks: deque, opt: RunOptions, summary: dict, out: Out) -> None:
    expected: dict[str, int] = {}
    for it, _ in tasks:
        expected[it.name] = expected.get(it.name, 0) + 1
    parts: dict[str, list[dict]] = {}
    inflight: dict = {}
    load = {i: 0 for i in range(len(actors))}
    bar = tqdm(total=len(expected), desc="videos", unit="video")
    frames = 0
    try:
        while tasks or inflight:
            for i in sorted(load, key=load.get):
                while tasks and load[i] < opt.inflight:
                    it, seg = tasks.popleft()
                    # a path inside the output filesystem: joining onto a URI would break its ?options
                    dst = it.rendered(out.root, opt.render["name"]) if opt.render else None
                    render = {**opt.render, "out": opt.out_dir} if opt.render else None
                    inflight[actors[i].__call__.remote(it, seg, render, dst)] = (i, it, seg)
                    load[i] += 1
            done, _ = ray.wait(list(inflight), num_returns=1)
            i, it, seg = inflight.pop(done[0])
            load[i] -= 1
            try:
                res = ray.get(done[0])
            except ray.exceptions.RayError as e:   # the actor died more often than it may restart
                res = {"item": it, "segment": seg, "status": "failed",
                       "error": f"{it.path}: worker lost ({type(e).__name__})"}
            parts.setdefault(it.name, []).append(res)
            if len(parts[it.name]) < expected[it.name]:
                continue
            entry = _finish(parts.pop(it.name), opt, out)
            summary["videos"][it.name] = entry
            frames += entry.get("frames", 0)
            bar.update(1)
            bar.set_postfix(frames=frames, refresh=False)
            try:                 # progress only: the final write after the loop must succeed
                _write_json(out, "_summary.json", summary)
            except OSError as e:
                tqdm.write(f"annotate: could not update the summary ({e}); going on")
    finally:
        bar.close()


def _finish(results: list[dict], opt: RunOptions, out: Out) -> dict:
    it: VideoItem = results[0]["item"]
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        return {"status": "failed", "error": failed[0]["error"]}
    results.sort(key=lambda r: r["segment"].index if r["segment"] else 0)
    if results[0]["segment"] is None:
        table = results[0]["table"]
    else:
        table = stitch([r["table"] for r in results], [r["segment"] for r in results])
    frames = len(set(table.column("frame_index").to_pylist()))
    faces = table.num_rows - table.column("track_id").null_count
    shown = it.output(opt.out_dir)
    try:
        write_tracks(table, it.output(out.root), track_meta(results[0]["info"], it.name, frames, opt.model_id,
                                                            opt.params_for_key), out.fs)
    except OSError as e:
        return {"status": "failed", "error": f"{shown}: cannot write ({e})"}
    seconds = sum(r["seconds"] for r in results)
    entry = {"status": "ok", "output": shown, "frames": frames, "faces": faces,
             "detections": sum(r["stats"]["detections"] for r in results), "segments": len(results),
             "seconds": round(seconds, 2), "fps": round(frames / max(seconds, 1e-9), 1)}
    if results[0].get("rendered"):
        entry["rendered"] = it.rendered(opt.out_dir, opt.render["name"])
    return entry
