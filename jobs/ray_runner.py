"""Run `AnnotateWorker` on Ray actors: in-process Ray on a laptop, or an existing cluster.

The driver lists the work, skips outputs that are current, splits long videos into keyframe-aligned
segments (`pipeline/segments.py`) so one video spreads over many actors, keeps at most `inflight`
tasks queued per actor (backpressure: the driver never holds more than actors x inflight results
in flight), stitches each video's segments, writes its table itself (temp name, then rename) and
rewrites `_summary.json` after every video, so a killed driver leaves a truthful record and a
rerun picks up where it stopped. The driver replaces an actor whose process dies and retries the
tasks it held, a suspect alone on its actor; a video that kills its worker `retries` times is
quarantined and reported, and the job goes on (`_drive`).
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field, replace

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from facetracks.pipeline.parquet import is_current, meta_of, read_meta, run_key
from facetracks.pipeline.render import read_render_key, render_key
from facetracks.pipeline.segments import segments_of
from facetracks.pipeline.smoothing import SmoothParams
from facetracks.pipeline.video import VideoError, header_length

from .inputs import VideoItem
from .outputs import remove_stale_temps, resolve, write_bytes
from .photos import PhotoBatch, batches, failed_each, render_current as photo_render_current
from .progress import POLL_EVERY_S, FrameBar, shows
from .results import SegmentedVideo, finish_whole, frames_done
from .sizing import plan_actors
from .worker import AnnotateWorker


@dataclass
class RunOptions:
    out_dir: str
    weights: bytes | None            # the checkpoint's bytes (sent to actors through the object store)
    model_id: str
    detector: dict
    follow: dict
    predictor: dict
    address: str | None = None
    actors: int = 0                  # 0: from the nodes (jobs/sizing.py)
    cpus_per_actor: float = 0        # 0: from the nodes (jobs/sizing.py)
    gpus_per_actor: float | None = None   # None: 1 when the cluster has GPUs
    inflight: int = 2                # tasks queued per actor (at least streams + 1)
    streams: int = 0                 # videos/segments an actor follows at once (0: 16 on a GPU actor, else 1)
    overwrite: bool = False
    retries: int = 2                 # a task whose actor died this often is quarantined
    segment_s: float = 0             # split videos at keyframes this far apart (0: never)
    overlap_s: float = 1.0
    render: dict | None = None       # filter name, overlay, anchor, crf, preset
    smooth: dict = field(default_factory=lambda: SmoothParams().to_dict())   # pipeline/smoothing.py
    progress: str = "auto"           # the frames bar: auto (when stderr is a terminal), always, never
    params_for_key: dict = field(default_factory=dict)


class ClusterError(RuntimeError):
    """The cluster named by --address (or RAY_ADDRESS) cannot be reached."""


def init_ray(address: str | None) -> None:
    """Join the cluster named by --address or by RAY_ADDRESS (set by `ray job submit`); else start
    a private Ray here. Plain `ray.init()` would join whatever /tmp/ray/ray_current_cluster names,
    and a stale one left by a killed `ray start` makes every later run hang on a dead address."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as e:
            raise ClusterError(f"no Ray cluster at --address {address} ({str(e).split('.')[0]}); "
                               f"start one with `ray start --head`, or leave --address out to run here") from None
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)


def _plan_actors(opt: RunOptions, n_tasks: int) -> tuple[int, float, float]:
    """How many actors, and the CPUs and GPU share of each, from the nodes that exist
    (jobs/sizing.py). Raises ActorSizeError, before any actor is created, when they cannot fit:
    Ray would leave them pending and the driver would wait for ever."""
    plan = plan_actors(ray.nodes(), n_tasks, opt.actors, opt.cpus_per_actor, opt.gpus_per_actor)
    return plan.count, plan.cpus, plan.gpus


_KEPT = ("frames", "faces", "timing", "detections", "segments", "written_by")


def _skipped(before: dict, it: VideoItem, opt: RunOptions) -> dict:
    """A skipped video's entry: what the run that wrote its output said of it (never an old
    error, and its render only when this run asks for that render, which is then current)."""
    entry = {"status": "skipped", "reason": "output is current", "output": it.output(opt.out_dir),
             **{k: before[k] for k in _KEPT if k in before}}
    if opt.render and before.get("render", {}).get("status") == "ok":
        entry["render"] = before["render"]
    if it.photo:
        entry["kind"] = "photo"
    return entry


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


