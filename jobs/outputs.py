"""Where outputs go: a local folder, or any URI pyarrow's filesystems open (s3://bucket/prefix,
gs://…, hdfs://…, file:///…). Every file is written under a temp name and then moved into place,
so a reader never sees half of one; on object stores the move is a server-side copy of a
complete object."""
from __future__ import annotations

import os
import shutil

import pyarrow.fs as pafs

from pipeline.atomic import write_atomic


def is_uri(dest: str) -> bool:
    return "://" in dest


def resolve(dest: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI."""
    if is_uri(dest):
        return pafs.FileSystem.from_uri(dest)
    return pafs.LocalFileSystem(), os.path.abspath(dest)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    write_atomic(fs, path, lambda f: f.write(data))


def upload(local_path: str, fs: pafs.FileSystem, path: str) -> None:
    """Stream a finished local file to `path` on `fs` (a rendered video can be gigabytes)."""
    with open(local_path, "rb") as src:
        write_atomic(fs, path, lambda f: shutil.copyfileobj(src, f, 1 << 20))
