"""The unit of work Ray schedules: a callable class that holds the model (Ray's stateful-transform
pattern). It imports no Ray itself; `jobs/ray_runner.py` wraps it in an actor."""
from __future__ import annotations

import os
import tempfile
import traceback

import torch

from pipeline.annotate import annotate_video
from pipeline.filters import get_filter
from pipeline.profiles import build_parts
from pipeline.render import faces_by_frame, render_video
from pipeline.segments import Segment
from pipeline.video import VideoError

from .inputs import VideoItem
from .outputs import is_uri, resolve, upload


class AnnotateWorker:
    def __init__(self, weights: str | None, detector: dict, follow: dict, predictor: dict,
                 device: str | None = None, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        parts = build_parts("worker", weights, detector, follow, predictor, device)
        self.detector, self.predictor, self.follow = parts.detector, parts.predictor, parts.follow

    def device(self) -> str:
        name = str(self.predictor.device)
        precision = "float16" if self.predictor.half else "float32"
        return f"{name} ({torch.cuda.get_device_name()}, {precision})" if name.startswith("cuda") else name

    @staticmethod
    def _render(item: VideoItem, r, render: dict, render_to: str) -> None:
        """Render beside the tracks; for an object-store URI (render["out"]), into a local temp
        file, then stream it to `render_to`, a path inside that filesystem."""
        filt = get_filter(render["name"], render.get("overlay"), render.get("anchor", "eyes"))
        args = (faces_by_frame(r.table), filt, r.stats.frames, render.get("crf", 20), render.get("preset", "medium"))
        out = render.get("out")
        if not out or not is_uri(out):
            render_video(item.path, render_to, *args)
            return
        with tempfile.TemporaryDirectory() as d:
            local = os.path.join(d, "rendered.mp4")
            render_video(item.path, local, *args)
            upload(local, resolve(out)[0], render_to)

    def __call__(self, item: VideoItem, segment: Segment | None = None, render: dict | None = None,
                 render_to: str | None = None) -> dict:
        """Annotate one video or one segment of it (and render a whole video when asked); errors
        come back as data so one bad file never stops the job."""
        try:
            r = annotate_video(item.path, item.name, self.detector, self.predictor, self.follow,
                               segment.decode_from_s if segment else None, segment.end_s if segment else None)
            if render:
                self._render(item, r, render, render_to)
        except VideoError as e:
            return {"item": item, "segment": segment, "status": "failed", "error": str(e)}
        except Exception as e:   # anything else is a bug or an odd file: report it with the file's name
            return {"item": item, "segment": segment, "status": "failed",
                    "error": f"{item.path}: {type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=5)}
        return {"item": item, "segment": segment, "status": "ok", "table": r.table, "rendered": render_to, "info": r.info.to_dict(),
                "stats": r.stats.__dict__, "seconds": r.seconds, "pid": os.getpid()}
