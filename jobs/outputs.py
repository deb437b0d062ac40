"""Where outputs go: a local folder, or any URI pyarrow's filesystems open (s3://bucket/prefix,
gs://…, hdfs://…, file:///…). Every file is written under a temp name and then moved into place,
so a reader never sees half of one; on object stores the move is a server-side copy of a
complete object."""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from facetracks.pipeline.atomic import is_temp_name, write_atomic
from facetracks.pipeline.parquet import meta_of
from facetracks.pipeline.sources import is_uri, resolve

__all__ = ["cannot_write", "clean_dest", "exists", "is_full", "is_uri", "local_folder", "remove_stale_temps", "remove_temps_of",
           "resolve", "upload", "write_bytes"]


REPORT_DIR = "report"     # OUT/report/: the pictures of `--report` (jobs/report.py), never inputs (jobs/inputs.py)


class OutputFull(RuntimeError):
    """The output's filesystem is full (or over quota): no file this run could still write would
    be written, so the run stops instead of annotating every remaining video for nothing."""


def is_full(e: BaseException) -> bool:
    """Whether `e` is ENOSPC or EDQUOT, as Python, PyAV or pyarrow raise them (pyarrow's OSError
    may carry the errno only in its text)."""
    return isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT)
                                       or any(m in str(e) for m in ("No space left on device", "Disk quota exceeded")))


def raise_if_full(e: BaseException, writing: str) -> None:
    """OutputFull when `e` is a full disk (`is_full`); otherwise nothing: the caller handles `e`."""
    if is_full(e):
        raise OutputFull(f"the output is full: {writing} failed ({e})") from None


def clean_dest(dest: str) -> str:
    """`out`, `out/`, `out//` and `./out` name one folder: recorded and printed one way (never
    `out//_summary.json`). A URI keeps its scheme and its ?options."""
    if not is_uri(dest):
        return os.path.normpath(dest)
    scheme, rest = dest.split("://", 1)
    path, q, options = rest.partition("?")
    path = re.sub("/{2,}", "/", path)
    return f"{scheme}://{path.rstrip('/') or path}{q}{options}"


def local_folder(dest: str) -> str | None:
    """The local path of an output given as a path or a file:// URI (what `annotate --out` took);
    None for a remote store."""
    if not is_uri(dest):
        return dest
    if dest.split("://", 1)[0].lower() != "file":
        return None              # never asked of the store: a bucket's region lookup, a JVM for hdfs
    fs, path = resolve(dest)
    return path if isinstance(fs, pafs.LocalFileSystem) else None


def cannot_write(folder: str) -> str | None:
    """Why a file cannot be written in a local `folder` (made if missing), in the system's words
    (`read-only file system`, `permission denied`), found by making one and removing it; None
    when it can. Checked before a command starts (as root, os.access says yes to anything)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".facetracks-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        return (e.strerror or str(e)).lower()
    return None


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    write_atomic(fs, path, lambda f: f.write(data))


def upload(local_path: str, fs: pafs.FileSystem, path: str) -> None:
    """Stream a finished local file to `path` on `fs` (a rendered video can be gigabytes)."""
    with open(local_path, "rb") as src:
        write_atomic(fs, path, lambda f: shutil.copyfileobj(src, f, 1 << 20))


STALE_TEMP_S = 24 * 3600      # a day: a live run's slowest piece is never that old
TAKEOVER_TEMP_S = 60.0        # after a dead run's lease is taken over: a live writer (`facetracks render`
                              # into the folder) touches its temp file every frame


def remove_stale_temps(fs: pafs.FileSystem, root: str, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete temp files of our own naming that a killed run left under `root` (a render's can be
    gigabytes). Only those untouched for `older_than_s`: another run writing here keeps its own."""
    now = time.time()
    return _remove_temps(fs, pafs.FileSelector(root, recursive=True, allow_not_found=True),
                         lambda info: info.mtime is not None and now - info.mtime.timestamp() > older_than_s)


def remove_temps_of(fs: pafs.FileSystem, path: str) -> int:
    """Delete the temp files of `path` (`temp_name(path)`, any suffix), whatever their age: what a
    render of this run was writing when the run was interrupted (this run alone writes `path`)."""
    parent, _, base = path.rpartition("/")
    return _remove_temps(fs, pafs.FileSelector(parent or ".", allow_not_found=True),
                         lambda info: info.base_name.rsplit(".", 2)[0] == base)


def _remove_temps(fs: pafs.FileSystem, where: pafs.FileSelector, wanted) -> int:
    """Delete the files `where` selects that bear our temp naming and that `wanted(info)` picks;
    how many. A file that cannot be listed or deleted is left."""
    try:
        infos = fs.get_file_info(where)
    except OSError:
        return 0
    removed = 0
    for info in infos:
        if info.type == pafs.FileType.File and is_temp_name(info.base_name) and wanted(info):
            try:
                fs.delete_file(info.path)
                removed += 1
            except OSError:
                pass
    return removed


def track_files(out_dir: str, skip: str | None = None, known: frozenset[str] | set[str] = frozenset(),
                damaged: list[tuple[str, str]] | None = None) -> list[tuple[str, dict]]:
    """Every track file under a local `out_dir` (ours: it has facetracks metadata), in path order,
    with its metadata. `skip`: a folder not to search (export's CSVs); `known`: files (absolute
    paths) not to open, already accounted for (the report's, from the summary); `damaged`, when
    given, gets the `.parquet` files that cannot be read at all, with why (a Parquet of someone
    else's, readable, is simply not ours)."""
    found = []
    for d, dirs, files in os.walk(out_dir):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and os.path.abspath(os.path.join(d, x)) != skip)
        found += [p for f in sorted(files) if f.endswith(".parquet") and not f.startswith(".")
                  and os.path.abspath(p := os.path.join(d, f)) not in known]
    ours = []
    for p in found:
        try:
            meta = meta_of(pq.read_schema(p))
        except (OSError, ValueError, pa.ArrowException) as e:
            if damaged is not None:
                damaged.append((p, str(e)))
            continue
        if meta is not None:
            ours.append((p, meta))
    return ours
