"""Run `AnnotateWorker` on Ray actors: in-process Ray on a laptop, or an existing cluster.

The driver lists the work, skips outputs that are current (`run_state.py`), splits long videos
into keyframe-aligned segments (`pipeline/segments.py`) so one video spreads over many actors,
sizes and starts the actors, and hands the tasks to its loop (`drive.py`), which keeps at most
`inflight` tasks queued per actor, stitches each video's segments, writes its table itself (temp
name, then rename) and rewrites `_summary.json` after every video, so a killed driver leaves a
truthful record and a rerun picks up where it stopped. The loop replaces an actor whose process
dies, or whose task is stuck (silent for `stall_s`), and retries the tasks it held, a suspect
alone on its actor; a video that kills or hangs its worker `retries` times is quarantined and
reported, and the job goes on. Tasks that never ran (their actor could not start: facetracks
missing on its node, or other facetracks code, `code_id.py`) or whose node was lost go back to
the queue as they were.
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import cv2
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from facetracks.pipeline import sources
from facetracks.pipeline.parquet import is_current, read_meta
from facetracks.pipeline.render import read_render_key
from facetracks.pipeline.smoothing import SmoothParams
from facetracks.pipeline.video import VideoError, header_length

from . import stopping
from .code_id import code_id
from .drive import ACTOR_START_S, WorkerStartError, _drive, _first_started, _started, last_line, note_start_failure
from .inputs import VideoItem
from .out_lease import LEASE, Lease, LeaseError, OutputBusy, describe
from .outputs import STALE_TEMP_S, TAKEOVER_TEMP_S, OutputFull, raise_if_full, remove_stale_temps, resolve
from .photos import batches, render_current as photo_render_current
from .run_state import Out, _key, _read_summary, _render_plan, _skipped, _write_json, render_keys, with_input
from .sizing import MAX_DEFAULT_CPUS, decode_threads, plan_actors, plan_beside_gpus, without_stage_servers
from .stage_server import CALL_RETRIES, SERVER_CALLS, SERVER_RESTARTS, RemoteStages, Server, StageServer, WeightsStore
from .worker import AnnotateWorker

__all__ = ["ACTOR_START_S", "GPU_STREAMS", "ClusterError", "LeaseError", "OutputBusy", "OutputFull", "RunOptions",
           "WorkerStartError", "init_ray", "run_annotate"]

GPU_STREAMS = 16         # streams per GPU actor by default: batches of hundreds of crops
SERVER_FED_STREAMS = 4   # streams per CPU actor feeding a stage server: its calls overlap the round trips
STATS_WAIT_S = 30        # the servers' counters at the end: a server alive answers in milliseconds
# once one actor has started, how long the others are awaited before tasks are handed out: a model
# loads in seconds, and tasks go only to actors that have started (one that never finds a place
# held tasks for ever), so without this wait the first to start took every task it could queue
SIBLINGS_S = 20.0
PLAN_THREADS = 16        # outputs checked at once for being current (a rerun of 100,000 videos on S3: 100,000 reads)


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
    stall_s: float = 600.0           # a task silent this long is stuck: its worker is stopped (0: never; drive.py)
    stage_server: bool = False       # the network (and torch cascade) in one process per GPU, fed by CPU actors
    cpu_beside: bool = True          # with GPU nodes, CPU actors on the nodes without a GPU (sizing.plan_beside_gpus)
    params_for_key: dict = field(default_factory=dict)


# Ray Client's head starts a server per driver by forking its own multithreaded process; on Ray
# 2.60 that child died of SIGSEGV before exec in 5 connections of 29 (a loopback head, 2 CPUs;
# the head's log: "SpecificServer startup failed"), and in 0 of 39 when the head ran with
# GRPC_ENABLE_FORK_SUPPORT=0. Each failed try costs about 30-40 s.
CLIENT_ATTEMPTS = 3
CLIENT_SERVER_FAILED = ("Starting Ray client server failed", "Proxy failed to Connect to backend")


class ClusterError(RuntimeError):
    """The cluster named by --address (or RAY_ADDRESS) cannot be reached."""


def _init(**kwargs) -> None:
    """`ray.init`, then our signal handlers again: Ray's SIGTERM handler, installed as it starts,
    exits there (SystemExit; later it aborted with a stack dump), where ours stops the run."""
    try:
        ray.init(**kwargs)
    except SystemExit as e:
        if e.code != signal.SIGTERM:     # Ray's handler exits with the signal's number
            raise
        stopping.terminate()
    stopping.install()


RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _no_auth_enabled_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled")


CONNECT_S = 5.0           # to open a TCP connection to the head, before Ray's own minutes of retries
HEAD_WAIT_S = 30.0        # ... tried again this long: a head started beside the driver may not listen yet


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a plain `HOST:PORT` address (`auto`, `ray://…` and the like: None)."""
    if "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def _unanswered(address: str, wait_s: float = 0.0) -> str | None:
    """Why nothing accepts a connection at a `HOST:PORT` address (None: something does), trying
    again for `wait_s`: a head started beside its driver (a Slurm or Kubernetes script) may take
    seconds to listen, which Ray's own retries covered."""
    hp = _host_port(address)
    if hp is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            socket.create_connection(hp, timeout=CONNECT_S).close()
            return None
        except OSError as e:        # a name too: a Kubernetes service has none until its pod is ready
            if time.monotonic() >= deadline:
                if isinstance(e, socket.gaierror):
                    return f"cannot resolve the host {hp[0]} in {wait_s:g} s: {e.strerror or e}"
                return f"nothing accepted a connection at {hp[0]}:{hp[1]} in {wait_s:g} s: {e.strerror or e}"
        time.sleep(1.0)


