"""The unit of work Ray schedules: a callable class that holds the model (Ray's stateful-transform
pattern). It imports no Ray itself; `jobs/ray_runner.py` wraps it in an actor (and hands it a
stage server's calls, `stages`, when the GPU work runs in a process of its own).

An actor may run several calls at once, on threads (Ray's `max_concurrency`): each call is one
stream of `SharedStages`, so the videos and segments an actor holds share each detector call and
each forward pass (pipeline/batching.py). A GPU actor is fed that way."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa
import torch

from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.batching import SharedStages
from facetracks.pipeline.filters import FilterFn, get_filter
from facetracks.pipeline.parquet import face_count, frame_count, track_file_bytes, track_meta
from facetracks.pipeline.photo import annotate_photo, read_photo, render_photo
from facetracks.pipeline.profiles import build_parts
from facetracks.pipeline.render import TracksMismatch, faces_by_frame, render_video
from facetracks.pipeline.segments import Segment
from facetracks.pipeline.smoothing import NONE, SmoothParams, smooth_tracks
from facetracks.pipeline.video import VideoError

from .code_id import check_code
from .inputs import VideoItem
from .outputs import is_full, is_uri, resolve, upload, write_bytes

if TYPE_CHECKING:
    from .stage_server import RemoteStages


# Tests set these to part of a video's name: the worker holding that video dies as a segfault would
# kill it (SIGKILL, no cleanup), or never returns, as a read from a hung network mount. Never set
# in normal use.
KILL_HOOK = "FACETRACKS_TEST_KILL_WORKER_ON"
STALL_HOOK = "FACETRACKS_TEST_STALL_WORKER_ON"
# "NAME:FLAG": the first worker to hold a video whose name has NAME (while FLAG, a file, does not
# exist yet: it is made) finds its device broken, for good, as after a CUDA illegal memory access;
# "NAME": every worker that holds it.
DEVICE_ERROR_HOOK = "FACETRACKS_TEST_DEVICE_ERROR_ON"
# What torch says when the device, not the video, failed. CUDA errors are sticky: every later call
# of that process fails the same way, so the actor is replaced (jobs/drive.py), not the video failed.
DEVICE_ERRORS = ("CUDA error", "CUDA-capable device", "CUBLAS_STATUS_", "CUDNN_STATUS_", "cuDNN error",
                 "device-side assert triggered")
GPU_SWITCH_INTERVAL_S = 0.0005
HEARTBEAT_S = 1.0        # a busy phase's heartbeats (the reporter sends at most every 0.5 s anyway)


def _test_hooks(item: VideoItem) -> None:
    poison = os.environ.get(KILL_HOOK)
    if poison and poison in item.name:      # stands for a decoder segfault or an OOM kill
        os.kill(os.getpid(), signal.SIGKILL)
    stuck = os.environ.get(STALL_HOOK)
    if stuck and stuck in item.name:        # stands for a read that never returns
        threading.Event().wait()


def device_error(e: BaseException) -> str | None:
    """The line of `e` that says the device failed (torch's CUDA errors run to several lines, the
    last a hint about TORCH_USE_CUDA_DSA), or None when it is no device error."""
    if not isinstance(e, RuntimeError):
        return None
    return next((ln.strip() for ln in str(e).splitlines() if any(m in ln for m in DEVICE_ERRORS)), None)


def _render_failed(error: str, e: BaseException) -> dict:
    """A failed render's entry; `full` when the output's disk was full: the driver then stops the
    run (every later render, each reading its whole video, would fail the same way)."""
    full = is_full(e) or (e.__cause__ is not None and is_full(e.__cause__))   # render.py wraps the muxer's
    return {"status": "failed", "error": error, **({"full": True} if full else {})}


def _started(on_frames) -> None:
    """Tell the run's board this task has started (`on_frames(0)`: no frames, a heartbeat): from
    then on, a task silent for `--stall-seconds` is stuck (jobs/drive.py)."""
    if on_frames is not None:
        on_frames(0)


def _alive(on_frames):
    """The heartbeat a render calls after each frame (it decodes no frames the bar counts)."""
    return (lambda: on_frames(0)) if on_frames is not None else None


@contextlib.contextmanager
def _beating(alive):
    """`alive()` from a thread while the task does work that reads no frames but always ends
    (smoothing and the pose fit of a long video, an upload): the watchdog looks for reads and
    decoders that never return, not for these."""
    if alive is None:
        yield
        return
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            alive()
    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


@dataclass
class _PhotoDrawer:
    """What draws a batch's photos, built once per batch: the filter (an overlay decoded once) and
    the output filesystem (a URI resolved once). When building fails, each photo's render fails
    with that error and its tracks stand."""
    filt: FilterFn | None = None
    fs: object = None
    error: Exception | None = None

    @classmethod
    def of(cls, render: dict | None) -> _PhotoDrawer | None:
        if not render:
            return None
        try:
            return cls(get_filter(render["name"], render.get("overlay_bytes"), render.get("anchor", "eyes")),
                       resolve(render["out"])[0])
        except Exception as e:   # noqa: BLE001 - reported on each photo's render
            return cls(error=e)


class AnnotateWorker:
    def __init__(self, weights: bytes | str | None, detector: dict, follow: dict, predictor: dict,
                 device: str | None = None, threads: int = 0, decode_threads: int = 0,
                 stages: RemoteStages | None = None, code: str | None = None):
        """`threads`: torch's (0: its default); `decode_threads`: each stream's decoder's (0:
        FFmpeg's choice, a thread per core: right for one stream, a pile-up for 16 on 4 cores).
        `stages`: a GPU process's network (and cascade, with `stages.detect`) instead of this
        actor's own (jobs/stage_server.py); the actor then runs on the CPU and cuts the crops.
        `code`: the driver's `code_id()`; on a node with other facetracks code the actor does not
        start (jobs/code_id.py)."""
        check_code(code)
        self.decode_threads = decode_threads
        self.stages = stages
        if threads:
            torch.set_num_threads(threads)
        if stages is not None:
            device = "cpu"
            if stages.detect:        # the server's cascade; built here too (on the CPU) so bad settings fail here
                detector = {**detector, "backend": "torch"}
        parts = build_parts("worker", weights, detector, follow, predictor, device)
        self.detector, self.predictor, self.follow = parts.detector, parts.predictor, parts.follow
        if stages is not None:
            self.predictor = replace(self.predictor, forward=stages.forward)
            if stages.detect:
                self.detector = stages.detector()
        self.shared = SharedStages(self.detector, self.predictor)
        if self.predictor.device.type == "cuda":
            # the thread running a batch launches kernels, each releasing the GIL; other streams'
            # threads would hold it for up to the default 5 ms before each launch could go on
            sys.setswitchinterval(GPU_SWITCH_INTERVAL_S)
        self.ready_at = time.time()          # model loaded: the driver's actors.ready_s
        self._cpu_at_ready = time.process_time()

    def batching(self) -> dict:
        """The shared stages' counters so far (calls, frames and crops per call, seconds), the
        stage servers' calls by node (`RemoteStages.stats`), and the CPU seconds this actor's
        process has used since its model loaded (every thread)."""
        served = self.stages.stats() if self.stages is not None else {}
        return {**self.shared.stats.to_dict(), **served, "process_cpu_s": time.process_time() - self._cpu_at_ready}

    def _test_device(self, item: VideoItem) -> None:
        """DEVICE_ERROR_HOOK: this process's device breaks on the named video, and stays broken."""
        hook = os.environ.get(DEVICE_ERROR_HOOK)
        if hook and not getattr(self, "_broken", False):
            name, _, flag = hook.partition(":")
            if name in item.name and not (flag and os.path.exists(flag)):
                if flag:
                    open(flag, "w").close()
                self._broken = True
        if getattr(self, "_broken", False):
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                               "asynchronously reported at some other API call, so the stacktrace below might be "
                               "incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with "
                               "`TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")

    def device(self) -> str:
        if self.stages is not None:
            return f"{self.stages.device} (stage server; crops cut on the CPU actors)"
        name = str(self.predictor.device)
        precision = self.predictor.precision
        return f"{name} ({torch.cuda.get_device_name()}, {precision})" if name.startswith("cuda") else f"{name} ({precision})"

    @staticmethod
    def _render(item: VideoItem, table, frames: int, render: dict, render_to: str, alive=None) -> dict:
        """Render beside the tracks; for an object-store URI (render["out"]), into a local temp
        file, then stream it to `render_to`, a path inside that filesystem. Returns the summary's
        render entry: a failed render is reported on its own and never costs the tracks."""
        try:
            filt = get_filter(render["name"], render.get("overlay_bytes"), render.get("anchor", "eyes"))
            args = (faces_by_frame(table), filt, frames, render.get("crf", 20), render.get("preset", "medium"),
                    render.get("key"), alive)
            out = render.get("out")
            if not out or not is_uri(out):
                st = render_video(item.path, render_to, *args)
            else:
                with tempfile.TemporaryDirectory() as d:
                    local = os.path.join(d, "rendered" + os.path.splitext(render_to)[1])
                    st = render_video(item.path, local, *args)
                    with _beating(alive):
                        upload(local, resolve(out)[0], render_to)
        except (VideoError, TracksMismatch, ValueError) as e:
            return _render_failed(str(e), e)
        except Exception as e:    # noqa: BLE001 - any failure of the render is the render's, not the video's
            return _render_failed(f"{item.path}: {type(e).__name__}: {e}", e)
        return {"status": "ok", "audio": st.audio, "padded": st.padded, "frames": st.frames}

    def __call__(self, item: VideoItem, segment: Segment | None = None, render: dict | None = None,
                 render_to: str | None = None, tracks=None, smooth: dict | None = None, on_frames=None,
                 file_meta: dict | None = None) -> dict:
        """Annotate one video or one segment of it (and render a whole video when asked); errors
        come back as data so one bad file never stops the job. With `tracks` (a table whose
        output is current, and its frame count) only the render is redone. `smooth`: the table
        comes back smoothed (a whole video; segments are smoothed once stitched). `on_frames(n)`:
        the frames done, as they are done (the run's progress). `file_meta` ({model, params}; a
        whole video): the track file comes back as its bytes (`track_file_bytes`), not as a
        table, so the driver only writes them: encoding one took it about 8 ms a file, a cap of
        ~100 short clips a second for a whole cluster, and reading the table back about 3 more."""
        base = {"item": item, "segment": segment}
        _started(on_frames)
        _test_hooks(item)
        if tracks is not None:
            table, frames = tracks
            return {**base, "status": "render_only",
                    "render": self._render(item, table, frames, render, render_to, _alive(on_frames))}
        smoothing = SmoothParams(**smooth) if smooth else NONE
        try:
            self._test_device(item)
            with self.shared.stream() as (detector, predictor):
                r = annotate_video(item.path, item.name, detector, predictor, self.follow,
                                   segment.decode_from_s if segment else None, segment.end_s if segment else None,
                                   on_frames, pose=smoothing.method == "none",   # else fitted once, when smoothed
                                   decode_threads=self.decode_threads)
        except VideoError as e:
            return {**base, "status": "failed", "error": str(e)}
        except Exception as e:   # anything else is a bug or an odd file: report it with the file's name
            return {**base, "status": "failed", "error": f"{item.path}: {type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=5),
                    **({"device_error": line} if self.stages is None and (line := device_error(e)) else {})}
        with _beating(_alive(on_frames)):
            table = smooth_tracks(r.table, smoothing, (r.info.width, r.info.height))
        res = {**base, "status": "ok", "table": table, "info": r.info.to_dict(), "stats": r.stats.__dict__,
               "device": self.device(),
               "seconds": r.seconds, "damaged": r.damaged, "batching": self.batching(), "ready_at": self.ready_at}
        if render:                   # drawn from the points the track file holds
            res["render"] = self._render(item, table, r.stats.frames, render, render_to, _alive(on_frames))
        if file_meta is not None:
            frames = frame_count(table)
            try:
                data = track_file_bytes(table, track_meta(res["info"], item.name, frames, **file_meta))
            except (pa.ArrowException, OSError, ValueError) as e:
                return {**base, "status": "failed", "error": f"{item.path}: cannot encode its track file ({e})"}
            res["track_file"] = {"bytes": data, "frames": frames, "faces": face_count(table)}
            del res["table"]
        return res

    def photos(self, items: list[VideoItem], plans: list[tuple[str, str] | None], render: dict | None = None,
               on_frames=None) -> list[dict]:
        """Many photos in one task, each its own result (a bad one fails alone). `plans`: per
        photo, (where its render goes, its render key), or None."""
        _started(on_frames)
        drawer = _PhotoDrawer.of(render)      # the filter and the output filesystem, once per batch
        with self.shared.stream() as stages:
            return [self._photo(it, plan, drawer, on_frames, stages) for it, plan in zip(items, plans)]

    def _photo(self, item: VideoItem, plan: tuple[str, str] | None, drawer: _PhotoDrawer | None, on_frames,
               stages: tuple) -> dict:
        base = {"item": item, "segment": None}
        _test_hooks(item)
        try:
            photo = read_photo(item.path)
            r = annotate_photo(photo, item.name, *stages, self.follow, on_frames)
        except VideoError as e:
            return {**base, "status": "failed", "error": str(e)}
        except Exception as e:   # noqa: BLE001 - a bug or an odd file: reported with the file's name
            return {**base, "status": "failed", "error": f"{item.path}: {type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=5)}
        res = {**base, "status": "ok", "table": r.table, "info": r.info, "stats": r.stats.__dict__,
               "device": self.device(),
               "seconds": r.seconds}
        if drawer and plan:
            try:
                if drawer.error:
                    raise drawer.error
                data = render_photo(photo, faces_by_frame(r.table), drawer.filt, os.path.splitext(plan[0])[1])
                write_bytes(drawer.fs, plan[0], data)
                res["render"] = {"status": "ok", "key": plan[1], "frames": max(1, len(photo.frames))}
            except Exception as e:   # noqa: BLE001 - a failed render never costs the tracks
                res["render"] = _render_failed(f"{item.path}: render: {type(e).__name__}: {e}", e)
        return res
