"""Where an input's bytes come from: a local path, or a URI that pyarrow's filesystems open
(s3://bucket/key, gs://…, hdfs://…, file:///…). With URIs a Ray cluster needs no shared
filesystem for its inputs: each actor reads the object store itself. PyAV decodes from the
seekable file pyarrow opens (`open_input`), so segments seek there as in a local file.

One definition of "a URI" and of how one is opened, for the inputs here and the outputs
(jobs/outputs.py)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote

import pyarrow.fs as pafs

READ_BUFFER = 4 << 20    # PyAV's reads from a store: 4 MiB a request (its own 32 KiB made one GET per 32 KiB)
_BUCKETS = ("s3", "gs", "gcs")   # schemes whose path inside the filesystem is bucket/key: one filesystem per bucket


def is_uri(path: str) -> bool:
    return "://" in path


@lru_cache(maxsize=32)
def _bucket_fs(root: str) -> pafs.FileSystem:
    """One filesystem per scheme://bucket?options: making one can ask the store for the bucket's
    region, once per file otherwise."""
    return pafs.FileSystem.from_uri(root)[0]


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI (percent-escapes decoded)."""
    if not is_uri(path):
        return pafs.LocalFileSystem(), os.path.abspath(path)
    scheme, rest = path.split("://", 1)
    where, q, options = rest.partition("?")
    if scheme.lower() in _BUCKETS and "@" not in where.split("/", 1)[0]:
        bucket = where.split("/", 1)[0]
        return _bucket_fs(f"{scheme}://{bucket}{q}{options}"), unquote(where.rstrip("/"))
    return pafs.FileSystem.from_uri(path)


def absolute(path: str) -> str:
    """What an output's metadata records as its source: the absolute path, or the URI without
    any user:secret@ it was given."""
    return re.sub(r"://[^/@?]*@", "://", path) if is_uri(path) else os.path.abspath(path)


@dataclass(frozen=True)
class SourceInfo:
    kind: str            # "file", "dir" or "missing"
    size: int
    mtime: float


_LISTED: dict[str, SourceInfo] = {}     # what list_files saw: a driver checks 10,000 listed files without 10,000 requests


def info(path: str) -> SourceInfo:
    """What is at `path` (OSError when the store cannot be asked: credentials, network)."""
    if path in _LISTED:
        return _LISTED[path]
    if not is_uri(path):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return SourceInfo("missing", 0, 0.0)
        return SourceInfo("dir" if os.path.isdir(path) else "file", st.st_size, st.st_mtime)
    fs, inner = resolve(path)
    return _info_of(fs.get_file_info(inner))


def changed_since(path: str, size: int, mtime: float) -> bool:
    """Whether the local file at `path` is no longer the one of that size and time: a recording
    still being written when it was read. False when it cannot be asked, and for a URI (a
    request per file, one after another in the driver, would cap a bucket of photos at ~30/s;
    nobody records into a bucket)."""
    if is_uri(path):
        return False
    try:
        now = info(path)
    except OSError:
        return False
    return now.kind == "file" and (now.size != size or now.mtime != mtime)


def _info_of(fi: pafs.FileInfo) -> SourceInfo:
    kind = {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(fi.type, "missing")
    return SourceInfo(kind, fi.size or 0, fi.mtime.timestamp() if fi.mtime is not None else 0.0)


def open_input(path: str):
    """What PyAV opens (`av.open(*args, **kwargs)`): the path itself, or pyarrow's seekable file
    for a URI, read in `READ_BUFFER` requests."""
    if not is_uri(path):
        return (path,), {}
    fs, inner = resolve(path)
    return (fs.open_input_file(inner),), {"buffer_size": READ_BUFFER}


def read_bytes(path: str) -> bytes:
    if not is_uri(path):
        with open(path, "rb") as f:
            return f.read()
    fs, inner = resolve(path)
    with fs.open_input_file(inner) as f:
        return f.read()


def list_files(uri: str) -> list[tuple[str, str]]:
    """Every file under a URI folder, recursively (hidden names left out, as in a local folder),
    sorted: (its URI, escaped as a URI must be and with the folder's ?options, and its path below
    the folder, as text)."""
    fs, inner = resolve(uri)
    base, q, options = uri.partition("?")
    root = inner.rstrip("/")
    found = []
    for fi in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        rel = fi.path[len(root):].lstrip("/")
        if fi.type == pafs.FileType.File and not any(part.startswith(".") for part in rel.split("/")):
            uri = f"{base.rstrip('/')}/{quote(rel, safe='/')}{q}{options}"
            _LISTED[uri] = _info_of(fi)
            found.append((uri, rel))
    return sorted(found)


def name_of(path: str) -> str:
    """The last part of a path or a URI's path (no ?options, percent-escapes decoded)."""
    if not is_uri(path):
        return os.path.basename(path)
    return unquote(path.partition("?")[0].rstrip("/").rsplit("/", 1)[-1])


_UNDECODED = re.compile("[\udc80-\udcff]")     # a file name's non-UTF-8 bytes, as os.fsdecode holds them


def text_path(path: str) -> str:
    """`path` as text: the bytes of a file name that are not UTF-8 (a name from an old Windows or
    Mac system, an archive unpacked with another code page; Python holds them as surrogates) as
    `%XX`. Parquet strings, metadata and HTML must be valid Unicode; the file is opened by `path`."""
    return _UNDECODED.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", path)

