"""Track files: build the table, write it atomically with its metadata, and tell whether it is current."""
from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from facetracks.models.landmarks68 import NUM_POINTS

from .atomic import make_parent, temp_name, write_atomic
from .schema import META_KEY, SCHEMA, SCHEMA_VERSION, face_column, geometry_columns


class TableBuilder:
    """Collects rows column-wise; `add_frame` takes one frame's faces (possibly none).
    `frame_size` (width, height of the upright frame) is the head pose's camera (None: no pose)."""

    def __init__(self, video: str, frame_size: tuple[int, int] | None = None):
        self.video = video
        self.frame_size = frame_size
        self.frame_index: list[int] = []
        self.pts: list[int | None] = []
        self.time_s: list[float] = []
        self.track_id: list[int | None] = []
        self.score: list[float] = []
        self.points: list[np.ndarray] = []

    def add_frame(self, index: int, pts: int | None, time_s: float,
                  faces: list[tuple[int, np.ndarray, float]]) -> None:
        for track_id, points, score in (faces or [(None, None, None)]):
            self.frame_index.append(index)
            self.pts.append(pts)
            self.time_s.append(time_s)
            self.track_id.append(track_id)
            self.score.append(np.nan if score is None else score)
            self.points.append(np.full((NUM_POINTS, 2), np.nan, np.float32) if points is None else points)

    def table(self) -> pa.Table:
        n = len(self.frame_index)
        pts = np.stack(self.points).astype(np.float32) if n else np.zeros((0, NUM_POINTS, 2), np.float32)
        face = ~np.isnan(pts[:, 0, 0])
        cols = {
            "video": pa.array([self.video] * n, pa.string()),
            "frame_index": pa.array(self.frame_index, pa.int32()),
            "pts": pa.array(self.pts, pa.int64()),
            "time_s": pa.array(self.time_s, pa.float64()),
            "track_id": pa.array(self.track_id, pa.int32()),
        }
        face_cols = {"score": np.asarray(self.score, np.float32), **geometry_columns(pts, self.frame_size)}
        for name, values in face_cols.items():
            cols[name] = face_column(values, face)
        return pa.table(cols, schema=SCHEMA)


def _schema_with(meta: dict) -> pa.Schema:
    """The track schema carrying a file's metadata (under META_KEY, with the schema version)."""
    return SCHEMA.with_metadata({META_KEY: json.dumps({"schema_version": SCHEMA_VERSION, **meta}).encode()})


def _target(path: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    """`filesystem` (pyarrow) for object stores; None: the local disk, path made absolute."""
    return (filesystem, path) if filesystem else (pafs.LocalFileSystem(), os.path.abspath(path))


def _encode(table: pa.Table, meta: dict, sink) -> None:
    """The one way a whole track file is laid out: the table, its metadata, zstd."""
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **_schema_with(meta).metadata})
    pq.write_table(table, sink, compression="zstd")


def write_tracks(table: pa.Table, path: str, meta: dict, filesystem: pafs.FileSystem | None = None) -> None:
    """Write to a temp name beside `path`, then move it into place: a reader never sees half a
    file."""
    fs, path = _target(path, filesystem)
    write_atomic(fs, path, lambda f: _encode(table, meta, f))


def track_file_bytes(table: pa.Table, meta: dict) -> pa.Buffer:
    """A track file's bytes, as `write_tracks` writes them: made where the table is (a Ray
    actor), so that whoever writes the file only moves bytes."""
    sink = pa.BufferOutputStream()
    _encode(table, meta, sink)
    return sink.getvalue()


def frame_count(table: pa.Table) -> int:
    """Frames a track table covers (every decoded frame has at least one row)."""
    return pc.count_distinct(table.column("frame_index")).as_py()


def face_count(table: pa.Table) -> int:
    """Face rows of a track table (a frame without a face has one row, with no track)."""
    return table.num_rows - table.column("track_id").null_count