def _check_address(address: str) -> None:
    """Refuse within HEAD_WAIT_S an address that cannot be a cluster's: Ray took 14 minutes of
    retries to say nothing listens at a HOST:PORT, and a traceback for a dashboard URL (`RAY_ADDRESS=http://…`,
    which `ray job submit` wants, exported for it)."""
    if address.startswith(("http://", "https://")):
        raise ClusterError(f"--address {address} is a web address (the dashboard's, for `ray job submit`); a "
                           f"driver joins the cluster at its head's GCS address, HOST:6379, or `auto` on a node "
                           f"of the cluster (RAY_ADDRESS counts as --address)")
    why = _unanswered(address, HEAD_WAIT_S)
    if why:
        raise ClusterError(f"no Ray cluster at --address {address} ({why}); start one with `ray start --head`, "
                           f"or leave --address out to run here")


def init_ray(address: str | None) -> None:
    """Join the cluster named by --address or by RAY_ADDRESS (set by `ray job submit`); else start
    a private Ray here. Plain `ray.init()` would join whatever /tmp/ray/ray_current_cluster names,
    and a stale one left by a killed `ray start` makes every later run hang on a dead address."""
    if ray.is_initialized():     # the caller's own Ray (a notebook's, a Ray task's): used as it is
        if address:
            _check_address(address)      # ... but an --address that cannot be a cluster is still said
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        # Ray 2.60 turns token authentication on for a new local Ray and says so on every run; a
        # choice of Ray's that the user did not make and cannot act on (its warning that
        # authentication is off still shows)
        logging.getLogger(RAY_AUTH_LOGGER).addFilter(_no_auth_enabled_notice)
        _init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    _check_address(address)
    for attempt in range(1, CLIENT_ATTEMPTS + 1):
        try:
            _init(address=address, log_to_driver=False)
            return
        except ValueError as e:         # Ray's "Invalid Ray address"
            raise ClusterError(f"--address {address}: {e}") from None
        except ConnectionError as e:
            cause = last_line(str(e)) or "no reason given"     # the server's traceback ends with it
            if not any(m in cause for m in CLIENT_SERVER_FAILED):
                if _host_port(address) and _unanswered(address) is None:     # something listens there
                    raise ClusterError(f"a Ray cluster answers at --address {address}, but this driver could not "
                                       f"join it ({cause}); a cluster started with token authentication needs "
                                       f"RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or the head's "
                                       f"~/.ray/auth_token) here too, and the same Ray version") from None
                raise ClusterError(f"no Ray cluster at --address {address} ({cause}); start one with "
                                   f"`ray start --head`, or leave --address out to run here") from None
            if attempt < CLIENT_ATTEMPTS:
                print(f"facetracks: the Ray Client server at {address} failed to start this driver's "
                      f"server ({cause}); trying again", file=sys.stderr, flush=True)
    raise ClusterError(f"the Ray Client server at --address {address} failed {CLIENT_ATTEMPTS} times to start a "
                       f"server for this driver ({cause}); on Ray 2.60 its fork can crash (signal 11), which "
                       f"GRPC_ENABLE_FORK_SUPPORT=0 in the environment of the head's `ray start` avoids")


