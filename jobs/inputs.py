"""Turning INPUT arguments (files, folders, globs) into videos and photos, and their output paths."""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass

from facetracks.pipeline.atomic import TEMP_EXTRA, is_temp_name
from facetracks.pipeline.filters import FILTERS
from facetracks.pipeline.render import OUTPUT_FORMATS
from facetracks.pipeline import sources
from facetracks.pipeline.sources import is_uri, text_path

from .outputs import REPORT_DIR, local_folder

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".asf", ".m4v", ".mpg", ".mpeg", ".m2v",
                    ".vob", ".flv", ".ts", ".3gp", ".mts", ".m2ts", ".mxf", ".ogv", ".h264", ".264", ".h265", ".hevc",
                    ".gif", ".y4m", ".f4v", ".divx", ".dv", ".rm", ".rmvb")   # animated GIFs: short clips people have
NAME_MAX = 255     # bytes in one file name: ext4, XFS, Btrfs, APFS (NTFS: 255 UTF-16 units, as many or more)
LONG_KEEP = 150    # bytes of a too-long name kept before its hash (`fit_name`)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")   # photos: pipeline/photo.py


@dataclass(frozen=True)
class VideoItem:
    path: str        # absolute path of the input
    name: str        # path relative to its input root: the `video` column and the output's relative path

    def output(self, out_dir: str) -> str:
        return os.path.join(out_dir, _out_name(self.name, ".parquet"))

    @property
    def photo(self) -> bool:
        return is_photo(self.path)

    def rendered(self, out_dir: str, filter_name: str) -> str:
        """A video renders to .mp4; a photo to its own format (`a.png` -> `a.png.<filter>.png`)."""
        ext = os.path.splitext(sources.name_of(self.path))[1].lower() if self.photo else ".mp4"
        return os.path.join(out_dir, _out_name(self.name, f".{filter_name}{ext}"))


def is_photo(path: str) -> bool:
    return os.path.splitext(sources.name_of(path))[1].lower() in IMAGE_EXTENSIONS


def _safe_name(rel: str) -> str:
    """Relative, normalised, never climbing out of the output folder, and text (`text_path`: a
    name's bytes that are not UTF-8 as `%XX`): the `video` column and the output's own name must
    be valid Unicode. The file is still read by its path. A backslash is a character of the name
    (a Windows archive unpacked here), not a folder: `back\\slash.mp4` beside `back/slash.mp4`
    took its name."""
    rel = text_path(rel)
    parts = [p for p in os.path.normpath(rel).split("/") if p not in ("", ".", "..")]
    return "/".join(parts)


def fit_name(name: str, suffix: str = "") -> str:
    """`name` shortened, where needed, so that `name + suffix` is one file name that fits NAME_MAX
    bytes with a temp file's ending (`pipeline.atomic.temp_name`). Unchanged when it fits; else
    its first LONG_KEEP bytes (whole characters), `~`, 8 hex of the whole name's SHA-1 (two long
    names with one start stay apart) and its extension. Downloaders name clips after their titles
    up to 255 bytes, and `%XX` escapes triple a byte: `.parquet` on top failed ("File name too
    long")."""
    room = NAME_MAX - TEMP_EXTRA - len(suffix.encode())
    if len(name.encode()) <= room:
        return name
    stem, ext = os.path.splitext(name)
    tag = "~" + hashlib.sha1(name.encode()).hexdigest()[:8] + (ext if len(ext.encode()) <= 16 else "")
    keep = max(0, min(LONG_KEEP, room - len(tag.encode())))
    return stem.encode()[:keep].decode(errors="ignore") + tag


def _out_name(name: str, suffix: str) -> str:
    """An output's path below the output folder: the input's relative name, each part fitted
    (`fit_name`), then `suffix`. The `video` column keeps the whole name."""
    parts = _safe_name(name).split("/")
    return "/".join([fit_name(p) for p in parts[:-1]] + [fit_name(parts[-1], suffix) + suffix])


def _walk(root: str) -> list[str]:
    """A folder's video and photo files, recursively, in name order, hidden names left out.
    Linked folders are followed (a dataset assembled from links to sessions' folders is a common
    layout, and it used to give nothing), except a link to a folder of the tree itself (its files
    keep the names their real place gives them), to the root or above it (a loop, or all of `/`)
    or to a folder already read: each real folder is read once."""
    real_root = os.path.realpath(root)
    own = {os.path.realpath(d) for d, _, _ in os.walk(root)}      # the tree's folders, links not followed
    found, seen = [], set()
    for d, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:                # two links to one outside folder: the first one read it
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [x for x in sorted(dirs) if not x.startswith(".") and not _adds_nothing(os.path.join(d, x), own,
                                                                                         real_root)]
        found += [os.path.join(d, f) for f in sorted(files)
                  if not f.startswith(".") and f.lower().endswith(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)]
    return found


