"""Rendering filtered videos that keep what the input has: orientation, every frame and its PTS,
pixel aspect, colour tags and sound.

Each decoded frame is made upright (landmarks live in the upright frame), filtered, turned back
to the stored orientation and encoded with its original PTS in the input's time base, so variable
frame rate survives. Everything the container header carries (the display matrix, sample aspect,
colour tags, the render key) is set before the first packet is muxed: the header is written then,
and the first packet is often audio. Audio is copied packet for packet when the output container
can hold it and players play it from there, else transcoded (AAC; Opus for WebM), each track with
its language, title and default flag. Times start at 0, as ffmpeg's output does. H.264 in 4:2:0
needs even sizes: an odd width or height is padded by one pixel, repeating the last column or row.
The output is written to a temp name and moved into place only when complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import sources
from .atomic import temp_path
from .filters import FilterFn
from .parquet import read_meta
from .schema import POINT_COLUMNS, points_from_columns
from .video import (VideoError, decode_packet, display_matrix, first_frame, frame_rate, open_video,
                    orientation_from_matrix)

RENDER_TAG = "facetracks-render "     # the container's `comment`: this prefix, then the render key
_RGB_SPACE, _BT709 = 0, 1      # AVColorSpace: AVCOL_SPC_RGB, AVCOL_SPC_BT709


class TracksMismatch(ValueError):
    """Tracks that were not made from this video."""


@dataclass(frozen=True)
class OutputFormat:
    muxer: str
    video_codec: str
    audio_codec: str          # when the input's audio cannot be copied
    max_crf: int = 51         # the encoder's quality scale: x264 0..51, VP9 0..63


OUTPUT_FORMATS = {
    ".mp4": OutputFormat("mp4", "libx264", "aac"),
    ".m4v": OutputFormat("mp4", "libx264", "aac"),
    ".mov": OutputFormat("mov", "libx264", "aac"),
    ".mkv": OutputFormat("matroska", "libx264", "aac"),
    ".webm": OutputFormat("webm", "libvpx-vp9", "libopus", max_crf=63),
}


def check_crf(fmt: OutputFormat, crf: int) -> None:
    """ValueError unless `crf` is on the encoder's scale (an API call with crf=99 wrote a ruined video)."""
    if not 0 <= crf <= fmt.max_crf:
        raise ValueError(f"crf {crf}: {fmt.video_codec} takes 0..{fmt.max_crf}")


def output_format(path: str) -> OutputFormat:
    """The container and codecs for an output path, from its extension; a ValueError listing the
    ones that work otherwise (raised before anything is decoded)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: cannot write {ext or 'a file without extension'}; "
                         f"the output must end in {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[ext]


@dataclass
class RenderStats:
    frames: int
    frames_with_faces: int
    audio_packets: int
    audio: str = "none"       # "copied <codec>", "transcoded <codec> -> <codec>", "N left out (…)", or "none"
    padded: bool = False      # an odd size was padded by one pixel


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
    check_source(video, meta, tracks)
    df = pq.read_table(tracks, columns=["frame_index", "x_0"] + [c for c in POINT_COLUMNS if c != "x_0"]).to_pandas()
    return faces_by_frame(df), int(meta["frame_count"])


def check_source(video: str, meta: dict, tracks: str) -> None:
    """TracksMismatch unless the tracks `meta` describes were made from `video` (its size): drawn
    on another video they would sit off its faces."""
    try:
        found = sources.info(video)
    except (OSError, ValueError) as e:
        raise VideoError(f"{video}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if found.kind != "file":
        raise VideoError(f"{video}: no such file")
    size = found.size
    if meta["source"]["size_bytes"] != size:
        raise TracksMismatch(f"{tracks}: made from {meta['source']['path']} ({meta['source']['size_bytes']} bytes), "
                             f"not from {video} ({size} bytes)")


def render_key(tracks_key: dict, filter_name: str, overlay: bytes | None, anchor: str, crf: int, preset: str,
               fmt: str = "mp4") -> str:
    """What makes a rendered file current: the tracks it was drawn from (their run key), the
    filter, the overlay's content (not its path), the anchor, the encoder settings."""
    spec = {"tracks": tracks_key, "filter": filter_name, "anchor": anchor if overlay else None, "crf": crf,
            "preset": preset, "format": fmt,
            "overlay_sha256": hashlib.sha256(overlay).hexdigest() if overlay is not None else None}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def read_render_key(path: str, filesystem: pafs.FileSystem | None = None) -> str | None:
    """The render key a file was written with, or None (absent, unreadable, not ours)."""
    try:
        with filesystem.open_input_file(path) if filesystem else contextlib.nullcontext(path) as src, \
                av.open(src) as c:
            md = dict(c.metadata)
    except (OSError, av.error.FFmpegError, ValueError):
        return None
    comment = next((v for k, v in md.items() if k.lower() == "comment"), "")
    return comment[len(RENDER_TAG):] if comment.startswith(RENDER_TAG) else None