# Keyframes are listed by Ray tasks, a few at a time beside the actors (I/O bound, no CPU
# reserved: the actors may hold every CPU), never serially on the driver. The function lives in
# pipeline/segments.py, so a task's worker imports no torch.
_segments_remote = ray.remote(num_cpus=0)(segments_of)


def _splits(opt: RunOptions) -> bool:
    """Whole videos when rendering (the renderer needs every frame in one place)."""
    return bool(opt.segment_s) and not opt.render


def _estimated_pieces(it: VideoItem, opt: RunOptions) -> int:
    """How many tasks a video will make, from its header's duration (cheap): sizes the actor pool
    before the keyframes are known."""
    if not _splits(opt):
        return 1
    try:
        seconds = header_length(it.path)[1]
    except (VideoError, TypeError):
        return 1
    if not seconds:              # no duration in the header (.webm from MediaRecorder, some .ts): may be long
        return 1000
    return max(1, int(seconds // opt.segment_s))


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
    renders: dict[str, tuple[str, str] | None] = {}
    photos: list[VideoItem] = []
    for it in items:
        key = _key(it, opt)
        plan = renders[it.name] = _render_plan(it, opt, out, key)
        current = key is not None and not opt.overwrite and is_current(it.output(out.root), key, out.fs)
        render_current = plan is None or (not opt.overwrite and (
            photo_render_current(it, plan, earlier, out.fs) if it.photo else read_render_key(plan[0], out.fs) == plan[1]))
        if current and render_current:
            summary["videos"][it.name] = _skipped(earlier.get(it.name, {}), it, opt)
        elif it.photo:         # redone whole, tracks and render: a photo costs milliseconds
            photos.append(it)
        elif current:          # the tracks stand; only the render is redone
            tasks.append((it, "render"))
        else:
            tasks.append((it, "plan" if _splits(opt) else None))
    tasks.extend((b, "photos") for b in batches(photos))
    t0 = time.perf_counter()
    if tasks:
        init_ray(opt.address)
        n, cpa, gpa = _plan_actors(opt, sum(1 if seg == "photos" else _estimated_pieces(it, opt) for it, seg in tasks))
        streams = opt.streams or (GPU_STREAMS if gpa else 1)
        # no restarts by Ray: the driver replaces a dead actor itself and decides where its tasks go;
        # each of an actor's concurrent calls is one stream of its shared stages (jobs/worker.py)
        actor_cls = ray.remote(AnnotateWorker).options(num_cpus=cpa, num_gpus=gpa, max_restarts=0,
                                                       max_concurrency=streams)
        weights = ray.put(opt.weights)

        def make_actor():
            return actor_cls.remote(weights, opt.detector, opt.follow, opt.predictor, None, max(1, int(cpa)))
        actors = [make_actor() for _ in range(n)]
        summary["ray"] = {"gcs_address": ray.get_runtime_context().gcs_address, "nodes": len(ray.nodes())}
        ready = [a.device.remote() for a in actors]
        summary["actors"] = {"count": n, "cpus_per_actor": cpa, "gpus_per_actor": gpa, "streams": streams,
                             "device": _started(ready[0])}
        ray.wait(ready, num_returns=len(ready), timeout=ACTOR_START_S)   # one that fails shows in _drive
        summary["actors"]["ready_s"] = round(time.perf_counter() - t0, 3)
        opt = replace(opt, inflight=max(opt.inflight, streams + 1))
        _drive(actors, tasks, opt, summary, out, earlier, renders, make_actor)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _write_json(out, "_summary.json", summary)
    return summary


class WorkerStartError(RuntimeError):
    """No worker could be started (the model does not load there, the node is gone)."""


ACTOR_START_S = 300
GPU_STREAMS = 16         # streams per GPU actor by default: batches of hundreds of crops


def _started(ready) -> str:
    """Wait until an actor has loaded its model (`ready`: its `device` call); its device, or
    WorkerStartError with the cause."""
    try:
        return ray.get(ready, timeout=ACTOR_START_S)
    except ray.exceptions.GetTimeoutError:
        raise WorkerStartError(f"a worker did not start within {ACTOR_START_S} s (no node can place it?)") from None
    except ray.exceptions.RayError as e:
        raise WorkerStartError(f"a worker failed to start: {type(e).__name__}: {str(e)[:500]}") from None


def _submit(actor, it: VideoItem | PhotoBatch, seg, opt: RunOptions, out: Out, plan, on_frames):
    """Send one task; `plan` is the video's (render path, render key), None when not rendering
    (for a batch of photos, a list of them)."""
    if seg == "photos":
        return actor.photos.remote(list(it.items), plan, {**opt.render, "out": opt.out_dir} if opt.render else None,
                                   on_frames)
    render = {**opt.render, "out": opt.out_dir, "key": plan[1]} if plan else None
    render_to = plan[0] if plan else None     # a path inside the output filesystem: joining onto a URI would break its ?options
    if seg == "render":                       # tracks current: send them, render only
        table = pq.read_table(it.output(out.root), filesystem=out.fs)
        frames = meta_of(table.schema)["frame_count"]
        return actor.__call__.remote(it, None, render, render_to, (table, frames))
    # a whole video is smoothed by its worker; segments by the driver, once stitched
    return actor.__call__.remote(it, seg, render, render_to, smooth=None if seg else opt.smooth, on_frames=on_frames)


@dataclass
class _Running:
    actor: object          # the handle it was sent to (a slot's handle changes when replaced)
    slot: int
    item: VideoItem
    segment: object        # Segment, None (whole video), "render" or "photos"
    suspect: bool          # its actor died under it before: it runs alone
    task: int = 0          # the progress bar's id for it


def _drive(actors: list, tasks: deque, opt: RunOptions, summary: dict, out: Out, earlier: dict,
           renders: dict, make_actor) -> None:
    """Hand tasks to actors, at most `opt.inflight` queued on each, and collect results as they
    come. The fault model: an actor whose process dies is replaced by a new one; every task it
    held goes back to the queue, marked suspect, and a suspect runs alone on its actor, so the
    next death is its own; a task whose actor died `opt.retries` times is quarantined (its video
    fails, naming the cause) and everything else finishes. Any error in handling one result is
    that video's failure, never the job's."""
    expected: dict[str, int] = {it.name: 1 for it, seg in tasks if seg != "plan"}
    expected.update({p.name: 1 for it, seg in tasks if seg == "photos" for p in it.items})
    queue = deque((it, seg, False) for it, seg in tasks if seg != "plan")
    to_plan = deque(it for it, seg in tasks if seg == "plan")
    planning: dict = {}
    live = set(range(len(actors)))              # slots with a working actor
    received: dict[str, int] = {}               # results in, per video
    segmented: dict[str, SegmentedVideo] = {}
    inflight: dict = {}
    load = {i: 0 for i in range(len(actors))}
    alone: set[int] = set()                      # slots running a suspect
    deaths: dict[tuple, int] = {}                # task -> times its actor died under it
    batching: dict = {}                          # actor -> its shared stages' counters (worker.batching)
    bar = FrameBar([p for it, seg in tasks for p in (it.items if seg == "photos" else (it,))],
                   shows(opt.progress), no_frames={it.name for it, seg in tasks if seg == "render"})
    no_worker = "no worker could be started"

    def collect(it: VideoItem | PhotoBatch, res: dict | list, record: bool = True) -> None:
        if isinstance(it, PhotoBatch):      # each photo is its own file; the summary written once a batch
            for sub in res if isinstance(res, list) else failed_each(it, res["error"]):
                collect(sub["item"], sub, record=False)
            record_summary()
            return
        received[it.name] = received.get(it.name, 0) + 1
        if expected[it.name] > 1:
            seg = segmented.setdefault(it.name, SegmentedVideo(it, opt, out))
            try:
                seg.add(res)
            except Exception as e:     # noqa: BLE001 - one video's failure, never the job's
                seg.fail(f"{it.path}: stitching failed: {type(e).__name__}: {e}")
        if received[it.name] < expected[it.name]:
            return
        del received[it.name]
        try:
            entry = segmented.pop(it.name).finish() if expected[it.name] > 1 else finish_whole(res, opt, out)
        except Exception as e:     # noqa: BLE001 - one video's failure, never the job's
            entry = {"status": "failed", "error": f"{it.path}: writing the result failed: {type(e).__name__}: {e}"}
        wrote = entry["status"] == "ok"          # a failure or a render-only rerun wrote no tracks
        entry["written_by"] = summary["run"] if wrote else earlier.get(it.name, {}).get("written_by")
        if it.photo:
            entry["kind"] = "photo"
        summary["videos"][it.name] = entry
        bar.file_done(it.name, entry.get("frames", 0))
        if record:
            record_summary()

    def record_summary() -> None:
        try:                 # progress only: the final write after the loop must succeed
            _write_json(out, "_summary.json", summary)
        except Exception as e:   # noqa: BLE001
            tqdm.write(f"annotate: could not update the summary ({e}); going on")

    try:
        while queue or inflight or planning or to_plan:
            while to_plan and len(planning) < 2 * max(1, len(live)):
                it = to_plan.popleft()
                planning[_segments_remote.remote(it.path, opt.segment_s, opt.overlap_s)] = it
            if not live:                         # every worker failed to start: the rest cannot run
                for it, seg, _ in queue:
                    collect(it, {"item": it, "segment": seg, "status": "failed", "error": f"{it.path}: {no_worker}"})
                queue.clear()
            for i in sorted(live, key=load.get):
                while queue and load[i] < opt.inflight and i not in alone:
                    # a suspect runs alone, on an idle actor; other work may pass it meanwhile
                    k = next((k for k, q in enumerate(queue) if not q[2] or not load[i]), None)
                    if k is None:
                        break
                    it, seg, suspect = queue[k]
                    del queue[k]
                    photos = it.items if seg == "photos" else None
                    task, on_frames = bar.reporter([p.name for p in photos] if photos else [it.name])
                    try:
                        plan = [renders[p.name] for p in photos] if photos else renders[it.name]
                        ref = _submit(actors[i], it, seg, opt, out, plan, on_frames)
                    except Exception as e:   # noqa: BLE001 - e.g. current tracks unreadable for a render
                        bar.task_ended(task, {})
                        collect(it, {"item": it, "segment": seg, "status": "failed",
                                     "error": f"{it.path}: {type(e).__name__}: {e}"})
                        continue
                    inflight[ref] = _Running(actors[i], i, it, seg, suspect, task)
                    load[i] += 1
                    if suspect:
                        alone.add(i)
            if not inflight and not planning:
                continue
            done, _ = ray.wait(list(inflight) + list(planning), num_returns=1,
                               timeout=POLL_EVERY_S if bar.show else None)
            bar.poll()
            if not done:
                continue
            if done[0] in planning:         # a video's keyframes are listed: its segments join the queue
                it = planning.pop(done[0])
                try:
                    segments = ray.get(done[0])
                except ray.exceptions.RayError:
                    segments = [None]
                expected[it.name] = len(segments)
                queue.extend((it, seg, False) for seg in segments)
                continue
            run = inflight.pop(done[0])
            load[run.slot] -= 1
            alone.discard(run.slot)
            it, seg = run.item, run.segment
            try:
                res = ray.get(done[0])
                counters = res.pop("batching", None) if isinstance(res, dict) else None
                if counters:                   # the actor's totals so far: the summary sums the latest of each
                    batching[(run.slot, id(run.actor))] = counters
                    summary["actors"]["batching"] = {k: sum(b[k] for b in batching.values()) for k in counters}
                bar.task_ended(run.task, frames_done(res))
            except ray.exceptions.RayActorError as e:
                bar.task_ended(run.task, {})
                if actors[run.slot] is run.actor and run.slot in live:   # replace it once, whichever task reports first
                    ray.kill(run.actor, no_restart=True)
                    actors[run.slot] = make_actor()
                    try:
                        _started(actors[run.slot].device.remote())
                    except WorkerStartError as err:  # this slot is gone; the others carry on
                        live.discard(run.slot)
                        no_worker = str(err)
                        tqdm.write(f"annotate: {err}")
                key = (it.name, getattr(seg, "index", seg))
                deaths[key] = deaths.get(key, 0) + 1
                if deaths[key] < opt.retries:
                    if seg == "photos" and len(it.items) > 1:    # which photo kills it: each alone
                        queue.extendleft((PhotoBatch((p,)), seg, True) for p in reversed(it.items))
                    else:
                        queue.appendleft((it, seg, True))
                    continue
                res = {"item": it, "segment": seg, "status": "failed",
                       "error": f"{it.path}: quarantined: the worker process died {deaths[key]} times while "
                                f"it held this video (a decoder crash or out of memory?): {type(e).__name__}"}
            except ray.exceptions.RayError as e:
                bar.task_ended(run.task, {})
                res = {"item": it, "segment": seg, "status": "failed",
                       "error": f"{it.path}: worker error ({type(e).__name__}: {str(e)[:300]})"}
            collect(it, res)
    finally:
        for seg_state in segmented.values():   # interrupted: leave no pieces behind
            seg_state.fail("the run was interrupted")
        bar.close()