def _plan_actors(opt: RunOptions, n_tasks: int) -> tuple[int, float, float]:
    """How many actors, and the CPUs and GPU share of each, from the nodes that exist
    (jobs/sizing.py). Raises ActorSizeError, before any actor is created, when they cannot fit:
    Ray would leave them pending and the driver would wait for ever."""
    plan = plan_actors(ray.nodes(), n_tasks, opt.actors, opt.cpus_per_actor, opt.gpus_per_actor)
    return plan.count, plan.cpus, plan.gpus


def _room(cpus: float, gpus: float) -> str:
    """What the cluster has free for an actor of `cpus` CPUs (and `gpus` GPUs): what other work
    holds cannot be had until it ends, which may be never (a Serve replica)."""
    total, free = ray.cluster_resources(), ray.available_resources()
    said = f"an actor needs {cpus:g} CPU{'s' * (cpus != 1)}" + (f" and {gpus:g} GPU" if gpus else "")
    said += f"; {free.get('CPU', 0):g} of the cluster's {total.get('CPU', 0):g} CPUs are free"
    if gpus:
        said += f", {free.get('GPU', 0):g} of its {total.get('GPU', 0):g} GPUs"
    return said + " (other jobs' tasks and actors, or this run's own still loading, hold the rest)"


def _not_started(probes: list) -> dict:
    """{`device` call: slot} of the actors that have not loaded their model (or failed to): the
    task loop hands them tasks once they have (`drive._drive`)."""
    ready, _ = ray.wait(probes, num_returns=len(probes), timeout=0)
    up = set()
    for ref in ready:
        try:
            _started(ref, 0)
            up.add(ref)
        except WorkerStartError:
            pass
    return {ref: slot for slot, ref in enumerate(probes) if ref not in up}


def _start_stage_servers(opt: RunOptions, weights) -> tuple[list[Server], str, list[dict]]:
    """One `StageServer` per GPU of the cluster (one on a CPU where it has none), started and
    answering: the servers and their nodes, their device, and the nodes as the CPU actors find
    them (`sizing.without_stage_servers`). Ray restarts a server whose process dies and sends
    its calls again (jobs/stage_server.py, faults)."""
    nodes = ray.nodes()
    left, count, cpus = without_stage_servers(nodes)
    gpus = any(n["Resources"].get("GPU", 0) >= 1 for n in nodes if n.get("Alive"))
    cls = ray.remote(StageServer).options(num_cpus=cpus, num_gpus=1 if gpus else 0, max_restarts=SERVER_RESTARTS,
                                          max_task_retries=CALL_RETRIES, max_concurrency=SERVER_CALLS)
    store = f"facetracks-weights-{uuid.uuid4().hex}"     # on the driver's node: it lives and dies with the run
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    held = ray.remote(WeightsStore).options(name=store, num_cpus=0, scheduling_strategy=here).remote(weights)
    handles = [cls.remote(None, opt.detector, opt.predictor, store=store, code=code_id()) for _ in range(count)]
    devices = [_started(h.device.remote()) for h in handles]
    servers = [Server(h, n, held) for h, n in zip(handles, ray.get([h.node.remote() for h in handles]))]
    return servers, devices[0], left


