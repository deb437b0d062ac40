"""The Python API: the same work as `facetracks annotate` / `render`, one video (or photo) at a time, in-process.

A thin layer over the pipeline (no Ray, no output folder): what the CLI's actors do per video is
`pipeline.annotate.annotate_video` then `smoothing.smooth_tracks`, and this calls exactly those.
"""
from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from facetracks.jobs.inputs import is_photo
from facetracks.jobs.outputs import local_folder
from facetracks.jobs.render_args import check_render, tracks_path, write_photo_render
from facetracks.pipeline.annotate import annotate_video as _annotate
from facetracks.pipeline.filters import FILTERS, get_filter
from facetracks.pipeline.photo import annotate_photo, read_photo
from facetracks.pipeline.profiles import PROFILES, ProfileParts, load_profile
from facetracks.pipeline.parquet import meta_of
from facetracks.pipeline.render import RenderStats, check_source, faces_by_frame, load_tracks_for
from facetracks.pipeline.render import render_video as _render
from facetracks.pipeline.smoothing import NONE, SmoothParams, parse_smooth, smooth_tracks

__all__ = ["annotate_video", "load_profile", "render_video", "read_tracks", "PROFILES", "FILTERS"]

TRACKS_ATTR = "facetracks"      # df.attrs key: the tracks' source and frame count (a track file's metadata)


def annotate_video(path: str | os.PathLike, profile: str | ProfileParts = "accurate", *,
                   smooth: SmoothParams | bool | str = True, device: str | None = None) -> pd.DataFrame:
    """Landmark tracks of one video: a row per face per frame, the columns of the Parquet schema.
    A photo (JPEG, PNG, WebP, BMP, TIFF; EXIF orientation applied) is one frame: frame_index 0; an
    animated PNG or WebP is its frames.

    `profile` is a name ("accurate", "fast") or what `load_profile` returned, to keep one loaded
    model across many videos: one video at a time (threads sharing it take turns; load one per
    thread to run them side by side). `smooth`: True (the CLI's default), False, your
    `SmoothParams`, or the CLI's `--smooth` text ("none", "local-poly:radius=6").
    `device` goes with a profile's name (a loaded profile is on the device it was loaded on).
    """
    if not isinstance(profile, str) and device is not None:
        raise ValueError(f"device={device!r} with a loaded profile, which stays on its own device: give "
                         f"load_profile(name, {device!r}), or the profile's name with device")
    parts = load_profile(profile, device) if isinstance(profile, str) else profile
    params = SmoothParams() if smooth is True else NONE if smooth is False else \
        parse_smooth(smooth) if isinstance(smooth, str) else smooth
    if not isinstance(params, SmoothParams):
        raise ValueError(f"smooth={smooth!r}: True, False, a SmoothParams or the CLI's --smooth text")
    path = os.fspath(path)
    with parts.lock:
        if is_photo(path):
            r = annotate_photo(read_photo(path), os.path.basename(path), parts.detector, parts.predictor,
                               parts.follow)
            return _with_source(r.table.to_pandas(), r.info, r.info["header_frames"])
        r = _annotate(path, os.path.basename(path), parts.detector, parts.predictor, parts.follow,
                      pose=params.method == "none")          # else fitted once, to the smoothed points
    df = smooth_tracks(r.table, params, (r.info.width, r.info.height)).to_pandas()
    return _with_source(df, r.info.to_dict(), r.stats.frames)


def _with_source(df: pd.DataFrame, source: dict, frames: int) -> pd.DataFrame:
    """The DataFrame carries (in `df.attrs["facetracks"]`, kept by pandas through filtering and
    copies) which file it was made from and its frame count: `render_video` checks the one and
    draws every frame of the other, also from a DataFrame filtered by score."""
    df.attrs[TRACKS_ATTR] = {"source": source, "frame_count": int(frames)}
    return df


def read_tracks(path: str | os.PathLike) -> pd.DataFrame:
    """A track file written by `facetracks annotate` (its run metadata, also in `df.attrs["facetracks"]`).
    One file: pyarrow reads a folder as one table, every video's rows under the first file's
    metadata, and a render of one video then drew every video's faces on it."""
    path = os.fspath(path)
    if os.path.isdir(local_folder(path) or path):
        raise ValueError(f"{path} is a folder: read_tracks reads one track file (<name>.parquet in it)")
    table = pq.read_table(path)
    df = table.to_pandas()
    meta = meta_of(table.schema)
    if meta:
        df.attrs[TRACKS_ATTR] = meta
    return df


def render_video(video: str | os.PathLike, tracks: pd.DataFrame | pa.Table | str | os.PathLike,
                 out: str | os.PathLike, filter: str | None = None, *, overlay: str | bytes | None = None,
                 anchor: str = "eyes", crf: int = 20, preset: str = "medium") -> RenderStats:
    """Draw `filter` (see FILTERS, default sunglasses; "overlay" with your RGBA PNG as `overlay`) on `video`'s faces
    from `tracks` (a DataFrame from `annotate_video`/`read_tracks`, or a track file's path) into `out`.
    A photo is written as the image format `out`'s extension names. `out` may be a file:// URI; the
    input itself (by any path or link), a preset x264 does not know or a crf that is not an integer
    on the encoder's scale are a ValueError before anything is read, as in the CLI."""
    video = os.fspath(video)
    out = check_render(video, os.fspath(out), crf, preset)
    if isinstance(tracks, (str, os.PathLike)):
        faces, frames = load_tracks_for(video, tracks_path(os.fspath(tracks)))     # checks it was made from `video`
    else:      # its source and frame count, when it says (annotate_video, read_tracks, a track file's table)
        meta = meta_of(tracks.schema) if isinstance(tracks, pa.Table) else tracks.attrs.get(TRACKS_ATTR)
        df = tracks.to_pandas() if isinstance(tracks, pa.Table) else tracks
        if meta:
            check_source(video, meta, "the tracks given")
        videos = df["video"].unique() if "video" in df else []
        if len(videos) > 1:
            raise ValueError(f"the tracks given hold the rows of {len(videos)} videos ({', '.join(map(str, videos[:3]))}"
                             f"{', …' if len(videos) > 3 else ''}): give one video's")
        faces, frames = faces_by_frame(df), int(meta["frame_count"]) if meta else None
    filt = get_filter(filter, overlay, anchor)
    if is_photo(video):
        return write_photo_render(video, out, faces, filt)
    return _render(video, out, faces, filt, frames, crf=crf, preset=preset)
