"""Rendering filtered videos: same size, rotation and timing as the input, audio copied untouched.

Each decoded frame is made upright (landmarks live in the upright frame), filtered, turned back
to the stored orientation and encoded with its original PTS in the input's time base, so variable
frame rate survives; the display matrix is copied. Audio packets are remuxed without decoding.
The output is written to a temp name and renamed only when complete.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import av
import numpy as np
import pyarrow.parquet as pq

from .filters import FilterFn
from .parquet import read_meta
from .schema import POINT_COLUMNS, points_from_columns
from .video import VideoError, _open


class TracksMismatch(ValueError):
    """Tracks that were not made from this video."""


@dataclass
class RenderStats:
    frames: int
    frames_with_faces: int
    audio_packets: int


def faces_by_frame(table) -> dict[int, list[np.ndarray]]:
    """frame_index -> list of (68, 2) point arrays, from a track table (pyarrow or pandas)."""
    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    df = df[df["x_0"].notna()] if len(df) else df
    if not len(df):
        return {}
    pts = points_from_columns(df)
    out: dict[int, list[np.ndarray]] = {}
    for i, p in zip(df["frame_index"].to_numpy(), pts):
        out.setdefault(int(i), []).append(p)
    return out


def load_tracks_for(video: str, tracks: str) -> tuple[dict[int, list[np.ndarray]], int]:
    """Read a track file and check it belongs to `video` (same size of source); returns faces and frame count."""
    if not os.path.exists(tracks):
        raise TracksMismatch(f"{tracks}: no such tracks file")
    meta = read_meta(tracks)
    if meta is None:
        raise TracksMismatch(f"{tracks}: not a facetracks track file (no metadata)")
    size = os.path.getsize(video)
    if meta["source"]["size_bytes"] != size:
        raise TracksMismatch(f"{tracks}: made from {meta['source']['path']} ({meta['source']['size_bytes']} bytes), "
                             f"not from {video} ({size} bytes)")
    df = pq.read_table(tracks, columns=["frame_index", "x_0"] + [c for c in POINT_COLUMNS if c != "x_0"]).to_pandas()
    return faces_by_frame(df), int(meta["frame_count"])


def render_video(src: str, dst: str, faces: dict[int, list[np.ndarray]], filt: FilterFn,
                 expected_frames: int | None = None, crf: int = 20, preset: str = "medium") -> RenderStats:
    tmp = os.path.join(os.path.dirname(os.path.abspath(dst)), f".{os.path.basename(dst)}.{uuid.uuid4().hex[:8]}.tmp")
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    try:
        stats = _render(src, tmp, faces, filt, crf, preset, os.path.splitext(dst)[1].lstrip(".") or "mp4")
        if expected_frames is not None and stats.frames != expected_frames:
            raise TracksMismatch(f"{src}: {stats.frames} frames decode, the tracks describe {expected_frames}")
        os.replace(tmp, dst)
        return stats
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _render(src: str, tmp: str, faces, filt, crf: int, preset: str, fmt: str) -> RenderStats:
    with _open(src) as inp, av.open(tmp, "w", format=fmt) as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vout = out.add_stream("libx264", rate=vin.average_rate or vin.guessed_rate or 25)
        vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
        vout.pix_fmt = "yuv420p"
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        vout.options = {"crf": str(crf), "preset": preset}
        aout = out.add_stream_from_template(ain) if ain is not None else None
        streams = [vin] + ([ain] if ain is not None else [])
        frames = with_faces = audio = 0
        rotation_set = False
        last_pts = None
        try:
            for packet in inp.demux(streams):
                if packet.stream is ain:
                    if packet.size == 0:
                        continue
                    packet.stream = aout
                    out.mux(packet)
                    audio += 1
                    continue
                for frame in packet.decode():
                    if not rotation_set:
                        rot = int(round((frame.rotation or 0) / 90)) * 90 % 360
                        if rot:
                            vout.set_display_rotation(rot)
                        rotation_set = True
                    k = int(round((frame.rotation or 0) / 90)) % 4
                    fs = faces.get(frames, [])
                    if fs:
                        bgr = frame.to_ndarray(format="bgr24")
                        up = np.ascontiguousarray(np.rot90(bgr, k)) if k else bgr
                        up = filt(up, fs)
                        stored = np.ascontiguousarray(np.rot90(up, -k)) if k else up
                        new = av.VideoFrame.from_ndarray(stored, format="bgr24").reformat(format="yuv420p")
                        with_faces += 1
                    else:
                        new = frame.reformat(format="yuv420p")
                    pts = frame.pts if frame.pts is not None else (last_pts + 1 if last_pts is not None else 0)
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1       # the encoder needs increasing PTS; odd inputs only
                    new.pts, new.time_base, last_pts = pts, vin.time_base, pts
                    for p in vout.encode(new):
                        out.mux(p)
                    frames += 1
        except av.error.FFmpegError as e:
            raise VideoError(f"{src}: decoding failed at frame {frames} ({e})") from e
        for p in vout.encode(None):
            out.mux(p)
    return RenderStats(frames, with_faces, audio)