def _remote_detect(opt: RunOptions) -> bool:
    """The CPU actors detect with OpenCV's cascade themselves (it rescans only what changed),
    unless this OpenCV has none (OpenCV 5) or the torch cascade was asked for: then the servers
    detect too."""
    backend = opt.detector.get("backend", "auto")
    return backend == "torch" or (backend == "auto" and not hasattr(cv2, "CascadeClassifier"))


def _server_stats(servers: list[Server]) -> dict:
    """What the servers did, summed (calls, crops and frames, seconds; a restarted server's since
    its restart), how many were restarted, and how many did not answer at the end (gone). Asked
    all at once, within STATS_WAIT_S; a server whose node is gone could answer only if Ray already
    restarted it elsewhere, so it is not waited for (it used to cost the job 30 s after a lost node)."""
    refs = [s.handle.stats.remote() for s in servers]
    dead = {n["NodeID"] for n in ray.nodes() if not n["Alive"]}
    wait_for = [r for r, s in zip(refs, servers) if s.node not in dead]
    if wait_for:
        ray.wait(wait_for, num_returns=len(wait_for), timeout=STATS_WAIT_S)
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    stats = []
    for r in ready:
        try:
            stats.append(ray.get(r))
        except ray.exceptions.RayError:
            pass
    calls = {k: sum(c[k] for c in stats) for k in stats[0] if k != "restarted"} if stats else {}
    return {"calls": calls, "restarted": sum(c["restarted"] for c in stats), "gone": len(servers) - len(stats)}


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


def _count_pieces(tasks: deque, opt: RunOptions) -> int:
    """The tasks the videos will make, counted until there are more than the cluster could hold
    actors (a quarter CPU each at the smallest, or `--actors`): all the actor sizing needs. Each
    video's header is read for its duration, and 10,000 files in an object store would be
    10,000 reads on the driver before anything starts."""
    cpus = sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive"))
    cap = max(opt.actors, int(4 * cpus)) + 1
    n = 0
    for it, seg in tasks:
        n += 1 if seg == "photos" else _estimated_pieces(it, opt)
        if n >= cap:
            break
    return n


def run_annotate(items: list[VideoItem], opt: RunOptions) -> dict:
    out = Out(*resolve(opt.out_dir))
    out.fs.create_dir(out.root, recursive=True)
    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    try:
        lease = Lease(out.fs, out.root, run_id).take()   # OutputBusy: another run writes here now
    except OSError as e:
        raise_if_full(e, f"writing {LEASE}")
        raise
    try:
        if lease.took_over:
            print(f"facetracks: an earlier {describe(lease.took_over)} ended without finishing; "
                  f"this run takes over its output folder", file=sys.stderr, flush=True)
        summary = _annotate(items, opt, out, run_id, took_over=lease.took_over is not None)
        if lease.lost:
            print(f"facetracks: while this run could not renew its hold on the output folder (the machine "
                  f"was suspended?), {describe(lease.lost)} took it over: the two may have overwritten each "
                  f"other's files; run the command again once that run has finished", file=sys.stderr)
        return summary
    finally:
        lease.release()


def _annotate(items: list[VideoItem], opt: RunOptions, out: Out, run_id: str, took_over: bool = False) -> dict:
    # a run that died left its temp files (a render's can be gigabytes): once its lease is taken
    # over, no run of ours writes here, so they go once untouched for a minute, not a day
    removed = remove_stale_temps(out.fs, out.root, TAKEOVER_TEMP_S if took_over else STALE_TEMP_S)
    earlier = _read_summary(out)
    summary = {"run": run_id, "model": opt.model_id, "params": opt.params_for_key, "videos": {},
               "stale_temp_files_removed": removed}
    tasks, renders = _plan_tasks(items, opt, out, earlier, summary)
    t0 = time.perf_counter()
    if tasks:
        try:
            _run_tasks(tasks, renders, opt, out, earlier, summary)
        except (KeyboardInterrupt, OutputFull) as e:   # Ctrl-C or a full disk: the summary says so, and
            summary["seconds"] = round(time.perf_counter() - t0, 2)    # what finished; a rerun does the rest
            if isinstance(e, OutputFull):
                summary["stopped"] = str(e)
            else:
                summary["interrupted"] = True
            try:
                _write_json(out, "_summary.json", summary)
            except OSError:
                pass                   # the disk is full: the last one written stays, whole
            raise
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    try:
        _write_json(out, "_summary.json", summary)
    except OSError as e:
        raise_if_full(e, "writing _summary.json")
        raise
    return summary


