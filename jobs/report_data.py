"""What the run report says about each video: the summary's entry joined with numbers read from its
track file, and which frames are worth looking at. No drawing here (report_charts, report_frames)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from facetracks.pipeline.parquet import meta_of
from facetracks.pipeline.schema import BOX_COLUMNS, POINT_COLUMNS

from .inputs import VideoItem
from .outputs import track_files

SUMMARY = "_summary.json"
EARLIER = "earlier"      # the status of a video whose track file an earlier run wrote, not in this summary


class ReportError(RuntimeError):
    """The folder cannot be reported on (no summary, unreadable summary): one line for the user."""


@dataclass
class VideoReport:
    name: str                     # the summary's key: path relative to its input root
    status: str                   # ok, skipped, failed
    error: str | None = None
    fps: float | None = None      # processing speed of the run that wrote it (absent when skipped)
    frames: int | None = None
    face_frames: int = 0          # frames with at least one face
    tracks: int = 0
    mean_score: float | None = None
    duration_s: float = 0.0
    source: str | None = None     # the video the tracks came from, as annotate saw it
    timing: str = "pts"           # how its frames are timed (pipeline/video.py): how to find one again
    tracks_path: str | None = None
    tracks_df: pd.DataFrame | None = field(default=None, repr=False)   # face rows only, without points
    frame_times: pd.Series | None = field(default=None, repr=False)    # time_s by frame_index, every frame
    note: str | None = None       # why something is missing (no track file, source gone)

    @property
    def face_share(self) -> float | None:
        return self.face_frames / self.frames if self.frames else None


def read_summary(out_dir: str) -> dict:
    path = os.path.join(out_dir, SUMMARY)
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (is {out_dir} the --out folder of `facetracks annotate`?)") from None
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: cannot read the run summary ({e})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("videos"), dict):
        raise ReportError(f"{path}: not a facetracks run summary (no 'videos')")
    return summary


_COLUMNS = ["frame_index", "time_s", "track_id", "score"]      # the points are read per picture (face_rows)


def load_video(out_dir: str, name: str, entry: dict, rows: bool = True) -> VideoReport:
    """One video's report from its summary entry and, unless it failed, its track file; with
    `rows`, its face rows and frame times too (what its pictures are made from)."""
    rep = VideoReport(name=name, status=entry.get("status", "?"), error=entry.get("error"), fps=entry.get("fps"),
                      frames=entry.get("frames"))
    if rep.status == "failed":
        return rep
    path = VideoItem("", name).output(out_dir)
    try:
        table = pq.read_table(path, columns=_COLUMNS)
    except (OSError, ValueError) as e:
        rep.note = f"cannot read the track file {path} ({e})"
        return rep
    df = table.to_pandas()
    rep.tracks_path = path
    meta = meta_of(table.schema) or {}
    source = meta.get("source") or {}
    rep.source, rep.timing = source.get("path"), source.get("timing", "pts")
    rep.frames = int(df.frame_index.nunique())
    rep.duration_s = float(df.time_s.max()) if len(df) else 0.0
    faces = df[df.track_id.notna()]
    rep.face_frames = int(faces.frame_index.nunique())
    rep.tracks = int(faces.track_id.nunique())
    scores = faces.score.dropna()
    rep.mean_score = float(scores.mean()) if len(scores) else None
    if rows:
        rep.tracks_df = faces.reset_index(drop=True)
        rep.frame_times = df.drop_duplicates("frame_index").set_index("frame_index").time_s
    return rep


def load_report(out_dir: str) -> tuple[dict, list[VideoReport]]:
    """The summary and every video's numbers, without their rows (`load_video(rows=True)` for the
    videos pictured: a large run's rows would not fit in memory). Track files the summary does
    not list are there too, as `earlier`: the summary is the last run's, and a folder filled by
    two runs (`annotate A --out X`, then `annotate B --out X`) used to report only B."""
    summary = read_summary(out_dir)
    entries = {**{n: {"status": EARLIER} for n in _unlisted_track_files(out_dir, summary["videos"])},
               **summary["videos"]}
    return summary, [load_video(out_dir, n, e, rows=False) for n, e in sorted(entries.items())]


def _unlisted_track_files(out_dir: str, listed: dict) -> list[str]:
    """The names of the track files under `out_dir` that no summary entry names (read from each
    file's metadata; files the summary names are not opened)."""
    known = {os.path.abspath(VideoItem("", n).output(out_dir)) for n in listed}
    names = [(meta.get("source") or {}).get("name") for _, meta in track_files(out_dir, known=known)]
    return [n for n in names if n and n not in listed]


def worth_a_look(videos: list[VideoReport], n: int) -> list[int]:
    """Which videos get pictures: every one, up to `n`; past that the `n` that most need a
    person's eye, the ones with no face first, then by lowest mean score (a failed video has its
    error in the table, and nothing to picture). A run of 10,000 videos made 10,000 sections:
    most of two hours at 0.6 s each, and a page no one reads to the end."""
    if len(videos) <= n:
        return list(range(len(videos)))
    readable = [i for i, v in enumerate(videos) if v.status != "failed" and v.note is None]
    readable.sort(key=lambda i: (-1.0 if videos[i].mean_score is None else videos[i].mean_score, videos[i].name))
    return sorted(readable[:n])


def face_rows(rep: VideoReport, frames: list[int]) -> pd.DataFrame:
    """The face rows of some frames with their points: read for those frames only (a two-hour
    video's points are over a hundred MB; a report shows ten frames of them)."""
    if not frames:
        return pd.DataFrame(columns=["frame_index", "track_id", "score"] + BOX_COLUMNS + POINT_COLUMNS)
    t = pq.read_table(rep.tracks_path, columns=["frame_index", "time_s", "track_id", "score"] + BOX_COLUMNS + POINT_COLUMNS,
                      filters=[("frame_index", "in", sorted(frames))]).to_pandas()
    return t[t.track_id.notna()].reset_index(drop=True)


def spaced_frames(faces: pd.DataFrame, frames: int, n: int) -> list[int]:
    """Up to n frame indices evenly spread over the video, each moved to the nearest frame with a
    face (a strip of empty frames says little about the landmarks)."""
    if frames <= 0:
        return []
    wanted = np.linspace(0, frames - 1, min(n, frames)).round().astype(int)
    with_face = np.unique(faces.frame_index.to_numpy()) if len(faces) else np.array([], int)
    if not len(with_face):
        return sorted(set(wanted.tolist()))
    nearest = with_face[np.abs(with_face[None, :] - wanted[:, None]).argmin(axis=1)]
    return sorted(set(nearest.tolist()))


def lowest_score_rows(faces: pd.DataFrame, n: int, min_gap: int = 10) -> pd.DataFrame:
    """The n face rows with the lowest score, at least `min_gap` frames apart (one bad second of
    video would otherwise fill every slot)."""
    scored = faces[faces.score.notna()].sort_values(["score", "frame_index"])
    picked: list[int] = []
    rows = []
    for i, row in scored.iterrows():
        if all(abs(int(row.frame_index) - p) >= min_gap for p in picked):
            picked.append(int(row.frame_index))
            rows.append(i)
            if len(rows) == n:
                break
    return scored.loc[rows]


def unfinished(summary: dict) -> str | None:
    """What to say of a run whose summary holds only what it did before it was interrupted
    (Ctrl-C, a signal) or stopped (a full disk); None for a run that ran to its end."""
    if summary.get("interrupted"):
        return ("the run was interrupted: the videos it had not finished are not in the report; "
                "the same `facetracks annotate` command again does the rest")
    if summary.get("stopped"):
        return (f"the run stopped ({summary['stopped']}): the videos it had not finished are not in the report; "
                f"with space freed, the same `facetracks annotate` command again does the rest")
    return None
