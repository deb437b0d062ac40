"""Splitting one long video into keyframe-aligned time ranges, and stitching the results back.

Segment i owns the frames with time in [start_i, start_{i+1}); it starts decoding `overlap_s`
earlier (from the keyframe before that), so its tracker is warmed up when its own range begins,
and those overlap frames, seen by both segments, tell which track of segment i is which track of
segment i-1. The plan is a function of the video and the segment length only, never of how many
actors run it, so any number of actors gives the same rows and the same ids.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from .schema import SCHEMA
from .tracking import box_iou, greedy_match
from .video import VideoError, keyframe_times

SHORT_MARGIN = 2   # a header's duration may be an estimate (MPEG-TS: from the bitrate): trusted below half a segment


@dataclass(frozen=True)
class Segment:
    index: int
    start_s: float | None      # first owned time (None: from the start)
    end_s: float | None        # end of owned times, exclusive (None: to the end)
    decode_from_s: float | None  # where decoding starts (start_s - overlap)


def segments_of(path: str, segment_s: float, overlap_s: float,
                on_frames: Callable[[int], None] | None = None) -> list[Segment | None]:
    """The segments of one video, from its keyframes (reading every packet of the file); [None]
    for one piece, or when the file cannot be read (its worker reports why). A video whose
    header says it is under half a segment long is one piece without that read: a folder of
    short clips read every clip twice, from an object store too. `on_frames(0)`: a
    heartbeat before the file is opened and for each packet read (a stuck read is found by its
    silence, as a worker's is)."""
    alive = (lambda: on_frames(0)) if on_frames is not None else None
    if alive:
        alive()
    try:      # far shorter than a segment by its header: one piece, no packet read
        plan = plan_segments(keyframe_times(path, alive, segment_s / SHORT_MARGIN), segment_s, overlap_s)
    except VideoError:
        return [None]
    return plan if len(plan) > 1 else [None]


def plan_segments(keyframes: list[float], segment_s: float, overlap_s: float) -> list[Segment]:
    """Boundaries at keyframes at least `segment_s` apart; one segment when the video is short.
    A segment decodes from `overlap_s` before its start, but never from before the first keyframe:
    times may be negative (a TS clock that wrapped), and AVI and FLV refuse a seek before their
    first packet."""
    keyframes = sorted(keyframes)
    bounds, last = [], None
    for t in keyframes:
        if last is None:
            last = t
            continue
        if t - last >= segment_s:
            bounds.append(t)
            last = t
    starts = [None] + bounds
    ends = bounds + [None]
    return [Segment(i, s, e, None if s is None else max(keyframes[0], s - overlap_s))
            for i, (s, e) in enumerate(zip(starts, ends))]


def _boxes(df: pd.DataFrame) -> np.ndarray:
    return df[["x", "y", "w", "h"]].to_numpy(np.float64)


class Stitcher:
    """Stitches one video's segment tables, fed in segment order, one at a time: only the previous
    segment's owned rows are kept (its overlap tells which new track is which), so a long video's
    tracks can be written as its segments complete."""

    def __init__(self, min_iou: float = 0.5):
        self.min_iou = min_iou
        self.next_id = 0
        self.offset = 0                   # frames owned by the segments before
        self.prev: pd.DataFrame | None = None

    def add(self, table: pa.Table, seg: Segment) -> pa.Table:
        """The rows `seg` owns, with global track ids and frame indices recounted from the
        segment's own decode order (never from times: two frames may share a PTS, and each keeps
        its own index)."""
        df = table.to_pandas()
        t = df.time_s.to_numpy()
        lo = -np.inf if seg.start_s is None else seg.start_s - 1e-6
        hi = np.inf if seg.end_s is None else seg.end_s - 1e-6
        mapping = self._carried_ids(df[(t < lo) & df.track_id.notna()]) if seg.start_s is not None else {}
        own = df[(t >= lo) & (t < hi)].copy()
        for local in sorted(own.track_id.dropna().unique().astype(int)):
            if local not in mapping:
                mapping[local] = self.next_id
                self.next_id += 1
        self.next_id = max([self.next_id] + [g + 1 for g in mapping.values()])
        own["track_id"] = own.track_id.map(lambda v: mapping[int(v)] if pd.notna(v) else None).astype("Int32")
        local_index = own.frame_index.rank(method="dense").astype(int) - 1
        own["frame_index"] = (self.offset + local_index).astype("int32")
        self.offset += int(local_index.max()) + 1 if len(own) else 0
        own = own.sort_values(["frame_index", "track_id"], na_position="first", kind="stable")
        self.prev = own
        return pa.Table.from_pandas(own, schema=SCHEMA, preserve_index=False)

    def _carried_ids(self, overlap: pd.DataFrame) -> dict[int, int]:
        """local id -> global id of the previous segment's track it continues. For each pair
        (last overlap time they matched, frames matched): the track that is there at the
        boundary wins, not one that ended earlier in the overlap."""
        prev, mapping = self.prev, {}
        if prev is None:
            return mapping
        votes: dict[tuple[int, int], tuple[float, int]] = {}
        for time_s, here in overlap.groupby("time_s"):
            there = prev[(np.abs(prev.time_s - time_s) < 1e-6) & prev.track_id.notna()]
            if len(there):
                iou = box_iou(_boxes(here), _boxes(there))
                for r, c in greedy_match(iou, self.min_iou):
                    k = (int(here.track_id.iloc[r]), int(there.track_id.iloc[c]))
                    votes[k] = (float(time_s), votes.get(k, (0.0, 0))[1] + 1)
        for (local, glob), _ in sorted(votes.items(), key=lambda kv: (-kv[1][0], -kv[1][1])):
            if local not in mapping and glob not in mapping.values():
                mapping[local] = glob
        return mapping

