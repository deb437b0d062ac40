"""Where an input's bytes come from: a local path, or a URI that pyarrow's filesystems open
(s3://bucket/key, gs://…, hdfs://…, file:///…). With URIs a Ray cluster needs no shared
filesystem for its inputs: each actor reads the object store itself. PyAV decodes from the
seekable file pyarrow opens (`open_input`), so segments seek there as in a local file.

One definition of "a URI" and of how one is opened, for the inputs here and the outputs
(jobs/outputs.py)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow.fs as pafs


def is_uri(path: str) -> bool:
    return "://" in path


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI."""
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def absolute(path: str) -> str:
    """What an output's metadata records as its source: the URI as given, or the absolute path."""
    return path if is_uri(path) else os.path.abspath(path)


@dataclass(frozen=True)
class SourceInfo:
    kind: str            # "file", "dir" or "missing"
    size: int
    mtime: float


def info(path: str) -> SourceInfo:
    """What is at `path` (OSError when the store cannot be asked: credentials, network)."""
    if not is_uri(path):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return SourceInfo("missing", 0, 0.0)
        return SourceInfo("dir" if os.path.isdir(path) else "file", st.st_size, st.st_mtime)
    fs, inner = resolve(path)
    fi = fs.get_file_info(inner)
    kind = {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(fi.type, "missing")
    return SourceInfo(kind, fi.size or 0, fi.mtime.timestamp() if fi.mtime is not None else 0.0)


def open_input(path: str):
    """What PyAV opens: the path itself, or pyarrow's seekable file for a URI."""
    if not is_uri(path):
        return path
    fs, inner = resolve(path)
    return fs.open_input_file(inner)


def read_bytes(path: str) -> bytes:
    if not is_uri(path):
        with open(path, "rb") as f:
            return f.read()
    fs, inner = resolve(path)
    with fs.open_input_file(inner) as f:
        return f.read()


def list_files(uri: str) -> list[tuple[str, str]]:
    """Every file under a URI folder or prefix, recursively (hidden names left out, as in a local
    folder), sorted: (its URI, with the folder's ?options, and its path below the folder)."""
    fs, inner = resolve(uri)
    base, q, options = uri.partition("?")
    root = inner.rstrip("/")
    found = []
    for fi in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        rel = fi.path[len(root):].lstrip("/")
        if fi.type == pafs.FileType.File and not any(part.startswith(".") for part in rel.split("/")):
            found.append((f"{base.rstrip('/')}/{rel}{q}{options}", rel))
    return sorted(found)


def name_of(uri: str) -> str:
    """The last part of a URI's path (no ?options)."""
    return uri.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]