def render_video(src: str, dst: str, faces: dict[int, list[np.ndarray]], filt: FilterFn,
                 expected_frames: int | None = None, crf: int = 20, preset: str = "medium",
                 key: str | None = None, alive: Callable[[], None] | None = None) -> RenderStats:
    """Render `src` with `filt` drawn on `faces` into `dst` (its extension picks the container).
    `key` is stored in the file (see `render_key`), so a rerun can tell whether it is current.
    `alive()` is called after each frame: whoever watches for a stuck task hears that it is not."""
    fmt = output_format(dst)
    check_crf(fmt, crf)
    with temp_path(dst) as tmp:
        stats = _render(src, tmp, faces, filt, crf, preset, fmt, key, alive)
        if expected_frames is not None and stats.frames != expected_frames:
            raise TracksMismatch(f"{src}: {stats.frames} frames decode, the tracks describe {expected_frames}")
    return stats


@dataclass
class _Look:
    """What the first frame says about how the video is to be shown."""
    matrix: np.ndarray | None
    colorspace: int
    color_range: int
    primaries: int
    trc: int


def _first_look(src: str) -> _Look:
    container, s = open_video(src)
    with container:
        f = first_frame(container, s, src)
        full = f.format.name.startswith("yuvj") or f.color_range == 2
        cc = s.codec_context
        space = f.colorspace or cc.colorspace
        if space == _RGB_SPACE or f.format.is_rgb:
            space = _BT709       # an RGB source: the output's YUV needs a real matrix, tagged as such
        return _Look(display_matrix(f), space, 2 if full else 1,
                     f.color_primaries or cc.color_primaries, f.color_trc or cc.color_trc)


# What players play from an MP4 (browsers, QuickTime, phones); anything else MP4 can hold (PCM,
# Vorbis, MP2) is transcoded: copied, it played silent in most of them.
MP4_PLAYABLE = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}
_TAGS = ("language", "title")         # what says which audio track is which


def _can_copy(ain: av.audio.stream.AudioStream, muxer: str) -> bool:
    """Whether copying this stream into `muxer` gives a file that plays: MP4 only what players
    play there; MP4 and MOV no channels without a layout (PCM from an AVI: the muxer takes the
    header and fails at the trailer, "unsupported channel layout"); then the muxer itself is asked,
    with a header written into memory."""
    if muxer in ("mp4", "mov") and ain.layout.name.endswith("channels"):
        return False
    if muxer == "mp4" and ain.codec_context.codec.canonical_name not in MP4_PLAYABLE:
        return False
    try:
        with av.open(io.BytesIO(), "w", format=muxer) as probe:
            probe.add_stream_from_template(ain)
            probe.start_encoding()
        return True
    except (av.error.FFmpegError, ValueError):
        return False


def _audio_out(out, ain, fmt: OutputFormat):
    """(output stream, copy?) for one input audio stream, with its language, title and default
    flag: a player picks the track the input would have played."""
    copy = _can_copy(ain, fmt.muxer)
    if copy:
        aout = out.add_stream_from_template(ain)
    else:
        aout = out.add_stream(fmt.audio_codec, rate=48000 if fmt.audio_codec == "libopus" else (ain.rate or 48000))
        aout.layout = "stereo" if ain.channels >= 2 else "mono"
    for k in _TAGS:
        if ain.metadata.get(k):
            aout.metadata[k] = ain.metadata[k]
    aout.disposition = ain.disposition & av.stream.Disposition.default
    return aout, copy