class TrackStream:
    """A track file written in pieces, as a long video's segments complete: each piece goes to a
    temp file at once, so the driver holds one piece, not the video. `close(meta)` writes the
    final file (its metadata, the frame count among it, is known only at the end), reading the
    pieces back one row group at a time, and moves it into place; `abort()` leaves nothing."""

    def __init__(self, path: str, filesystem: pafs.FileSystem | None = None):
        self.fs, self.path = _target(path, filesystem)
        make_parent(self.fs, self.path)
        self.pieces = temp_name(self.path)
        self._sink = self.fs.open_output_stream(self.pieces)
        try:
            self._writer = pq.ParquetWriter(self._sink, SCHEMA, compression="zstd")
        except Exception:
            self._sink.close()
            self._remove_pieces()
            raise
        self.faces = 0

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self.faces += face_count(table)

    def close(self, meta: dict, whole: Callable[[pa.Table], pa.Table] | None = None) -> None:
        """`whole`, if given, is applied to the whole table before it is written (smoothing needs
        each track whole): the video is then held once, briefly, here."""
        self._close_pieces()
        try:
            schema = _schema_with(meta)

            def copy(f) -> None:
                with self.fs.open_input_file(self.pieces) as src, \
                        pq.ParquetWriter(f, schema, compression="zstd") as w:
                    pieces = pq.ParquetFile(src)
                    if whole is not None:
                        w.write_table(whole(pieces.read().cast(SCHEMA)).cast(schema))
                        return
                    for i in range(pieces.num_row_groups):
                        w.write_table(pieces.read_row_group(i).cast(schema))
            write_atomic(self.fs, self.path, copy)
        finally:
            self._remove_pieces()

    def abort(self) -> None:
        """Never raises (it runs on the way out of another error: a full disk fails again here)."""
        try:
            self._close_pieces()
        except Exception:      # noqa: BLE001
            pass
        self._remove_pieces()

    def _close_pieces(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            finally:
                self._sink.close()

    def _remove_pieces(self) -> None:
        try:
            self.fs.delete_file(self.pieces)
        except OSError:
            pass


def read_meta(path: str, filesystem: pafs.FileSystem | None = None) -> dict | None:
    """The facetracks metadata of a track file, or None when absent or unreadable."""
    try:
        return meta_of(pq.read_schema(path, filesystem=filesystem))
    except (OSError, ValueError, pa.ArrowException):
        return None


def meta_of(schema: pa.Schema) -> dict | None:
    """The facetracks metadata a track table read already carries (None when it has none)."""
    md = schema.metadata or {}
    return json.loads(md[META_KEY]) if META_KEY in md else None


def run_key(source_size: int, source_mtime: float, model: str, params: dict) -> dict:
    """What makes an output current: the same input file, model and parameters."""
    return {"source_size": source_size, "source_mtime": source_mtime, "model": model, "params": params}


def track_meta(info: dict, name: str, frame_count: int, model: str, params: dict) -> dict:
    """File-level metadata of a track file: the source video, the model, the run parameters."""
    return {"model": model, "source": {**info, "name": name}, "frame_count": frame_count, "params": params,
            "run_key": run_key(info["size_bytes"], info["mtime"], model, params)}


# in run keys written before 2026-11-28 only: how the video was split, which makes no tracks stale
_NOT_KEYS = ("segment_seconds",)


def is_current(meta: dict | None, key: dict) -> bool:
    """Whether a track file's metadata (`read_meta`; None when there is none) has run key `key`."""
    if not meta or meta.get("schema_version") != SCHEMA_VERSION or not isinstance(meta.get("run_key"), dict):
        return False
    stored = meta["run_key"]
    params = stored.get("params")
    if isinstance(params, dict):
        stored = {**stored, "params": {k: v for k, v in params.items() if k not in _NOT_KEYS}}
    return stored == key
