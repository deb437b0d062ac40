"""`facetracks render`: draw a face filter on a video, or a photo, from its track file (no model is run)."""
from __future__ import annotations

import argparse
import os
import sys

from facetracks.pipeline.filters import ANCHORS, FILTERS, get_filter
from facetracks.pipeline.photo import read_photo, render_photo
from facetracks.pipeline.render import OUTPUT_FORMATS, TracksMismatch, load_tracks_for, output_format, render_video
from facetracks.pipeline.video import VideoError

from .argtypes import X264_PRESETS, crf
from .inputs import IMAGE_EXTENSIONS, is_photo
from .outputs import resolve, write_bytes


def add_render_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overlay", default=None, help="your own RGBA PNG, placed at --anchor")
    p.add_argument("--anchor", default="eyes", choices=sorted(ANCHORS))
    p.add_argument("--crf", type=crf, default=20, help="quality (H.264: 0 lossless .. 51 worst; VP9 for .webm: 0..63)")
    p.add_argument("--preset", default="medium", choices=X264_PRESETS, help="x264 speed preset")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render a face-filter video from a track file", description=__doc__)
    p.add_argument("video", help=f"a video, or a photo ({', '.join(IMAGE_EXTENSIONS)})")
    p.add_argument("--tracks", required=True, help="its .parquet from `facetracks annotate`")
    p.add_argument("--filter", default="sunglasses", help=f"one of: {', '.join(FILTERS)}")
    p.add_argument("--out", required=True,
                   help=f"output video ({', '.join(OUTPUT_FORMATS)}: the extension picks the container), or for a "
                        f"photo an image whose extension picks its format")
    add_render_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if is_photo(args.video):
        return _photo(args)
    try:
        output_format(args.out)
    except ValueError as e:        # refused before anything is read
        print(f"facetracks render: {e}", file=sys.stderr)
        return 2
    try:
        filt = get_filter(args.filter, args.overlay, args.anchor)
        faces, frames = load_tracks_for(args.video, args.tracks)
        st = render_video(args.video, args.out, faces, filt, frames, args.crf, args.preset)
    except (ValueError, VideoError, TracksMismatch) as e:
        print(f"facetracks render: {e}", file=sys.stderr)
        return 1
    print(f"render: {st.frames} frames ({st.frames_with_faces} with faces), audio {st.audio}"
          f"{', padded to even size' if st.padded else ''} -> {args.out}")
    return 0


def _photo(args: argparse.Namespace) -> int:
    """A photo's one frame, filtered, written (atomically) in the format the output's name says."""
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        print(f"facetracks render: {args.out}: a photo renders to an image ({', '.join(IMAGE_EXTENSIONS)})",
              file=sys.stderr)
        return 2
    try:
        filt = get_filter(args.filter, args.overlay, args.anchor)
        faces, _ = load_tracks_for(args.video, args.tracks)
        data = render_photo(read_photo(args.video), faces.get(0, []), filt, ext)
        write_bytes(*resolve(args.out), data)
    except (ValueError, VideoError, TracksMismatch) as e:       # PhotoError is a VideoError
        print(f"facetracks render: {e}", file=sys.stderr)
        return 1
    print(f"render: photo, {len(faces.get(0, []))} faces -> {args.out}")
    return 0
