"""Segment planning and stitching, pure (a segmented run on real Ray actors, equal across actor counts: test_cluster.py)."""
import os

import numpy as np
import pyarrow as pa

from facetracks.pipeline.parquet import TableBuilder
from facetracks.pipeline.segments import Segment, Stitcher, plan_segments, segments_of


def test_plan_aligns_to_keyframes_and_spans_everything():
    kf = [0.0, 0.5, 1.0, 2.0, 2.5, 4.1, 5.0]
    plan = plan_segments(kf, segment_s=2.0, overlap_s=0.5)
    assert [(s.start_s, s.end_s) for s in plan] == [(None, 2.0), (2.0, 4.1), (4.1, None)]
    assert plan[0].decode_from_s is None
    np.testing.assert_allclose([s.decode_from_s for s in plan[1:]], [1.5, 3.6])
    assert plan_segments([0.0, 1.0], segment_s=10, overlap_s=1) == [Segment(0, None, None, None)]


def stitch(tables, segments):
    st = Stitcher()
    return pa.concat_tables([st.add(t, s) for t, s in zip(tables, segments)])


def _table(frames, faces_at):
    """frames: list of times; faces_at(t) -> list of (local id, x offset)."""
    b = TableBuilder("v")
    for i, t in enumerate(frames):
        faces = []
        for tid, x in faces_at(t):
            pts = np.stack([np.linspace(x, x + 50, 68), np.linspace(10, 60, 68)], -1).astype(np.float32)
            faces.append((tid, pts, 0.9))
        b.add_frame(i, round(t * 1000), t, faces)
    return b.table()


def test_stitch_keeps_owned_rows_and_carries_ids_across_the_boundary():
    times = [k / 10 for k in range(40)]                      # 4 s at 10 fps
    seg = [Segment(0, None, 2.0, None), Segment(1, 2.0, None, 1.5)]
    # segment 0: faces A (id 0, left) and B (id 1, right); segment 1 numbers them the other way round
    t0 = _table([t for t in times if t < 2.0], lambda t: [(0, 10), (1, 200)])
    t1 = _table([t for t in times if t >= 1.5], lambda t: [(0, 200), (1, 10), (2, 400)] if t > 3 else [(0, 200), (1, 10)])
    out = stitch([t0, t1], seg).to_pandas()
    assert list(out.drop_duplicates("frame_index").time_s) == times
    assert out.frame_index.max() == 39 and out.groupby("frame_index").size().iloc[:31].eq(2).all()
    left = out[out.x < 100].track_id.unique()
    right = out[(out.x > 100) & (out.x < 300)].track_id.unique()
    new = out[out.x > 300].track_id.unique()
    assert list(left) == [0] and list(right) == [1] and list(new) == [2]


def test_stitch_gives_the_id_of_the_track_that_reaches_the_boundary():
    """In the overlap, segment 0 loses its face (id 0) and finds it again as id 1 just before the
    boundary; segment 1 followed it all along as one track. The ids after the boundary continue
    id 1, the track that is there at the boundary, not id 0, which matched more overlap frames."""
    times = [k / 10 for k in range(40)]
    seg = [Segment(0, None, 2.0, None), Segment(1, 2.0, None, 1.0)]
    t0 = _table([t for t in times if t < 2.0], lambda t: [(0, 10)] if t < 1.75 else [(1, 10)])
    t1 = _table([t for t in times if t >= 1.0], lambda t: [(0, 10)])
    out = stitch([t0, t1], seg).to_pandas()
    assert out[out.time_s >= 1.75].track_id.unique().tolist() == [1]


def test_a_clip_far_shorter_than_a_segment_is_one_piece_without_reading_its_packets(videos_dir):
    """Listing keyframes reads every packet (a heartbeat each); a clip whose header says it is
    under half a segment long is one piece without that read."""
    path = os.path.join(videos_dir, "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4")   # 8 s, a keyframe every 0.48 s
    beats = []
    assert segments_of(path, 20.0, 1.0, beats.append) == [None]
    assert len(beats) == 1                                  # the start's heartbeat alone
    beats.clear()
    assert len(segments_of(path, 2.0, 1.0, beats.append)) == 4 and len(beats) > 100
    beats.clear()
    assert segments_of(path, 12.0, 1.0, beats.append) == [None] and len(beats) > 100   # over half a segment: read