def _plan_tasks(items: list[VideoItem], opt: RunOptions, out: Out, earlier: dict, summary: dict
                ) -> tuple[deque, dict[str, tuple[str, str] | None]]:
    """What is to be done: every input whose tracks or render are not current is a task (a video
    to list for segments, a render alone, a batch of photos); the current ones go into the
    summary as skipped. Also each input's render plan (path, key), None when not rendering."""
    tasks: deque = deque()
    renders: dict[str, tuple[str, str] | None] = {}
    photos: list[VideoItem] = []

    def check(it: VideoItem) -> tuple:
        key = _key(it, opt)
        plan = _render_plan(it, opt, out, key)
        meta = read_meta(it.output(out.root), out.fs) if key is not None else None
        current = key is not None and not opt.overwrite and is_current(meta, key)
        keys = render_keys(plan, opt, key) if plan else ()
        render_current = plan is None or (not opt.overwrite and (
            photo_render_current(it, plan, earlier, out.fs, keys) if it.photo else read_render_key(plan[0], out.fs) in keys))
        return plan, current, render_current, None if current else _other_source(it, meta, opt)

    # each check reads a file's footer or header: a round trip on an object store, so many at once
    with ThreadPoolExecutor(PLAN_THREADS) as pool:
        checked = list(pool.map(check, items))
    for it, (plan, current, render_current, other) in zip(items, checked):
        renders[it.name] = plan
        if other:
            summary["videos"][it.name] = with_input({"status": "failed", "error": other}, it)
        elif current and render_current:
            summary["videos"][it.name] = with_input(_skipped(earlier.get(it.name, {}), it, opt), it)
        elif it.photo:         # redone whole, tracks and render: a photo costs milliseconds
            photos.append(it)
        elif current:          # the tracks stand; only the render is redone
            tasks.append((it, "render"))
        else:
            tasks.append((it, "plan" if _splits(opt) else None))
    tasks.extend((b, "photos") for b in batches(photos))
    return tasks, renders


def _other_source(it: VideoItem, meta: dict | None, opt: RunOptions) -> str | None:
    """Why `it`'s track file, not current, is not to be replaced: it holds another file's tracks
    (two input folders with a file of one name: `annotate A B` names the second `x.mp4~1`, and
    `annotate B` alone then wrote B's tracks over A's, silently). None when it is this file's, or
    --overwrite. (A folder moved as it was is current, wherever it is now: skipped, not refused.)"""
    if opt.overwrite or not meta:
        return None
    was = (meta.get("source") or {}).get("path")
    if not was or was == sources.absolute(it.path):
        return None
    return (f"{it.path}: {it.output(opt.out_dir)} holds the tracks of {was}, another file of the same name: "
            f"not replaced; give another --out, or --overwrite to replace them")