def _adds_nothing(path: str, own: set[str], real_root: str) -> bool:
    """A link to a folder the walk reads anyway, or to the root or a folder above it."""
    if not os.path.islink(path):
        return False
    real = os.path.realpath(path)
    return real in own or real_root == real or real_root.startswith(real.rstrip("/") + "/")


def _is_our_output(path: str, out_dir: str | None) -> bool:
    """A file `annotate --render` wrote (`<name>.<filter>.<ext>` inside the output folder) or a
    picture of `--report`'s (`report/…/*.png`, or its folder being built): an output is never an
    input, also when --out lies inside an input folder (a second run with --report took the
    first report's pictures for photos, and each report pictured the last one's)."""
    out_dir = local_folder(out_dir) or out_dir if out_dir else out_dir     # --out file:///… is a local folder
    if not out_dir or is_uri(path) != is_uri(out_dir):
        return False
    if is_uri(path):
        out = out_dir.partition("?")[0].rstrip("/") + "/"
        if not path.partition("?")[0].startswith(out):
            return False
    else:
        out = os.path.abspath(out_dir)
        if os.path.commonpath([out, os.path.abspath(path)]) != out:
            return False
    rel = (path.partition("?")[0] if is_uri(path) else os.path.abspath(path))[len(out.rstrip("/")) + 1:]
    top = rel.split("/", 1)[0]
    if "/" in rel and (top == REPORT_DIR or is_temp_name(top) and top.startswith(REPORT_DIR + ".")) \
            and rel.lower().endswith(".png"):
        return True
    parts = sources.name_of(path).rsplit(".", 2)
    return len(parts) == 3 and (parts[1] in FILTERS or parts[1].startswith("overlay-")) \
        and "." + parts[2].lower() in (*OUTPUT_FORMATS, *IMAGE_EXTENSIONS)


def _uri_items(uri: str, exclude_outputs_of: str | None) -> list[VideoItem]:
    """A URI that names a file is taken as given; a folder or prefix is searched recursively, as a
    local folder is."""
    if sources.info(uri).kind == "file":
        return [VideoItem(uri, _safe_name(sources.name_of(uri)))]
    return [VideoItem(u, _safe_name(rel)) for u, rel in sources.list_files(uri)
            if rel.lower().endswith(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS) and not _is_our_output(u, exclude_outputs_of)]


def _globbed(pattern: str) -> tuple[list[str], str]:
    """(the files a glob names, the folder their names are relative to). A pattern under a folder
    whose name has brackets (`Playlist [PLx1]/*.mp4`, as yt-dlp names playlists) matched nothing:
    where the pattern finds nothing, its longest leading folder that exists is taken as a name."""
    base = pattern.split("*")[0].split("?")[0].split("[")[0]
    base = base if base.endswith(os.sep) else os.path.dirname(base)
    found = sorted(glob.glob(pattern, recursive=True))
    if found:
        return found, base
    parts = pattern.split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        head = os.sep.join(parts[:i])
        if head and glob.has_magic(head) and os.path.isdir(head):
            return sorted(glob.glob(os.path.join(glob.escape(head), *parts[i:]), recursive=True)), head
    return found, base


def expand_inputs(inputs: list[str], exclude_outputs_of: str | None = None) -> list[VideoItem]:
    """Files are taken as given (any extension: a bad one is reported, not skipped); folders are
    searched recursively for video and photo extensions, globs (arguments with *?[ that name no
    file: yt-dlp writes `[id]` into names) expand relative to their fixed prefix, both
    leaving out what an earlier `--render` or `--report` wrote under `exclude_outputs_of`. A URI (s3://…, a
    file or a folder) is listed through pyarrow's filesystems and read there by the actors."""
    items: dict[str, VideoItem] = {}
    for arg in inputs:
        if is_uri(arg):               # read where it is by every actor (pipeline/sources.py); no globs
            for it in _uri_items(arg, exclude_outputs_of):
                items.setdefault(it.path, it)
        elif glob.has_magic(arg) and not os.path.lexists(arg):   # `Talk [dQw4w9WgXcQ].mp4` is a name
            found, base = _globbed(arg)
            for p in found:
                if os.path.isfile(p) and not _is_our_output(p, exclude_outputs_of):
                    items.setdefault(os.path.abspath(p), VideoItem(os.path.abspath(p),
                                                                   _safe_name(os.path.relpath(p, base or "."))))
        elif os.path.isdir(arg):
            for p in _walk(arg):
                if _is_our_output(p, exclude_outputs_of):
                    continue
                items.setdefault(os.path.abspath(p), VideoItem(os.path.abspath(p), _safe_name(os.path.relpath(p, arg))))
        else:
            items.setdefault(os.path.abspath(arg), VideoItem(os.path.abspath(arg), _safe_name(os.path.basename(arg))))
    names: dict[str, int] = {}
    out = []
    for it in items.values():   # two inputs with one relative name: keep both, suffix the later
        k = names.get(it.name, 0)
        names[it.name] = k + 1
        out.append(it if k == 0 else VideoItem(it.path, f"{it.name}~{k}"))
    return out
