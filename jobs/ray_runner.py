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

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from pipeline.parquet import is_current, read_meta, run_key, track_meta, write_tracks
from pipeline.render import read_render_key, render_key
from pipeline.segments import Segment, plan_segments, stitch
from pipeline.video import VideoError, check_complete, keyframe_times

from .inputs import VideoItem
from .outputs import remove_stale_temps, resolve, write_bytes
from .sizing import plan_actors
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
    actors: int = 0                  # 0: from the nodes (jobs/sizing.py)
    cpus_per_actor: float = 0        # 0: from the nodes (jobs/sizing.py)
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
    """How many actors, and the CPUs and GPU share of each, from the nodes that exist
    (jobs/sizing.py). Raises ActorSizeError, before any actor is created, when they cannot fit:
    Ray would leave them pending and the driver would wait for ever."""
    plan = plan_actors(ray.nodes(), n_tasks, opt.actors, opt.cpus_per_actor, opt.gpus_per_actor)
    return plan.count, plan.cpus, plan.gpus


def _read_summary(out: Out) -> dict:
    """The videos of the summary an earlier run left here ({} when none or unreadable)."""
    try:
        with out.fs.open_input_stream(f"{out.root}/_summary.json") as f:
            return json.loads(f.read()).get("videos", {})
    except (OSError, ValueError):
        return {}


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


def _render_plan(it: VideoItem, opt: RunOptions, out: Out, key: dict | None) -> tuple[str, str] | None:
    """(where the render goes, its render key) when this run renders, else None."""
    if not opt.render or key is None:
        return None
    r = opt.render
    return it.rendered(out.root, r["name"]), render_key(key, r["name"], r.get("overlay_bytes"), r["anchor"],
                                                        r["crf"], r["preset"])


def run_annotate(items: list[VideoItem], opt: RunOptions) -> dict:
    out = Out(*resolve(opt.out_dir))
    out.fs.create_dir(out.root, recursive=True)
    removed = remove_stale_temps(out.fs, out.root)
    earlier = _read_summary(out)
    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    summary = {"run": run_id, "model": opt.model_id, "params": opt.params_for_key, "videos": {},
               "stale_temp_files_removed": removed}
    tasks: deque = deque()
    for it in items:
        key = _key(it, opt)
        plan = _render_plan(it, opt, out, key)
        current = key is not None and not opt.overwrite and is_current(it.output(out.root), key, out.fs)
        render_current = plan is None or (not opt.overwrite and read_render_key(plan[0], out.fs) == plan[1])
        if current and render_current:
            before = earlier.get(it.name, {})
            summary["videos"][it.name] = {**before, "status": "skipped", "reason": "output is current",
                                          "output": it.output(opt.out_dir), "written_by": before.get("written_by")}
        elif current:          # the tracks stand; only the render is redone
            tasks.append((it, "render"))
        else:
            tasks.extend((it, seg) for seg in _segments(it, opt))
    t0 = time.perf_counter()
    if tasks:
        init_ray(opt.address)
        n, cpa, gpa = _plan_actors(opt, len(tasks))
        actor_cls = ray.remote(AnnotateWorker).options(
            num_cpus=cpa, num_gpus=gpa, max_restarts=opt.retries, max_task_retries=opt.retries)
        actors = [actor_cls.remote(opt.weights, opt.detector, opt.follow, opt.predictor, None, max(1, int(cpa)))
                  for _ in range(n)]
        summary["ray"] = {"gcs_address": ray.get_runtime_context().gcs_address, "nodes": len(ray.nodes())}
        summary["actors"] = {"count": n, "cpus_per_actor": cpa, "gpus_per_actor": gpa,
                             "device": ray.get(actors[0].device.remote())}
        _drive(actors, tasks, opt, summary, out, earlier)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _write_json(out, "_summary.json", summary)
    return summary


def _submit(actor, it: VideoItem, seg, opt: RunOptions, out: Out):
    plan = _render_plan(it, opt, out, _key(it, opt))
    render = {**opt.render, "out": opt.out_dir, "key": plan[1]} if plan else None
    render_to = plan[0] if plan else None     # a path inside the output filesystem: joining onto a URI would break its ?options
    if seg == "render":                       # tracks current: send them, render only
        table = pq.read_table(it.output(out.root), filesystem=out.fs)
        frames = read_meta(it.output(out.root), out.fs)["frame_count"]
        return actor.__call__.remote(it, None, render, render_to, (table, frames))
    return actor.__call__.remote(it, seg, render, render_to)


def _drive(actors: list, tasks: deque, opt: RunOptions, summary: dict, out: Out, earlier: dict) -> None:
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
                    inflight[_submit(actors[i], it, seg, opt, out)] = (i, it, seg)
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
            entry["written_by"] = (earlier.get(it.name, {}).get("written_by") if entry["status"] == "skipped"
                                   else summary["run"])
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


def _render_entry(res: dict, it: VideoItem, opt: RunOptions) -> dict:
    r = dict(res["render"])
    if r["status"] == "ok":
        r["output"] = it.rendered(opt.out_dir, opt.render["name"])
    return r


def _finish(results: list[dict], opt: RunOptions, out: Out) -> dict:
    it: VideoItem = results[0]["item"]
    if results[0]["status"] == "render_only":
        return {"status": "skipped", "reason": "tracks are current; render redone", "output": it.output(opt.out_dir),
                "render": _render_entry(results[0], it, opt)}
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        return {"status": "failed", "error": failed[0]["error"]}
    results.sort(key=lambda r: r["segment"].index if r["segment"] else 0)
    info = results[0]["info"]
    if results[0]["segment"] is None:
        table = results[0]["table"]
    else:
        table = stitch([r["table"] for r in results], [r["segment"] for r in results])
    frames = len(set(table.column("frame_index").to_pylist()))
    if results[0]["segment"] is not None:
        try:                  # a segment cannot tell that the file ends early; the whole can
            check_complete(it.path, frames, info["header_frames"])
        except VideoError as e:
            return {"status": "failed", "error": str(e)}
    faces = table.num_rows - table.column("track_id").null_count
    shown = it.output(opt.out_dir)
    try:
        write_tracks(table, it.output(out.root), track_meta(info, it.name, frames, opt.model_id,
                                                            opt.params_for_key), out.fs)
    except (OSError, pa.ArrowException) as e:
        return {"status": "failed", "error": f"{shown}: cannot write ({e})"}
    seconds = sum(r["seconds"] for r in results)
    entry = {"status": "ok", "output": shown, "frames": frames, "faces": faces, "timing": info.get("timing", "pts"),
             "detections": sum(r["stats"]["detections"] for r in results), "segments": len(results),
             "seconds": round(seconds, 2), "fps": round(frames / max(seconds, 1e-9), 1)}
    if results[0].get("render"):
        entry["render"] = _render_entry(results[0], it, opt)
    return entry
