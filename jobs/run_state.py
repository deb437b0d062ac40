"""What a run finds and leaves in its output folder (`Out`): the `_summary.json` an earlier run
wrote (read back so a skipped video keeps its record) and rewritten by the driver after every
video, so a killed driver leaves a truthful record and a rerun picks up where it stopped; each
video's run key, which tells whether its track file is current; and its render's path and key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from facetracks.pipeline.parquet import run_key
from facetracks.pipeline import sources
from facetracks.pipeline.sources import text_path
from facetracks.pipeline.render import render_key

from .inputs import VideoItem
from .outputs import write_bytes

if TYPE_CHECKING:
    from .ray_runner import RunOptions


@dataclass
class Out:
    """The output folder as a pyarrow filesystem and the folder's path inside it."""
    fs: pafs.FileSystem
    root: str


def _read_summary(out: Out) -> dict:
    """The videos of the summary an earlier run left here ({} when none or unreadable)."""
    try:
        with out.fs.open_input_stream(f"{out.root}/_summary.json") as f:
            return json.loads(f.read()).get("videos", {})
    except (OSError, ValueError):
        return {}


def _write_json(out: Out, name: str, data: dict) -> None:
    write_bytes(out.fs, f"{out.root}/{name}", json.dumps(data, indent=2).encode())


def _key(it: VideoItem, opt: RunOptions) -> dict | None:
    try:
        st = sources.info(it.path)
    except (OSError, ValueError):     # unreadable now: its worker reports why
        return None
    if st.kind != "file":
        return None
    return run_key(st.size, st.mtime, opt.model_id, opt.params_for_key)


def _render_plan(it: VideoItem, opt: RunOptions, out: Out, key: dict | None) -> tuple[str, str] | None:
    """(where the render goes, its render key) when this run renders, else None."""
    if not opt.render or key is None:
        return None
    return it.rendered(out.root, opt.render["name"]), _render_key(key, opt.render)


def _render_key(tracks_key: dict, r: dict) -> str:
    """`render_key` of a render asked for as `RunOptions.render` says."""
    return render_key(tracks_key, r["name"], r.get("overlay_bytes"), r["anchor"], r["crf"], r["preset"])


def render_keys(plan: tuple[str, str], opt: RunOptions, key: dict) -> tuple[str, str]:
    """The render keys that make `plan`'s file current: its own, and the one a run before
    2026-11-28 gave the same render (its tracks' key then held `segment_seconds: 0`): without
    it, every render of every folder was encoded again once."""
    return plan[1], _render_key({**key, "params": {**key["params"], "segment_seconds": 0}}, opt.render)


def with_input(entry: dict, it: VideoItem) -> dict:
    """The entry, first naming the file it is about: two inputs of one name are `x.mp4` and
    `x.mp4~1`, and only this says which is which (`%XX` for a name's bytes that are not UTF-8,
    no credentials of a URI)."""
    return {"input": text_path(sources.absolute(it.path)), **entry}


KEPT = ("frames", "faces", "timing", "detections", "segments", "damaged", "device", "written_by")


def _skipped(before: dict, it: VideoItem, opt: RunOptions) -> dict:
    """A skipped video's entry: what the run that wrote its output said of it (never an old
    error). Its render is this run's, which is current: the earlier entry's when that run wrote
    this render, else its path alone (the summary named the last run's render, another filter's)."""
    entry = {"status": "skipped", "reason": "output is current", "output": it.output(opt.out_dir),
             **{k: before[k] for k in KEPT if k in before}}
    if opt.render:
        path = it.rendered(opt.out_dir, opt.render["name"])
        r = before.get("render", {})
        same = r.get("status") == "ok" and str(r.get("output", "")).rsplit("/", 1)[-1] == path.rsplit("/", 1)[-1]
        entry["render"] = {**r, "output": path} if same else {"status": "ok", "output": path}   # --out spelt anew
    if it.photo:
        entry["kind"] = "photo"
    return entry
