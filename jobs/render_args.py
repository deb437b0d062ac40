"""What a render is asked for, checked before anything is read: the one check of `facetracks
render` and of the Python API's `render_video` (the API took any crf, any preset, its own input
as the output); and a photo's render, which both write the same way."""
from __future__ import annotations

import numbers
import os

import numpy as np

from facetracks.pipeline.filters import FilterFn
from facetracks.pipeline.photo import read_photo, render_photo
from facetracks.pipeline.render import RenderStats, check_crf, output_format

from .argtypes import X264_PRESETS
from .inputs import IMAGE_EXTENSIONS, is_photo
from .outputs import local_folder, resolve, write_bytes


def check_render(video: str, out: str, crf: int, preset: str) -> str:
    """The path a render of `video` writes, `out` as given or a file:// URI's local path (it wrote
    into a folder named `file:`); ValueError, before anything is read, for what would fail late or
    do harm: an output that is the input itself (by any path or link: it overwrote the source), a
    video to a remote store (it went to a local folder named after the scheme), an output format
    that does not fit the input, a preset x264 does not know or a crf off the encoder's integer
    scale (the API failed at frame 0, or took 20.7). The CLI's and the API's one check."""
    local = local_folder(out)
    if local is not None and _same_file(local_folder(video) or video, local):
        raise ValueError(f"{out} is the input itself: rendering would overwrite it; name another output")
    if is_photo(video):
        if os.path.splitext(out)[1].lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"{out}: a photo renders to an image ({', '.join(IMAGE_EXTENSIONS)})")
    elif local is None:
        raise ValueError(f"{out}: a video renders to a local path or file:// URI; copy it to the store after")
    if preset not in X264_PRESETS:
        raise ValueError(f"preset {preset!r}: x264 takes {', '.join(X264_PRESETS)}")
    if not isinstance(crf, numbers.Integral) or isinstance(crf, bool):
        raise ValueError(f"crf {crf!r}: an integer (H.264 0..51, VP9 0..63)")
    if not is_photo(video):
        check_crf(output_format(out), crf)
    return out if local is None else local


def _same_file(a: str, b: str) -> bool:
    """Whether two local paths are one file: the same path, another spelling, a link (symbolic or hard)."""
    try:
        return os.path.samefile(a, b)
    except OSError:                # either is not there (yet): they are one only if they read the same
        return os.path.realpath(a) == os.path.realpath(b)


def tracks_path(tracks: str) -> str:
    """A track file given as a path or a file:// URI, as the path it is read from (a file:// one
    was "no such tracks file")."""
    return local_folder(tracks) or tracks


def write_photo_render(photo_path: str, out: str, faces: dict[int, list[np.ndarray]], filt: FilterFn) -> RenderStats:
    """A photo (or an animation, frame by frame) filtered and written whole to `out` (checked by
    `check_render`), in the format its extension names; its frames and those with faces."""
    photo = read_photo(photo_path)
    write_bytes(*resolve(out), render_photo(photo, faces, filt, os.path.splitext(out)[1].lower()))
    n = max(1, len(photo.frames))          # an animation: each of its frames
    return RenderStats(frames=n, frames_with_faces=sum(bool(faces.get(i)) for i in range(n)), audio_packets=0)
