"""Track files written in pieces (a segmented video's): one file with its metadata, or nothing."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facetracks.pipeline.parquet import SCHEMA_VERSION, TableBuilder, TrackStream, is_current, read_meta, run_key


def _piece(first: int, n: int) -> pa.Table:
    b = TableBuilder("v.mp4")
    for i in range(first, first + n):
        pts = np.full((68, 2), float(i), np.float32) + np.arange(68, dtype=np.float32)[:, None]
        b.add_frame(i, i * 40, i * 0.04, [(0, pts, 0.9)] if i % 3 else [])
    return b.table()


def test_pieces_make_one_file_with_metadata(tmp_path):
    path = str(tmp_path / "v.mp4.parquet")
    s = TrackStream(path)
    for first in (0, 10, 20):
        s.write(_piece(first, 10))
    assert not os.path.exists(path)                     # nothing under the final name until closed
    s.close({"frame_count": 30, "model": "m"})
    got = pq.read_table(path)
    assert got.equals(pa.concat_tables([_piece(0, 10), _piece(10, 10), _piece(20, 10)]).replace_schema_metadata(got.schema.metadata))
    assert read_meta(path)["frame_count"] == 30 and s.faces == 20
    assert os.listdir(tmp_path) == ["v.mp4.parquet"]      # the pieces are gone


def test_aborted_stream_leaves_nothing(tmp_path):
    s = TrackStream(str(tmp_path / "v.mp4.parquet"))
    s.write(_piece(0, 5))
    s.abort()
    assert os.listdir(tmp_path) == []


def test_tracks_written_with_the_split_in_their_key_stay_current():
    """Keys written before 2026-11-28 held how the video was split; that makes no tracks stale
    (else every user's folder would be annotated again), while any other difference does."""
    params = {"detector": {"min_neighbors": 3}, "smooth": {"method": "local-poly"}}
    key = run_key(100, 1.5, "m@1", params)
    old = {"schema_version": SCHEMA_VERSION, "run_key": run_key(100, 1.5, "m@1", {**params, "segment_seconds": 120})}
    assert is_current(old, key) and is_current({**old, "run_key": key}, key)
    other = run_key(100, 1.5, "m@1", {**params, "detector": {"min_neighbors": 5}, "segment_seconds": 0})
    assert not is_current({**old, "run_key": other}, key)
    assert not is_current({**old, "schema_version": SCHEMA_VERSION - 1}, key) and not is_current(None, key)
