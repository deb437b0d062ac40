"""Write a file under a temp name beside its path, then move it into place: a reader never sees
half a file. Works on any pyarrow filesystem (local disk, s3://, gs://); `temp_path` is the local
form for writers that need a real, seekable file (an MP4 muxer seeks back to write its index)."""
from __future__ import annotations

import os
import re
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

import pyarrow.fs as pafs

TEMP_SUFFIX = ".tmp"
TEMP_EXTRA = len(".01234567" + TEMP_SUFFIX)    # bytes `temp_name` adds to a file name


_TEMP = re.compile(r"\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")


def temp_name(path: str) -> str:
    """The one naming of our temp files: `<path>.<8 hex>.tmp`, so a later run can tell them apart."""
    return f"{path}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one `temp_name` makes."""
    return _TEMP.search(name) is not None


def make_parent(fs: pafs.FileSystem, path: str) -> None:
    """The folder `path` goes in (object stores: a no-op where there is none to make)."""
    if "/" in path.strip("/"):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)


def write_atomic(fs: pafs.FileSystem, path: str, write: Callable[[pafs.NativeFile], None]) -> None:
    """`write(stream)` fills the temp file; on any error the temp file is removed."""
    make_parent(fs, path)
    tmp = temp_name(path)
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


@contextmanager
def temp_path(path: str) -> Iterator[str]:
    """A local temp path beside `path`, moved onto it when the block ends without error and
    removed when it raises."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_name(os.path.abspath(path))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
