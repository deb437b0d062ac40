"""Turning workers' results into track files and summary entries: a video sent whole is written
from its one result; a video sent in segments is stitched and streamed to its track file as the
segments complete (`SegmentedVideo`). The driver (`jobs/ray_runner.py`) calls these; any error
here is one video's failure, never the run's."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from facetracks.pipeline import sources
from facetracks.pipeline.parquet import TrackStream, face_count, frame_count, track_meta, write_tracks
from facetracks.pipeline.segments import Stitcher
from facetracks.pipeline.smoothing import SmoothParams, smooth_tracks
from facetracks.pipeline.video import VideoError, check_complete

from .inputs import VideoItem
from .outputs import raise_if_full, write_bytes

if TYPE_CHECKING:
    from .ray_runner import Out, RunOptions


def frames_done(res: dict | list) -> dict[str, int]:
    """Frames a task decoded, per file (a segment counts its overlap too; the file's end corrects it)."""
    results = res if isinstance(res, list) else [res]
    return {r["item"].name: r["stats"]["frames"] for r in results if r.get("status") == "ok" and "stats" in r}


def render_entry(res: dict, it: VideoItem, opt: RunOptions) -> dict:
    r = dict(res["render"])
    if r["status"] == "ok":
        r["output"] = it.rendered(opt.out_dir, opt.render["name"])
    return r


def entry_of(it: VideoItem, opt: RunOptions, frames: int, faces: int, info: dict, results: list[dict]) -> dict:
    seconds = sum(r["seconds"] for r in results)
    entry = {"status": "ok", "output": it.output(opt.out_dir), "frames": frames, "faces": faces,
             "timing": info.get("timing", "pts"), "detections": sum(r["stats"]["detections"] for r in results),
             "segments": len(results), "seconds": round(seconds, 2), "fps": round(frames / max(seconds, 1e-9), 1)}
    damaged = [t for r in results for t in r.get("damaged", [])]
    if damaged:      # decoding skipped packets it could not read: the frames they held have no rows
        at = sorted({round(t, 3) for t in damaged if t is not None})   # once, where segments overlap
        entry["damaged"] = {"packets": len(at) + damaged.count(None), "at_s": at[:20]}
    devices = sorted({r["device"] for r in results if r.get("device")})
    if devices:      # which kind of actor read it: on a cluster of GPU and CPU nodes, rows depend on it
        entry["device"] = devices[0] if len(devices) == 1 else devices
    if sources.changed_since(it.path, info["size_bytes"], info["mtime"]):
        entry["changed_while_read"] = True      # the tracks hold what was there; its run key, what a rerun redoes
    if results[0].get("render"):
        entry["render"] = render_entry(results[0], it, opt)
    return entry


def finish_whole(res: dict, opt: RunOptions, out: Out) -> dict:
    """A video sent whole: its one result, written."""
    it = res["item"]
    if res["status"] == "render_only":
        return {"status": "skipped", "reason": "tracks are current; render redone", "output": it.output(opt.out_dir),
                "render": render_entry(res, it, opt)}
    if res["status"] != "ok":
        return {"status": "failed", "error": res["error"]}
    info = res["info"]
    try:
        if "track_file" in res:       # a video: smoothed and encoded by its worker
            tf = res["track_file"]
            frames, faces = tf["frames"], tf["faces"]
            write_bytes(out.fs, it.output(out.root), tf["bytes"])
        else:                         # a photo: its table
            table = res["table"]
            frames, faces = frame_count(table), face_count(table)
            write_tracks(table, it.output(out.root), track_meta(info, it.name, frames, opt.model_id,
                                                                opt.params_for_key), out.fs)
    except (OSError, pa.ArrowException) as e:
        dropped = _drop_render(res, it, opt, out)
        raise_if_full(e, f"writing {it.name}'s tracks")
        return {"status": "failed", "error": f"{it.output(opt.out_dir)}: cannot write ({e})"
                + ("; its render, made before, removed: a render is never left without its tracks" if dropped else "")}
    return entry_of(it, opt, frames, faces, info, [res])


def _drop_render(res: dict, it: VideoItem, opt: RunOptions, out: Out) -> bool:
    """Delete the render this result's worker moved into place (renders are written by the actors,
    before the driver writes the tracks); whether there was one."""
    if not (opt.render and res.get("render", {}).get("status") == "ok"):
        return False
    try:
        out.fs.delete_file(it.rendered(out.root, opt.render["name"]))
    except OSError:
        return False
    return True


class SegmentedVideo:
    """A video sent in segments: each result is stitched and written to the video's track stream
    as soon as the segments before it are in (`Stitcher`, `TrackStream`), so the driver holds only
    segments that arrived early, never the whole video."""

    def __init__(self, it: VideoItem, opt: RunOptions, out: Out):
        self.it, self.opt, self.out = it, opt, out
        self.early: dict[int, dict] = {}
        self.stitcher = Stitcher()
        self.stream: TrackStream | None = None
        self.done: list[dict] = []             # results written, without their tables
        self.error: str | None = None

    def add(self, res: dict) -> None:
        if self.error:
            return
        if res["status"] != "ok":
            self.fail(res["error"])
            return
        self.early[res["segment"].index] = res
        while len(self.done) in self.early:
            r = self.early.pop(len(self.done))
            if self.stream is None:
                self.stream = TrackStream(self.it.output(self.out.root), self.out.fs)
            self.stream.write(self.stitcher.add(r["table"], r["segment"]))
            self.done.append({k: v for k, v in r.items() if k != "table"})

    def fail(self, error: str) -> None:
        self.error = self.error or error
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.abort()

    def finish(self) -> dict:
        if self.error:
            return {"status": "failed", "error": self.error}
        info, frames = self.done[0]["info"], self.stitcher.offset
        try:                  # a segment cannot tell that the file ends early; the whole can
            check_complete(self.it.path, frames, info["header_frames"])
        except VideoError as e:
            self.fail(str(e))
            return {"status": "failed", "error": str(e)}
        faces = self.stream.faces
        try:
            smooth = SmoothParams(**self.opt.smooth)
            self.stream.close(track_meta(info, self.it.name, frames, self.opt.model_id, self.opt.params_for_key),
                              lambda table: smooth_tracks(table, smooth, (info["width"], info["height"])))
        except (OSError, pa.ArrowException) as e:
            raise_if_full(e, f"writing {self.it.name}'s tracks")
            return {"status": "failed", "error": f"{self.it.output(self.opt.out_dir)}: cannot write ({e})"}
        return entry_of(self.it, self.opt, frames, faces, info, self.done)
