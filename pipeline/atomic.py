"""Write a file under a temp name beside its path, then move it into place: a reader never sees
half a file. Works on any pyarrow filesystem (local disk, s3://, gs://)."""
from __future__ import annotations

import uuid
from typing import Callable

import pyarrow.fs as pafs


def write_atomic(fs: pafs.FileSystem, path: str, write: Callable[[pafs.NativeFile], None]) -> None:
    """`write(stream)` fills the temp file; on any error the temp file is removed."""
    if "/" in path.strip("/"):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with fs.open_output_stream(tmp) as f:
            write(f)
        fs.move(tmp, path)
    finally:
        try:
            if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                fs.delete_file(tmp)
        except OSError:
            pass                 # never hide the error that got us here