def _run_tasks(tasks: deque, renders: dict, opt: RunOptions, out: Out, earlier: dict, summary: dict) -> None:
    """Ray, the stage servers if asked for, the actors, and the task loop (`drive._drive`)."""
    started = time.time()
    init_ray(opt.address)
    n_tasks = _count_pieces(tasks, opt)
    weights = ray.put(opt.weights)
    servers, server_device, left = _start_stage_servers(opt, weights) if opt.stage_server else ([], "", [])
    beside: list[str] = []       # node ids of CPU actors on the nodes without a GPU (sizing.plan_beside_gpus)
    if servers:
        plan = plan_actors(left, n_tasks, opt.actors, opt.cpus_per_actor or 1.0, 0.0)
        n, cpa, gpa = plan.count, plan.cpus, 0.0
        streams = opt.streams or SERVER_FED_STREAMS
    else:
        n, cpa, gpa = _plan_actors(opt, n_tasks)
        streams = opt.streams or (GPU_STREAMS if gpa else 1)
        if gpa and opt.cpu_beside and not opt.actors:
            beside = plan_beside_gpus(ray.nodes(), n_tasks, n)
    # no restarts by Ray: the driver replaces a dead actor itself and decides where its tasks go;
    # each of an actor's concurrent calls is one stream of its shared stages (jobs/worker.py)
    actor_cls = ray.remote(AnnotateWorker).options(num_cpus=cpa, num_gpus=gpa, max_restarts=0,
                                                   max_concurrency=streams)
    made = itertools.count()     # each CPU actor (replacements too) starts from the next of its node's servers
    cpu_cls = ray.remote(AnnotateWorker)

    def make_actor(slot: int):
        if slot >= n:            # on its node while it has room, else where Ray finds some (its node lost)
            where = NodeAffinitySchedulingStrategy(beside[slot - n], soft=True)
            return cpu_cls.options(num_cpus=MAX_DEFAULT_CPUS, num_gpus=0, max_restarts=0, max_concurrency=1,
                                   scheduling_strategy=where).remote(
                weights, opt.detector, opt.follow, opt.predictor, "cpu", int(MAX_DEFAULT_CPUS), 0, None, code_id())
        stages = RemoteStages(servers, _remote_detect(opt), server_device, next(made)) if servers else None
        return actor_cls.remote(weights, opt.detector, opt.follow, opt.predictor, None, max(1, int(cpa)),
                                decode_threads(cpa, streams), stages, code_id())
    actors = [make_actor(slot) for slot in range(n + len(beside))]
    summary["ray"] = {"gcs_address": ray.get_runtime_context().gcs_address, "nodes": len(ray.nodes())}
    probes = [a.device.remote() for a in actors]
    device, failures = _first_started(probes[:n], waiting_for=lambda: _room(cpa, gpa))
    summary["actors"] = {"count": n, "replaced": 0, "cpus_per_actor": cpa, "gpus_per_actor": gpa,
                         "streams": streams, "decode_threads": decode_threads(cpa, streams), "device": device}
    beside_probes = probes[n:]   # their device, read at the end
    if beside:                   # their start failures, as any actor's, come back through the task loop
        summary["actors"]["beside_gpus"] = {"count": len(beside), "nodes": len(set(beside)),
                                            "cpus_per_actor": float(MAX_DEFAULT_CPUS), "streams": 1}
    for line in failures:        # an actor of a node set up unlike the others; the rest go on (drive.py)
        note_start_failure(summary, line)
    if servers:
        summary["actors"]["stage_servers"] = {"count": len(servers), "nodes": len({s.node for s in servers}),
                                              "detect": _remote_detect(opt)}
    inflight = [max(opt.inflight, streams + 1)] * n + [opt.inflight] * len(beside)
    ray.wait(probes, num_returns=len(probes), timeout=SIBLINGS_S)     # the others load their model too
    finished = _drive(actors, tasks, opt, summary, out, earlier, renders, make_actor, started, inflight,
                      waiting=_not_started(probes))
    if beside:                   # how much of the job the nodes without a GPU carried, and on what
        summary["actors"]["beside_gpus"]["tasks"] = sum(k for slot, k in finished.items() if slot >= n)
        try:
            summary["actors"]["beside_gpus"]["device"] = _first_started(beside_probes, timeout=0)[0]
        except WorkerStartError:
            summary["actors"]["beside_gpus"]["device"] = "none started"
    if servers:
        summary["actors"]["stage_servers"].update(_server_stats(servers))
