"""The frames bar's bookkeeping with a real Ray board: counts a worker sends while a video runs move
the bar; the container's estimate is corrected by what decodes and by what a finished file had.
(A whole run's bar, to the real total, is tested in test_photos.py.)"""
import io
import time

import ray

from facetracks.jobs.inputs import VideoItem
from facetracks.jobs.progress import FrameBar, estimate_frames, shows
from facetracks.jobs.ray_runner import init_ray

from .clips import moving_clip, pick_faces


def test_estimates_come_from_the_container(data_dir, tmp_path):
    moving_clip(str(tmp_path / "a.mp4"), pick_faces(data_dir, 1), frames_each=7)
    (tmp_path / "bad.mp4").write_bytes(b"nothing")
    assert estimate_frames(VideoItem(str(tmp_path / "a.mp4"), "a.mp4")) == 7
    assert estimate_frames(VideoItem(str(tmp_path / "bad.mp4"), "bad.mp4")) == 0      # unknown, never an error
    assert estimate_frames(VideoItem("/x/p.jpg", "p.jpg")) == 1
    assert shows("always") and not shows("never")


def _estimates_in(bar, total):
    """Poll until the header reads, on their threads, have brought the total to `total`."""
    deadline = time.monotonic() + 60
    while bar.bar.total != total and time.monotonic() < deadline:
        bar.polled = 0
        bar.poll()
        time.sleep(0.01)
    assert bar.bar.total == total


def test_live_counts_move_the_bar_and_the_end_corrects_it(data_dir, tmp_path):
    moving_clip(str(tmp_path / "a.mp4"), pick_faces(data_dir, 1), frames_each=6)
    init_ray(None)
    a, p = VideoItem(str(tmp_path / "a.mp4"), "a.mp4"), VideoItem("/x/p.jpg", "p.jpg")
    bar = FrameBar([a, p], show=True)
    bar.bar.fp = io.StringIO()
    _estimates_in(bar, 7)
    task, report = bar.reporter(["a.mp4"])
    report(4)                                   # the first report goes at once, as a worker's does
    ray.get(bar.board.snapshot.remote([task]))  # the board has handled it (calls from one caller keep order)
    bar.polled = 0
    bar.poll()
    assert (bar.bar.n, bar.bar.total) == (4, 7)
    bar.board.set.remote(task, 9)               # decoding went past the header's count: the total follows
    ray.get(bar.board.snapshot.remote([task]))
    bar.polled = 0
    bar.poll()
    assert (bar.bar.n, bar.bar.total) == (9, 10)
    bar.task_ended(task, {"a.mp4": 6})
    bar.file_done("a.mp4", 6)                   # what the file really had
    assert (bar.bar.n, bar.bar.total) == (6, 7)
    bar.estimates.put(("a.mp4", 50))            # a header read that comes in after the file finished
    bar.polled = 0
    bar.poll()
    assert (bar.bar.n, bar.bar.total) == (6, 7)
    photo_task, _ = bar.reporter(["p.jpg"])
    bar.task_ended(photo_task, {"p.jpg": 1})
    bar.file_done("p.jpg", 1)
    assert (bar.bar.n, bar.bar.total) == (7, 7) and bar.finished == 2
    bar.close()


def test_a_hidden_bar_starts_nothing():
    bar = FrameBar([VideoItem("/x/v.mp4", "v.mp4")], show=False)
    task, report = bar.reporter(["v.mp4"])
    assert report is None and bar.board is None and bar.estimate == {}
    bar.task_ended(task, {"v.mp4": 3})
    bar.file_done("v.mp4", 3)
    assert bar.finished == 1
    bar.close()
