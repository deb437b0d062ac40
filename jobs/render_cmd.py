"""`facetracks render`: draw a face filter on a video, or a photo, from its track file (no model is run)."""
from __future__ import annotations

import argparse
import os
import sys

from facetracks.pipeline.filters import ANCHORS, FILTERS, get_filter
from facetracks.pipeline.render import OUTPUT_FORMATS, TracksMismatch, load_tracks_for, render_video
from facetracks.pipeline.video import VideoError

from .argtypes import X264_PRESETS, crf
from .inputs import IMAGE_EXTENSIONS, is_photo
from .outputs import cannot_write, is_uri
from .render_args import check_render, tracks_path, write_photo_render


def add_render_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overlay", default=None, help="your own RGBA PNG, placed at --anchor")
    p.add_argument("--anchor", default="eyes", choices=sorted(ANCHORS),
                   help="the landmarks --overlay spans (default %(default)s)")
    p.add_argument("--crf", type=crf, default=20,
                   help="quality (H.264: 0 lossless .. 51 worst; VP9 for .webm: 0..63; default %(default)s)")
    p.add_argument("--preset", default="medium", choices=X264_PRESETS, help="x264 speed preset (default %(default)s)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render a face-filter video from a track file", description=__doc__)
    p.add_argument("video", help=f"a video, or a photo ({', '.join(IMAGE_EXTENSIONS)})")
    p.add_argument("--tracks", required=True, help="its .parquet from `facetracks annotate`")
    p.add_argument("--filter", default=None,
                   help=f"one of: {', '.join(FILTERS)} (default sunglasses; overlay with --overlay)")
    p.add_argument("--out", required=True,
                   help=f"output video ({', '.join(OUTPUT_FORMATS)}: the extension picks the container), or for a "
                        f"photo an image whose extension picks its format")
    add_render_options(p)
    p.set_defaults(func=run)


def _out_problem(out: str) -> str | None:
    """What keeps a local output path from being written, found before anything is read (it was a
    traceback after the whole render, or an error blaming the input)."""
    if is_uri(out):
        return None
    if os.path.isdir(out):
        return f"{out} is a folder: name the file to write"
    why = cannot_write(os.path.dirname(os.path.abspath(out)))
    return f"cannot write {out} ({why})" if why else None


def run(args: argparse.Namespace) -> int:
    try:                           # refused before anything is read
        filt = get_filter(args.filter, args.overlay, args.anchor)
        out = check_render(args.video, args.out, args.crf, args.preset)
    except ValueError as e:
        print(f"facetracks render: {e}", file=sys.stderr)
        return 2
    problem = _out_problem(out)
    if problem:
        print(f"facetracks render: {problem}", file=sys.stderr)
        return 2
    if is_photo(args.video):
        return _photo(args, filt, out)
    try:
        faces, frames = load_tracks_for(args.video, tracks_path(args.tracks))
        st = render_video(args.video, out, faces, filt, frames, args.crf, args.preset)
    except (ValueError, VideoError, TracksMismatch) as e:
        print(f"facetracks render: {e}", file=sys.stderr)
        return 1
    print(f"render: {st.frames} frames ({st.frames_with_faces} with faces), audio {st.audio}"
          f"{', padded to even size' if st.padded else ''} -> {args.out}")
    return 0


def _photo(args: argparse.Namespace, filt, out: str) -> int:
    """A photo's one frame, filtered, written (atomically) in the format the output's name says."""
    try:
        faces, _ = load_tracks_for(args.video, tracks_path(args.tracks))
        st = write_photo_render(args.video, out, faces, filt)
    except (ValueError, VideoError, TracksMismatch) as e:       # PhotoError is a VideoError
        print(f"facetracks render: {e}", file=sys.stderr)
        return 1
    if st.frames > 1:
        print(f"render: animation, {st.frames} frames ({st.frames_with_faces} with faces) -> {args.out}")
    else:
        print(f"render: photo, {len(faces.get(0, []))} faces -> {args.out}")
    return 0
