"""`OUT_DIR/report.html` and its `report/` folder of PNGs: a look at a finished run without writing
code. The pictures are made in a temp folder that replaces `report/` whole, then the page is moved
into place: a reader sees the old report or the new one, never a page pointing at missing images."""
from __future__ import annotations

import os
import shutil

import cv2
import numpy as np

from facetracks.pipeline import sources
from facetracks.pipeline.atomic import temp_name, temp_path
from facetracks.pipeline.sources import text_path
from facetracks.pipeline.video import VideoError

from .outputs import REPORT_DIR
from .report_charts import score_chart, timeline_chart
from .report_data import (EARLIER, VideoReport, face_rows, load_report, load_video, lowest_score_rows,
                          spaced_frames, worth_a_look)
from .report_frames import face_crop, frame_thumb, grab_frames
from .report_html import Picture, VideoPictures, render_html

REPORT_HTML = "report.html"
VIDEOS_PICTURED = 40     # videos given pictures at most (`--videos`); every video has its row


def _save(img: np.ndarray, folder: str, rel: str, caption: str = "") -> Picture:
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"cannot encode {rel} as PNG")
    with open(os.path.join(folder, rel), "wb") as f:
        f.write(png.tobytes())
    return Picture(f"{REPORT_DIR}/{rel}", img.shape[1], img.shape[0], caption)


def _frame_pictures(v: VideoReport, pics: VideoPictures, folder: str, key: str, n_frames: int, n_worst: int) -> None:
    spaced = spaced_frames(v.tracks_df, v.frames or 0, n_frames)
    worst_frames = lowest_score_rows(v.tracks_df, n_worst).frame_index.astype(int).tolist()
    times = v.frame_times
    wanted = {i: float(times[i]) for i in set(spaced) | set(worst_frames)}
    faces = face_rows(v, list(wanted))
    rows_at = {int(i): g for i, g in faces.groupby("frame_index")}
    worst = lowest_score_rows(faces, n_worst)      # the same picks: the greedy choice over a superset of them
    try:
        frames = grab_frames(v.source, wanted, v.timing)
    except (VideoError, OSError) as e:
        pics.notes.append(f"no thumbnails: cannot decode the source again ({e})")
        return
    for k, i in enumerate(spaced):
        if i in frames:
            rows = rows_at.get(i, faces.iloc[:0])
            cap = f"frame {i} · {times[i]:.2f} s · {len(rows)} face{'s' * (len(rows) != 1)}"
            pics.frames.append(_save(frame_thumb(frames[i], rows), folder, f"{key}/frame_{k}.png", cap))
    for k, (_, row) in enumerate(worst.iterrows()):
        i = int(row.frame_index)
        if i in frames:
            cap = f"frame {i} · {row.time_s:.2f} s · track {int(row.track_id)} · score {row.score:.3f}"
            crop = face_crop(frames[i], worst.loc[[row.name]])
            pics.worst.append(_save(crop, folder, f"{key}/low_{k}.png", cap))
    missing = len(wanted) - len(frames)
    if missing:
        pics.notes.append(f"{missing} of {len(wanted)} frames could not be found again in the source")


def _reachable(source: str) -> bool:
    try:
        return sources.info(source).kind == "file"
    except (OSError, ValueError):
        return False


def video_pictures(v: VideoReport, folder: str, key: str, min_score: float | None,
                   n_frames: int = 6, n_worst: int = 4) -> VideoPictures:
    pics = VideoPictures()
    if v.tracks_df is None:
        return pics
    os.makedirs(os.path.join(folder, key), exist_ok=True)
    faces = v.tracks_df
    if (v.frames or 0) > 1:      # a photo has no time to chart
        pics.timeline = _save(timeline_chart(faces, v.duration_s), folder, f"{key}/timeline.png")
        pics.score = _save(score_chart(faces, v.duration_s, min_score), folder, f"{key}/score.png")
    if not v.source or not _reachable(v.source):
        pics.notes.append(f"no thumbnails: the source video {v.source or '(unknown)'} is not reachable from here")
    else:
        _frame_pictures(v, pics, folder, key, n_frames, n_worst)
    return pics


def write_report(out_dir: str, n_frames: int = 6, n_worst: int = 4, n_videos: int = VIDEOS_PICTURED) -> str:
    """Write OUT_DIR/report.html (and OUT_DIR/report/); returns the page's path. Raises ReportError
    when OUT_DIR holds no run summary. Every video has its row in the table; at most `n_videos`
    have their pictures (`worth_a_look`)."""
    summary, videos = load_report(out_dir)
    pictured = worth_a_look(videos, n_videos)
    min_score = (summary.get("params") or {}).get("follow", {}).get("min_score")
    final = os.path.join(out_dir, REPORT_DIR)
    build = temp_name(final)
    os.makedirs(build)
    try:
        pictures: list[VideoPictures | None] = [None] * len(videos)
        for i in pictured:
            entry = summary["videos"].get(videos[i].name, {"status": EARLIER})
            with_rows = load_video(out_dir, videos[i].name, entry)   # its rows, let go after its pictures
            pictures[i] = video_pictures(with_rows, build, f"v{i:03d}", min_score, n_frames, n_worst)
        page = render_html(out_dir, summary, videos, pictures)
        old = temp_name(final) if os.path.exists(final) else None
        if old:
            os.rename(final, old)
        os.rename(build, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    path = os.path.join(out_dir, REPORT_HTML)
    with temp_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text_path(page))        # an error message may quote a file name that is not UTF-8
    return path
