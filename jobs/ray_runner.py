"""Run `AnnotateWorker` on Ray actors: in-process Ray on a laptop, or an existing cluster.

The driver lists the work, skips outputs that are current, keeps at most `inflight` videos queued
per actor (backpressure), writes each finished table itself (temp name, then rename) and keeps
`_summary.json` up to date after every video, so a killed driver leaves a truthful record and a
rerun picks up where it stopped. Actors are restarted by Ray when their process dies
(`max_restarts`), and the video they held is retried (`max_task_retries`); a video that still
fails is reported and the job goes on.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field

import ray
from tqdm import tqdm

from pipeline.parquet import is_current, run_key, track_meta, write_tracks

from .inputs import VideoItem
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
    inflight: int = 2                # videos queued per actor
    overwrite: bool = False
    render: dict | None = None       # filter name, overlay, anchor, crf, preset
    retries: int = 2
    params_for_key: dict = field(default_factory=dict)


def _init_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)


def _plan_actors(opt: RunOptions, n_videos: int) -> tuple[int, float, float]:
    res = ray.cluster_resources()
    gpus = res.get("GPU", 0)
    gpa = opt.gpus_per_actor if opt.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    cpus = res.get("CPU", 1)
    n = opt.actors or (int(gpus / gpa) if gpa else max(1, int(cpus // 2)))
    n = max(1, min(n, n_videos))
    cpa = opt.cpus_per_actor or max(1.0, float(int(cpus // n)) if not gpa else 1.0)
    return n, cpa, gpa


def _summary_path(out_dir: str) -> str:
    return os.path.join(out_dir, "_summary.json")


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def run_annotate(items: list[VideoItem], opt: RunOptions) -> dict:
    os.makedirs(opt.out_dir, exist_ok=True)
    summary = {"model": opt.model_id, "params": opt.params_for_key, "videos": {}}
    todo = deque()
    for it in items:
        key = _key(it, opt)
        rendered_ok = not opt.render or os.path.exists(it.rendered(opt.out_dir, opt.render["name"]))
        if key is not None and not opt.overwrite and rendered_ok and is_current(it.output(opt.out_dir), key):
            summary["videos"][it.name] = {"status": "skipped", "reason": "output is current",
                                          "output": it.output(opt.out_dir)}
        else:
            todo.append(it)
    t0 = time.perf_counter()
    if todo:
        _init_ray(opt.address)
        n, cpa, gpa = _plan_actors(opt, len(todo))
        actor_cls = ray.remote(AnnotateWorker).options(
            num_cpus=cpa, num_gpus=gpa, max_restarts=opt.retries, max_task_retries=opt.retries)
        threads = max(1, int(cpa))
        actors = [actor_cls.remote(opt.weights, opt.detector, opt.follow, opt.predictor, None, threads)
                  for _ in range(n)]
        summary["actors"] = {"count": n, "cpus_per_actor": cpa, "gpus_per_actor": gpa,
                             "device": ray.get(actors[0].device.remote())}
        _drive(actors, todo, opt, summary)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _write_json(_summary_path(opt.out_dir), summary)
    return summary


def _key(it: VideoItem, opt: RunOptions) -> dict | None:
    try:
        st = os.stat(it.path)
    except OSError:
        return None
    return run_key(st.st_size, st.st_mtime, opt.model_id, opt.params_for_key)


def _drive(actors: list, todo: deque, opt: RunOptions, summary: dict) -> None:
    inflight: dict = {}
    load = {i: 0 for i in range(len(actors))}
    bar = tqdm(total=len(todo), desc="videos", unit="video")
    frames = 0
    try:
        while todo or inflight:
            for i in sorted(load, key=load.get):
                while todo and load[i] < opt.inflight:
                    it = todo.popleft()
                    dst = it.rendered(opt.out_dir, opt.render["name"]) if opt.render else None
                    inflight[actors[i].__call__.remote(it, opt.render, dst)] = (i, it)
                    load[i] += 1
            done, _ = ray.wait(list(inflight), num_returns=1)
            ref = done[0]
            i, it = inflight.pop(ref)
            load[i] -= 1
            try:
                res = ray.get(ref)
            except ray.exceptions.RayError as e:   # the actor died more often than it may restart
                res = {"item": it, "status": "failed", "error": f"{it.path}: worker lost ({type(e).__name__})"}
            entry = _finish(res, opt)
            summary["videos"][it.name] = entry
            frames += entry.get("frames", 0)
            bar.update(1)
            bar.set_postfix(frames=frames, refresh=False)
            _write_json(_summary_path(opt.out_dir), summary)
    finally:
        bar.close()


def _finish(res: dict, opt: RunOptions) -> dict:
    it: VideoItem = res["item"]
    out = it.output(opt.out_dir)
    if res["status"] != "ok":
        return {"status": "failed", "error": res["error"]}
    stats = res["stats"]
    meta = track_meta(res["info"], it.name, stats["frames"], opt.model_id, opt.params_for_key)
    try:
        write_tracks(res["table"], out, meta)
    except OSError as e:
        return {"status": "failed", "error": f"{out}: cannot write ({e})"}
    return {"status": "ok", "output": out, **({"rendered": res["rendered"]} if res.get("rendered") else {}),
            "frames": stats["frames"], "faces": stats["faces"],
            "detections": stats["detections"], "seconds": round(res["seconds"], 2),
            "fps": round(stats["frames"] / max(res["seconds"], 1e-9), 1)}
