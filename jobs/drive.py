"""The driver's task loop (`_drive`): hands tasks to the actors, keeps at most `inflight` tasks
queued per actor (backpressure: the driver never holds more than actors x inflight results in
flight), lists long videos' keyframes beside the actors and queues their segments, writes each
track file itself (a whole video's bytes as its actor encoded them; a segmented video's stitched
segments; temp name, then rename: `results.py`) and rewrites `_summary.json` as videos finish
(`record_summary`). It replaces an actor whose process dies and retries the tasks it held, a
suspect alone on its actor; a video that kills its worker `retries` times is quarantined and
reported, and the job goes on. A task that has started and then reports nothing for `stall_s`
(no frame decoded or rendered: a read from a hung mount, a decoder that never returns) is stuck:
its actor is stopped and replaced, the stuck task tried again alone (then quarantined as a death
would be), the others it held put back as they were. Without that one stuck file would hold the
job for ever. A task whose actor could not start, or whose node was lost, is not the video's
fault: it goes back as it was (`start_failure`, `lost_node`).
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from facetracks.pipeline.parquet import meta_of
from facetracks.pipeline.segments import segments_of
from facetracks.pipeline.sources import text_path

from .inputs import VideoItem
from .outputs import OutputFull, raise_if_full, remove_temps_of
from .photos import PhotoBatch, failed_each
from .progress import POLL_EVERY_S, FrameBar, shows
from .results import SegmentedVideo, finish_whole, frames_done
from .run_state import KEPT, Out, _write_json, with_input

if TYPE_CHECKING:
    from .ray_runner import RunOptions

ACTOR_START_S = 300
STALL_CHECK_S = 5.0      # how often the driver asks the board which tasks went silent
SUMMARY_SHARE = 0.05     # of the driver's time, at most, on rewriting _summary.json as results come
SUMMARY_QUICK_S = 0.01   # a write this quick (under ~1,000 videos) is made after every result


class WorkerStartError(RuntimeError):
    """No worker could be started (the model does not load there, the node is gone)."""


NOT_STARTED = f"a worker did not start within {ACTOR_START_S} s (no node can place it?)"


def _started(ready, timeout: float = ACTOR_START_S) -> str:
    """Wait until an actor has loaded its model (`ready`: its `device` call); its device, or
    WorkerStartError with the cause (`timeout` 0: a ref `ray.wait` found ready)."""
    try:
        return ray.get(ready, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise WorkerStartError(NOT_STARTED) from None
    except ray.exceptions.RayError as e:
        raise WorkerStartError(start_failure(e)) from None


WAIT_NOTE_S = 15.0       # a run whose first worker has not started by then says what it waits for


def _first_started(probes: list, timeout: float = ACTOR_START_S,
                   waiting_for: Callable[[], str] | None = None) -> tuple[str, list[str]]:
    """The device of the first actor to load its model (`probes`: their `device` calls), and the
    start failures seen before it, one line per cause. WorkerStartError only when none can: a
    node that cannot start one (facetracks missing there, or other facetracks code) costs the
    job that node's actors, not the run (`_drive` leaves them out). `waiting_for()` says what the
    cluster has free: told after WAIT_NOTE_S, and in the error (another job holding every CPU
    looked like silence, then "no node can place it?")."""
    deadline = time.monotonic() + timeout
    note_at = time.monotonic() + WAIT_NOTE_S if waiting_for else float("inf")
    pending, failures = list(probes), []
    while pending:
        done, pending = ray.wait(pending, num_returns=1,
                                 timeout=max(0.0, min(deadline, note_at) - time.monotonic()))
        if not done:
            if time.monotonic() >= deadline:
                break
            tqdm.write(f"annotate: no worker has started in {WAIT_NOTE_S:g} s, still waiting: {waiting_for()}",
                       file=sys.stderr)
            note_at = float("inf")
            continue
        try:
            return _started(done[0], 0), failures
        except WorkerStartError as e:
            if str(e) not in failures:
                failures.append(str(e))
    raise WorkerStartError(failures[-1] if failures else
                           f"{NOT_STARTED}: {waiting_for()}" if waiting_for else NOT_STARTED)


# A task whose actor was lost this often counts the next loss as its actor's death. One: Ray
# reports a crash on a busy node as lost contact too when news of the death takes over a second
# (timeout_ms_task_wait_for_death_info), so a killer video gets one free try, not more.
NODE_LOSSES = 1


def lost_node(e: ray.exceptions.RayActorError) -> str | None:
    """Where an actor was lost with its node (a spot instance taken back, a machine gone, the
    network to it cut), else None: `IP (node id)` when Ray says its node died, `actor ID` when
    Ray lost contact with it first (the driver hears the socket close before the cluster
    declares the node dead; a worker process that dies on a live node is reported dead at once,
    as ActorDiedError). Its tasks were not the cause: they go back to the queue as they were,
    not as suspects that would each run alone (a lost GPU node's dozens of streams, one at a
    time), and count toward no quarantine, NODE_LOSSES times (then a loss counts as a death: a
    video that brings its node down, by exhausting its memory, is quarantined as any killer)."""
    text = str(e)
    if isinstance(e, ray.exceptions.ActorUnavailableError):
        return f"actor {(e.actor_id or '')[:8]}"
    died = re.search(r"its node has died\. Node Id: ([0-9a-f]+)", text)
    if not died and not e.preempted:
        return None
    ip = re.search(r"\bip: ([^\s]+)", text)
    node = died.group(1)[:8] if died else "preempted"
    return f"{ip.group(1)} ({node})" if ip else node


def _last_words(e: ray.exceptions.RayActorError) -> str:
    """Ray's reason, shortened: `Socket closed`, `its node has died`."""
    m = re.search(r"(Socket closed|its node has died|preempted)", str(e))
    return m.group(1) if m else type(e).__name__


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def last_line(text: str) -> str:
    """The last non-blank line: where a Ray error that carries a traceback names its cause."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def note_start_failure(summary: dict, message: str) -> None:
    """An actor that could not start: a line on stderr and in the summary's
    `actors.start_failures`, once per cause (a bad node's actors all fail the same way)."""
    failures = summary["actors"].setdefault("start_failures", [])
    if message not in failures:
        failures.append(message)
        tqdm.write(f"annotate: {message}", file=sys.stderr)


def start_failure(e: ray.exceptions.RayError) -> str:
    """One line for an actor that could not start: its node and the error its constructor raised.
    Ray's text holds the whole traceback, with colour codes, and its last line is the cause
    (`ModuleNotFoundError: No module named 'facetracks'`, `CodeMismatch: ...`)."""
    text = _ANSI.sub("", str(e))
    cause = last_line(text) or type(e).__name__
    node = re.search(r"\bip=([^,)\s]+)", text)
    where = f" on node {node.group(1)}" if node else ""
    hint = ("; facetracks and its dependencies must be installed on every node"
            if cause.startswith(("ModuleNotFoundError", "ImportError")) else "")
    return f"a worker failed to start{where}: {cause}{hint}"


# Tests set this to part of a video's path: listing its keyframes never returns, as a read from a
# hung mount would not. Never set in normal use.
LISTING_STALL_HOOK = "FACETRACKS_TEST_STALL_LISTING_ON"


def _list_segments(path: str, segment_s: float, overlap_s: float, on_frames) -> list:
    """`pipeline.segments.segments_of`, as the Ray task below runs it (this module imports no
    torch, so neither does the task's worker)."""
    stuck = os.environ.get(LISTING_STALL_HOOK)
    if stuck and stuck in path:
        if on_frames is not None:
            on_frames(0)
        threading.Event().wait()
    return segments_of(path, segment_s, overlap_s, on_frames)


# Keyframes are listed by Ray tasks, a few at a time beside the actors (I/O bound, no CPU
# reserved: the actors may hold every CPU), never serially on the driver.
_segments_remote = ray.remote(num_cpus=0)(_list_segments)


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
        return actor.__call__.remote(it, None, render, render_to, (table, frames), on_frames=on_frames)
    # a whole video is smoothed by its worker, and comes back as its track file's bytes; segments
    # come back as tables, smoothed by the driver once stitched
    whole = seg is None
    return actor.__call__.remote(it, seg, render, render_to, smooth=opt.smooth if whole else None, on_frames=on_frames,
                                 file_meta={"model": opt.model_id, "params": opt.params_for_key} if whole else None)


@dataclass
class _Running:
    actor: object          # the handle it was sent to (a slot's handle changes when replaced)
    slot: int
    item: VideoItem
    segment: object        # Segment, None (whole video), "render" or "photos"
    suspect: bool          # its actor died under it before: it runs alone
    task: int = 0          # the progress bar's id for it


def _drive(actors: list, tasks: deque, opt: RunOptions, summary: dict, out: Out, earlier: dict,
           renders: dict, make_actor, started: float, inflight_of: list[int] | None = None,
           waiting: dict | None = None) -> Counter:
    """Hand tasks to actors, at most `opt.inflight` queued on each, and collect results as they
    come. The fault model: an actor whose process dies is replaced by a new one, which takes tasks
    once it has loaded its model (the loop never waits for it: with its node gone it may find no
    place while the others carry the work); every task it held goes back to the queue, marked
    suspect, and a suspect runs alone on its actor, so the next death is its own; a task whose
    actor died `opt.retries` times is quarantined (its video fails, naming the cause) and
    everything else finishes. Any error in handling one result is that video's failure, never
    the job's. `make_actor(slot)` makes a slot's replacement; `inflight_of`: each slot's most
    queued tasks (default `opt.inflight`). `waiting`: {`device` call: slot} of the actors that have
    not loaded their model yet; they take tasks once they have, as replacements do (an actor that
    another job's CPUs kept from a place was handed tasks, and the run waited on it for ever while
    the others idled). Returns the tasks each slot's actors carried through."""
    expected: dict[str, int] = {it.name: 1 for it, seg in tasks if seg != "plan"}
    expected.update({p.name: 1 for it, seg in tasks if seg == "photos" for p in it.items})
    queue = deque((it, seg, False) for it, seg in tasks if seg != "plan")
    to_plan = deque(it for it, seg in tasks if seg == "plan")
    planning: dict = {}                          # a keyframe listing's ref -> (its video, its bar/board id)
    starting: dict = {ref: (slot, time.monotonic()) for ref, slot in (waiting or {}).items()}
    # ^ an actor's ready ref (its `device` call) -> (its slot, since when it is awaited)
    live = set(range(len(actors))) - {slot for slot, _ in starting.values()}    # slots with a working actor
    first = set(starting)                        # the run's own first actors not started yet (not replacements)
    none_live_since: float | None = None         # since when no slot has had a working actor
    received: dict[str, int] = {}               # results in, per video
    segmented: dict[str, SegmentedVideo] = {}
    inflight: dict = {}
    load = {i: 0 for i in range(len(actors))}
    alone: set[int] = set()                      # slots running a suspect
    deaths: dict[tuple, int] = {}                # task -> times its actor died under it
    stalls: dict[tuple, int] = {}                # ... of which, times it was stopped for being stuck
    losses: dict[tuple, int] = {}                # task -> times its actor's node was lost under it (`lost_node`)
    stuck: set[int] = set()                      # tasks (their bar ids) found silent for opt.stall_s
    stopped: dict[int, object] = {}              # id() -> actor handle stopped for a stuck task (held: ids stay unique)
    checked = time.monotonic()
    batching: dict = {}                          # actor -> its shared stages' counters (worker.batching)
    finished: Counter = Counter()                # slot -> tasks its actors carried through (returned)
    bar = FrameBar([p for it, seg in tasks for p in (it.items if seg == "photos" else (it,))],
                   shows(opt.progress), no_frames={it.name for it, seg in tasks if seg == "render"},
                   watch=opt.stall_s > 0)
    no_worker = "no worker could be started"
    told: set[str] = set()                       # lines already on stderr (`tell_once`)
    summary_at, summary_s = 0.0, 0.0             # the summary's last write: when it ended, how long it took
    summary_dirty = False                        # results in since that write

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
                raise_if_full(e, f"writing {it.name}'s tracks")
                seg.fail(f"{it.path}: stitching failed: {type(e).__name__}: {e}")
        if received[it.name] < expected[it.name]:
            return
        del received[it.name]
        try:
            entry = segmented.pop(it.name).finish() if expected[it.name] > 1 else finish_whole(res, opt, out)
        except OutputFull:
            raise
        except Exception as e:     # noqa: BLE001 - one video's failure, never the job's
            raise_if_full(e, f"writing {it.name}'s tracks")      # ... but a full disk is every video's
            entry = {"status": "failed", "error": f"{it.path}: writing the result failed: {type(e).__name__}: {e}"}
        wrote = entry["status"] == "ok"          # a failure or a render-only rerun wrote no tracks
        if entry["status"] == "skipped":         # a render-only rerun: the tracks' record as it was
            entry = {**{k: v for k, v in earlier.get(it.name, {}).items() if k in KEPT}, **entry}
        entry["written_by"] = summary["run"] if wrote else earlier.get(it.name, {}).get("written_by")
        if it.photo:
            entry["kind"] = "photo"
        full = entry.get("render", {}).pop("full", False)
        summary["videos"][it.name] = with_input(entry, it)
        bar.file_done(it.name, entry.get("frames", 0))
        if record:
            record_summary()
        if full:                                 # a render found the disk full: so would every later one
            raise OutputFull(f"the output is full: rendering {it.name} failed ({entry['render']['error']})")

    def stop_stuck() -> None:
        """Stop the actors of tasks started and silent for opt.stall_s; their results then come
        back as an actor's death and are handled below. A keyframe listing as silent (it reports
        each packet read) is cancelled: its video is then sent whole, and watched as any task."""
        listing = {task: ref for ref, (_, task) in planning.items()}
        by_task = {run.task: run for run in inflight.values()}
        for t in bar.silent(list(by_task) + list(listing), opt.stall_s):
            if t in listing:
                tqdm.write(f"annotate: {text_path(planning[listing[t]][0].path)}: listing its keyframes read "
                           f"nothing for {opt.stall_s:g} s; it goes whole")
                ray.cancel(listing[t], force=True)
                continue
            run = by_task[t]
            stuck.add(t)
            if id(run.actor) not in stopped:
                stopped[id(run.actor)] = run.actor
                tqdm.write(f"annotate: {text_path(run.item.path)}: nothing decoded or written for "
                           f"{opt.stall_s:g} s; stopping its worker")
                ray.kill(run.actor, no_restart=True)

    def expire_starts() -> None:
        """Replacements wait for a place as long as another actor carries the work (its node may be
        gone; an autoscaler may bring another). With none working, each gets ACTOR_START_S from
        when it was made or when the last working actor was lost, whichever is later."""
        nonlocal no_worker, none_live_since
        if live:
            none_live_since = None
            return
        now = time.monotonic()
        none_live_since = none_live_since or now
        for ref, (slot, since) in list(starting.items()):
            if now - max(since, none_live_since) > ACTOR_START_S:
                del starting[ref]
                ray.kill(actors[slot], no_restart=True)
                no_worker = NOT_STARTED
                note_start_failure(summary, no_worker)

    def record_summary() -> None:
        """The summary has news (a result is in): written now (`flush_summary`) or soon."""
        nonlocal summary_dirty
        summary_dirty = True
        flush_summary()

    def flush_summary() -> None:
        """Write the summary if it has news: at once while a write is quick (under SUMMARY_QUICK_S);
        once it is large (10,000 videos: 90 ms a write, the whole file each time), only so often
        that writing costs the driver at most SUMMARY_SHARE of its time, the rest caught up within
        seconds by the loop's calls. Written after every result, a run of 10,000 videos spent 8
        minutes of the driver's one thread on it, and of 100,000 half a day."""
        nonlocal summary_at, summary_s, summary_dirty
        if not summary_dirty or (summary_s > SUMMARY_QUICK_S
                                 and time.monotonic() - summary_at < summary_s / SUMMARY_SHARE):
            return
        start = time.monotonic()
        try:                 # progress only: the final write after the loop must succeed
            _write_json(out, "_summary.json", summary)
        except Exception as e:   # noqa: BLE001
            raise_if_full(e, "updating _summary.json")
            tqdm.write(f"annotate: could not update the summary ({e}); going on")
        summary_at, summary_dirty = time.monotonic(), False
        summary_s = summary_at - start

    def tell_once(line: str) -> None:
        """A line on stderr, once per run: many tasks of one lost node or broken device say the same."""
        if line not in told:
            told.add(line)
            tqdm.write(line, file=sys.stderr)

    def drop_render_temps(run: _Running) -> None:
        """Delete the temp files of the renders a task was writing when its actor died, was lost
        or was stopped: it will not finish them, and its retry writes its own. Before, they stayed
        until a run a day later swept them (a render's can be gigabytes)."""
        items = run.item.items if run.segment == "photos" else (run.item,)
        for target in (renders.get(p.name) for p in items):
            if target:
                remove_temps_of(out.fs, target[0])

    def replace(run: _Running) -> None:
        """A new actor in the slot of `run`'s, once, whichever of its tasks reports first; it takes
        tasks once its model is loaded."""
        if actors[run.slot] is run.actor and run.slot in live:
            ray.kill(run.actor, no_restart=True)
            live.discard(run.slot)
            actors[run.slot] = make_actor(run.slot)
            summary["actors"]["replaced"] += 1
            starting[actors[run.slot].device.remote()] = run.slot, time.monotonic()

    def device_failed(run: _Running, res: dict) -> dict | None:
        """A task failed because its actor's device did (a CUDA error: every later call of that
        process fails too): the actor is replaced (once: its tasks still running are stopped with
        it and redone as they were) and the task is redone as after a death: one of its video's
        deaths, a suspect that runs alone, quarantined at `opt.retries`. Every task of the
        failing batch reports the error, and which came first says nothing, so each is a
        suspect: the video that breaks the device breaks it again alone. None when redone.
        Before, every task that actor was handed failed, until the run ended."""
        it, seg = run.item, run.segment
        if actors[run.slot] is run.actor:
            stopped[id(run.actor)] = run.actor
            summary["actors"]["device_errors"] = summary["actors"].get("device_errors", 0) + 1
            tell_once(f"annotate: an actor's device failed ({res['device_error']}); it is replaced and its tasks redone")
            replace(run)
        key = (it.name, getattr(seg, "index", seg))
        deaths[key] = deaths.get(key, 0) + 1
        if deaths[key] >= opt.retries:
            return {**res, "error": f"{res['error']} (quarantined: its worker failed {deaths[key]} times while it "
                                    f"held this video, the last time its device: {res['device_error']})"}
        queue.appendleft((it, seg, True))
        return None

    def limit(i: int) -> int:
        return inflight_of[i] if inflight_of else opt.inflight

    def next_task() -> tuple[int, int] | None:
        """(actor slot, queue position) of the next task to hand out: one at a time, first to an
        actor with a stream free (its limit less the one task queued behind them: a GPU actor of
        16 streams holds 17, a CPU actor 2), then to the least loaded for its size, so no task
        waits behind another while a stream idles elsewhere; a suspect runs alone, on an idle
        actor, and other work may pass it meanwhile."""
        for i in sorted((i for i in live if load[i] < limit(i) and i not in alone),
                        key=lambda i: (load[i] >= limit(i) - 1, load[i] / limit(i), i)):
            k = next((k for k, q in enumerate(queue) if not q[2] or not load[i]), None)
            if k is not None:
                return i, k
        return None

    try:
        while queue or inflight or planning or to_plan:
            while to_plan and len(planning) < 2 * max(1, len(live)):
                it = to_plan.popleft()
                task, on_frames = bar.reporter([it.name])
                planning[_segments_remote.remote(it.path, opt.segment_s, opt.overlap_s, on_frames)] = it, task
            expire_starts()
            if not live and not starting:        # every worker failed to start: the rest cannot run
                for it, seg, _ in queue:
                    collect(it, {"item": it, "segment": seg, "status": "failed", "error": f"{it.path}: {no_worker}"})
                queue.clear()
            while queue and (picked := next_task()) is not None:
                i, k = picked
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
            if not inflight and not planning and not starting:
                continue
            done, _ = ray.wait(list(inflight) + list(planning) + list(starting), num_returns=1,
                               timeout=POLL_EVERY_S if bar.show else STALL_CHECK_S if opt.stall_s > 0 or starting
                               else None)
            bar.poll()
            flush_summary()
            if opt.stall_s > 0 and time.monotonic() - checked >= STALL_CHECK_S:
                checked = time.monotonic()
                stop_stuck()
            if not done:
                continue
            if done[0] in starting:         # a replacement loaded its model, or failed to
                slot, _ = starting.pop(done[0])
                try:
                    _started(done[0], 0)
                    live.add(slot)
                except WorkerStartError as err:   # this slot is gone; the others carry on
                    no_worker = str(err)
                    note_start_failure(summary, no_worker)
                    if done[0] in first:          # ... after one more try, as for an actor lost later
                        actors[slot] = make_actor(slot)
                        summary["actors"]["replaced"] += 1
                        starting[actors[slot].device.remote()] = slot, time.monotonic()
                continue
            if done[0] in planning:         # a video's keyframes are listed: its segments join the queue
                it, task = planning.pop(done[0])
                bar.task_ended(task, {})
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
                finished[run.slot] += not (isinstance(res, dict) and res.get("device_error"))   # else redone
                counters = res.pop("batching", None) if isinstance(res, dict) else None
                if counters:                   # the actor's totals so far: the summary sums the latest of each
                    batching[(run.slot, id(run.actor))] = counters
                    summary["actors"]["batching"] = {k: sum(b[k] for b in batching.values()) for k in counters}
                    # from the run's start until the last actor heard from had loaded its model
                    ready = round(res.pop("ready_at") - started, 3)
                    summary["actors"]["ready_s"] = max(summary["actors"].get("ready_s", 0.0), ready)
                bar.task_ended(run.task, frames_done(res))
            except ray.exceptions.RayActorError as e:
                bar.task_ended(run.task, {})
                drop_render_temps(run)           # what its render was writing: this run alone writes there
                replace(run)
                if e.actor_init_failed:          # it never ran: its actor could not start (a bad node)
                    note_start_failure(summary, start_failure(e))
                    queue.appendleft((it, seg, run.suspect))
                    continue
                if id(run.actor) in stopped and run.task not in stuck:   # stopped for another task's stall
                    queue.appendleft((it, seg, run.suspect))
                    continue
                key = (it.name, getattr(seg, "index", seg))
                node = None if id(run.actor) in stopped else lost_node(e)
                if node and losses.get(key, 0) < NODE_LOSSES:   # the node went, not the video's fault
                    losses[key] = losses.get(key, 0) + 1
                    summary["actors"]["lost_contact"] = summary["actors"].get("lost_contact", 0) + 1
                    tell_once(f"annotate: lost {node} ({_last_words(e)}): its node died or cannot be reached; its "
                              f"tasks are redone on the others")
                    queue.appendleft((it, seg, run.suspect))
                    continue
                deaths[key] = deaths.get(key, 0) + 1
                stalls[key] = stalls.get(key, 0) + (run.task in stuck)
                if deaths[key] < opt.retries:
                    if seg == "photos" and len(it.items) > 1:    # which photo kills it: each alone
                        queue.extendleft((PhotoBatch((p,)), seg, True) for p in reversed(it.items))
                    else:
                        queue.appendleft((it, seg, True))
                    continue
                why = (f"it did nothing for {opt.stall_s:g} s, {stalls[key]} times (a read that never returns, "
                       f"a stuck decoder?)" if stalls[key] == deaths[key] else
                       f"the worker process died {deaths[key]} times while it held this video (a decoder crash "
                       f"or out of memory?): {type(e).__name__}")
                res = {"item": it, "segment": seg, "status": "failed", "error": f"{it.path}: quarantined: {why}"}
            except ray.exceptions.RayError as e:
                bar.task_ended(run.task, {})
                res = {"item": it, "segment": seg, "status": "failed",
                       "error": f"{it.path}: worker error ({type(e).__name__}: {str(e)[:300]})"}
            if isinstance(res, dict) and res.get("device_error") and (res := device_failed(run, res)) is None:
                continue
            collect(it, res)
    finally:
        if first & set(starting):              # never found a place (or never loaded): said, not waited for
            summary["actors"]["never_started"] = len(first & set(starting))
        for ref, (slot, _) in starting.items():   # actors still waiting for a place: not needed now
            ray.kill(actors[slot], no_restart=True)
        for seg_state in segmented.values():   # interrupted: leave no pieces behind
            seg_state.fail("the run was interrupted")
        if inflight:                           # interrupted: stop the renders and remove what they were writing
            for run in inflight.values():
                ray.kill(run.actor, no_restart=True)
            for run in inflight.values():
                drop_render_temps(run)
        bar.close()
    return finished
