"""`facetracks render`: draw a face filter on a video from its track file (no model is run)."""
from __future__ import annotations

import argparse
import sys

from pipeline.filters import ANCHORS, FILTERS, get_filter
from pipeline.render import TracksMismatch, load_tracks_for, render_video
from pipeline.video import VideoError


def add_render_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overlay", default=None, help="your own RGBA PNG, placed at --anchor")
    p.add_argument("--anchor", default="eyes", choices=sorted(ANCHORS))
    p.add_argument("--crf", type=int, default=20, help="H.264 quality (0 lossless .. 51 worst)")
    p.add_argument("--preset", default="medium", help="x264 speed preset (ultrafast .. veryslow)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render a face-filter video from a track file", description=__doc__)
    p.add_argument("video")
    p.add_argument("--tracks", required=True, help="the video's .parquet from `facetracks annotate`")
    p.add_argument("--filter", default="sunglasses", help=f"one of: {', '.join(FILTERS)}")
    p.add_argument("--out", required=True, help="output video (.mp4, .mov, .mkv)")
    add_render_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        filt = get_filter(args.filter, args.overlay, args.anchor)
        faces, frames = load_tracks_for(args.video, args.tracks)
        st = render_video(args.video, args.out, faces, filt, frames, args.crf, args.preset)
    except (ValueError, VideoError, TracksMismatch) as e:
        print(f"facetracks render: {e}", file=sys.stderr)
        return 1
    print(f"render: {st.frames} frames ({st.frames_with_faces} with faces), {st.audio_packets} audio packets "
          f"copied -> {args.out}")
    return 0
