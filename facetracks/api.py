"""The Python API: the same work as `facetracks annotate` / `render`, one video (or photo) at a time, in-process.

A thin layer over the pipeline (no Ray, no output folder): what the CLI's actors do per video is
`pipeline.annotate.annotate_video` then `smoothing.smooth_tracks`, and this calls exactly those.
"""
from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from facetracks.jobs.inputs import IMAGE_EXTENSIONS, is_photo
from facetracks.pipeline.annotate import annotate_video as _annotate
from facetracks.pipeline.atomic import temp_path
from facetracks.pipeline.filters import FILTERS, get_filter
from facetracks.pipeline.photo import annotate_photo, read_photo, render_photo
from facetracks.pipeline.profiles import PROFILES, ProfileParts, load_profile
from facetracks.pipeline.parquet import meta_of
from facetracks.pipeline.render import RenderStats, check_source, faces_by_frame, load_tracks_for
from facetracks.pipeline.render import render_video as _render
from facetracks.pipeline.smoothing import NONE, SmoothParams, smooth_tracks

__all__ = ["annotate_video", "load_profile", "render_video", "read_tracks", "PROFILES", "FILTERS"]

TRACKS_ATTR = "facetracks"      # df.attrs key: the tracks' source and frame count (a track file's metadata)


def annotate_video(path: str | os.PathLike, profile: str | ProfileParts = "accurate", *,
                   smooth: SmoothParams | bool = True, device: str | None = None) -> pd.DataFrame:
    """Landmark tracks of one video: a row per face per frame, the columns of the Parquet schema.
    A photo (JPEG, PNG, WebP, BMP, TIFF; EXIF orientation applied) is one frame: frame_index 0.

    `profile` is a name ("accurate", "fast") or what `load_profile` returned, to keep one loaded
    model across many videos. `smooth`: True (the CLI's default), False, or your `SmoothParams`.
    """
    parts = load_profile(profile, device) if isinstance(profile, str) else profile
    path = os.fspath(path)
    if is_photo(path):
        r = annotate_photo(read_photo(path), os.path.basename(path), parts.detector, parts.predictor, parts.follow)
        return _with_source(r.table.to_pandas(), r.info, 1)
    params = SmoothParams() if smooth is True else NONE if smooth is False else smooth
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
    """A track file written by `facetracks annotate` (its run metadata, also in `df.attrs["facetracks"]`)."""
    table = pq.read_table(os.fspath(path))
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
    A photo is written as the image format `out`'s extension names."""
    video = os.fspath(video)
    if isinstance(tracks, (str, os.PathLike)):
        faces, frames = load_tracks_for(video, os.fspath(tracks))     # checks the file was made from `video`
    else:      # its source and frame count, when it says (annotate_video, read_tracks, a track file's table)
        meta = meta_of(tracks.schema) if isinstance(tracks, pa.Table) else tracks.attrs.get(TRACKS_ATTR)
        df = tracks.to_pandas() if isinstance(tracks, pa.Table) else tracks
        if meta:
            check_source(video, meta, "the tracks given")
        faces, frames = faces_by_frame(df), int(meta["frame_count"]) if meta else None
    filt, out = get_filter(filter, overlay, anchor), os.fspath(out)
    if is_photo(video):
        if os.path.splitext(out)[1].lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"{out}: a photo renders to an image ({', '.join(IMAGE_EXTENSIONS)})")
        photo = read_photo(video)
        data = render_photo(photo, faces, filt, os.path.splitext(out)[1])
        with temp_path(out) as tmp, open(tmp, "wb") as f:
            f.write(data)
        n = max(1, len(photo.frames))          # an animation: each of its frames
        return RenderStats(frames=n, frames_with_faces=sum(bool(faces.get(i)) for i in range(n)), audio_packets=0)
    return _render(video, out, faces, filt, frames, crf=crf, preset=preset)