def _render(src: str, f, faces, filt, crf: int, preset: str, fmt: OutputFormat, key: str | None,
            alive: Callable[[], None] | None) -> RenderStats:
    look = _first_look(src)
    o = orientation_from_matrix(look.matrix)
    inp, vin = open_video(src)
    with inp, av.open(f, "w", format=fmt.muxer) as out:
        vin.thread_type = "AUTO"
        # a sound track no decoder reads (a codec id FFmpeg does not know) is left out, and said
        unread = [a for a in inp.streams.audio if a.codec_context is None]
        ains = [a for a in inp.streams.audio if a.codec_context is not None and a.codec_context.name]
        # everything the header holds, before anything is muxed
        if key:
            out.metadata["comment"] = RENDER_TAG + key
        fps = frame_rate(vin)
        vout = out.add_stream(fmt.video_codec, rate=vin.average_rate or vin.guessed_rate or round(fps))
        w, h = vin.codec_context.width, vin.codec_context.height
        vout.width, vout.height = w + w % 2, h + h % 2
        vout.pix_fmt = "yuv420p"
        tb = vin.time_base or Fraction(1, round(fps * 1000))
        vout.time_base = tb
        vout.codec_context.time_base = tb
        sar = vin.sample_aspect_ratio or vin.codec_context.sample_aspect_ratio
        if sar and sar != 1:
            vout.sample_aspect_ratio = sar
            vout.codec_context.sample_aspect_ratio = sar
        cc = vout.codec_context
        cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = (
            look.colorspace, look.color_range, look.primaries, look.trc)
        vout.options = {"crf": str(crf), "preset": preset} if fmt.video_codec == "libx264" \
            else {"crf": str(crf), "b": "0", "deadline": "good", "row-mt": "1"}
        if look.matrix is not None:
            vout.set_display_matrix([int(v) for v in look.matrix])
        audio = {a: _audio_out(out, a, fmt) for a in ains}
        # the output starts at 0, as ffmpeg's does: a broadcast recording starting at 5 h made an MP4
        # with a 5-hour empty edit before its video, and times before a PTS wrap (negative) were cut
        origin = Fraction(inp.start_time or 0, 1_000_000)
        shift = {a: round(origin / a.time_base) for a in ains if a.time_base}
        vshift = round(origin / tb)
        frames = with_faces = packets = 0
        last_pts = None
        step = 1.0 / fps
        try:
            for packet in inp.demux([vin] + ains):
                if packet.stream is not vin:
                    aout, copy = audio[packet.stream]
                    back = shift.get(packet.stream, 0)
                    if copy:
                        if packet.size == 0:
                            continue
                        if back:
                            packet.pts = packet.pts - back if packet.pts is not None else None
                            packet.dts = packet.dts - back if packet.dts is not None else None
                        packet.stream = aout
                        out.mux(packet)
                        packets += 1
                    else:
                        for af in decode_packet(packet) or []:
                            if back and af.pts is not None:
                                af.pts -= back
                            for p in aout.encode(af):
                                out.mux(p)
                                packets += 1
                    continue
                for frame in decode_packet(packet) or []:   # damaged: skipped, as iter_frames skips it
                    if (frame.width, frame.height) != (w, h):    # the stream changed size: shown at
                        frame = frame.reformat(width=w, height=h)   # its first, as iter_frames reads it
                    here = faces.get(frames, [])
                    new = _filtered(frame, here, filt, o, look, (vout.width, vout.height))
                    with_faces += bool(here)
                    # no PTS (raw .h264): the frame rate's time, as the tracks' time_s
                    pts = frame.pts - vshift if frame.pts is not None else round(frames * step / tb)
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1       # the encoder needs increasing PTS; odd inputs only
                    new.pts, new.time_base, last_pts = pts, tb, pts
                    for p in vout.encode(new):
                        out.mux(p)
                    frames += 1
                    if alive is not None:
                        alive()
        except av.error.FFmpegError as e:
            raise VideoError(f"{src}: render failed at frame {frames} ({e})") from e
        for p in vout.encode(None):
            out.mux(p)
        for aout, copy in audio.values():
            if not copy:
                for p in aout.encode(None):
                    out.mux(p)
                    packets += 1
    if frames == 0:
        raise VideoError(f"{src}: the video stream holds no frames")
    return RenderStats(frames, with_faces, packets, _describe(audio, len(unread)), (w % 2 or h % 2) > 0)


def _describe(audio: dict, unread: int = 0) -> str:
    said = [f"copied {a.codec_context.name}" if copy else f"transcoded {a.codec_context.name} -> {aout.codec_context.name}"
            for a, (aout, copy) in audio.items()]
    if unread:
        said.append(f"{unread} left out (no decoder for its codec)")
    return ", ".join(said) or "none"


def _filtered(frame: av.VideoFrame, faces: list[np.ndarray], filt: FilterFn, o, look: _Look,
              size: tuple[int, int]) -> av.VideoFrame:
    """The frame to encode: filtered in the upright orientation and colour-converted with the
    input's own matrix and range both ways, so pixels away from the faces come back unchanged;
    padded to `size` when the input's size is odd."""
    w, h = size
    if not faces and (frame.width, frame.height) == (w, h):
        return frame.reformat(format="yuv420p", dst_colorspace=look.colorspace or None,
                              src_color_range=look.color_range, dst_color_range=look.color_range)
    bgr = frame.reformat(format="bgr24", src_color_range=look.color_range).to_ndarray()
    if faces:
        up = np.ascontiguousarray(o.apply(bgr))
        bgr = np.ascontiguousarray(o.undo(filt(up, faces)))
    if bgr.shape[:2] != (h, w):
        bgr = np.pad(bgr, ((0, h - bgr.shape[0]), (0, w - bgr.shape[1]), (0, 0)), mode="edge")
    new = av.VideoFrame.from_ndarray(bgr, format="bgr24")
    return new.reformat(format="yuv420p", src_colorspace=look.colorspace or None, dst_colorspace=look.colorspace or None,
                        dst_color_range=look.color_range)
