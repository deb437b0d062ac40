"""Where outputs go: a local folder, or any URI pyarrow's filesystems open (s3://bucket/prefix,
gs://…, hdfs://…, file:///…). Every file is written under a temp name and then moved into place,
so a reader never sees half of one; on object stores the move is a server-side copy of a
complete object."""
from __future__ import annotations

import os
import shutil
import uuid

import pyarrow.fs as pafs


def is_uri(dest: str) -> bool:
    return "://" in dest


def resolve(dest: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI."""
    if is_uri(dest):
        return pafs.FileSystem.from_uri(dest)
    return pafs.LocalFileSystem(), os.path.abspath(dest)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _write_via_temp(fs: pafs.FileSystem, path: str, write) -> None:
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    fs.create_dir(_parent(path), recursive=True)
    try:
        with fs.open_output_stream(tmp) as f:
            write(f)
        fs.move(tmp, path)
    finally:
        try:
            if exists(fs, tmp):
                fs.delete_file(tmp)
        except OSError:
            pass                 # never hide the error that got us here


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    _write_via_temp(fs, path, lambda f: f.write(data))


def upload(local_path: str, fs: pafs.FileSystem, path: str) -> None:
    """Stream a finished local file to `path` on `fs` (a rendered video can be gigabytes)."""
    with open(local_path, "rb") as src:
        _write_via_temp(fs, path, lambda f: shutil.copyfileobj(src, f, 1 << 20))
