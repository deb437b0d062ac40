"""`facetracks report` and `annotate --report` on a real run: the page parses, names every video of
the summary with the numbers of its track file, every image it shows exists, and a real headless
Chromium opens it from disk without a console error and draws something."""
from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from facetracks.jobs.cli import main
from facetracks.jobs.report_charts import timeline_chart
from facetracks.jobs.report_data import lowest_score_rows, read_summary, spaced_frames

from .browser import find_chromium, load_page
from .small_run import NAMES, annotate_small_run


class Page(HTMLParser):
    """What the tests look at: image sources, the summary table's rows, all text."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.rows, self.text, self._row, self._cell = [], [], [], None, None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    src, out = tmp_path_factory.mktemp("in"), tmp_path_factory.mktemp("out")
    return src, out, annotate_small_run(data_dir, src, out, "--report")


def _page(out) -> Page:
    return Page((out / "report.html").read_text(encoding="utf-8"))


def test_annotate_report_names_every_video_with_its_numbers(run):
    src, out, code = run
    assert code == 1                                  # notes.mp4 failed; the report is still written
    page = _page(out)
    videos = read_summary(str(out))["videos"]
    rows = {r[0]: r for r in page.rows}
    assert set(rows) == set(videos) == set(NAMES)
    assert rows["notes.mp4"][1] == "failed" and "not a readable video" in rows["notes.mp4"][-1]
    for name in ("two faces.mp4", "sub/then_nothing.mp4"):
        df = pq.read_table(out / (name + ".parquet")).to_pandas()
        faces = df[df.track_id.notna()]
        status, frames, share, tracks, score, fps = rows[name][1:7]
        assert status == "ok" and int(frames) == df.frame_index.nunique()
        assert float(share.rstrip(" %")) == pytest.approx(100 * faces.frame_index.nunique() / int(frames), abs=0.06)
        assert int(tracks) == faces.track_id.nunique()
        assert float(score) == pytest.approx(faces.score.mean(), abs=6e-4)
        assert float(fps) == videos[name]["fps"]
    assert int(rows["two faces.mp4"][4]) == 2 and float(rows["sub/then_nothing.mp4"][3].rstrip(" %")) == 60.0


def test_every_image_exists_and_shows_what_it_says(run):
    _, out, _ = run
    page = _page(out)
    assert page.images and not any(s.startswith(("/", "http", "file:")) for s in page.images)
    for s in page.images:
        img = cv2.imread(str(out / s))
        assert img is not None and img.std() > 1, s      # a real, non-uniform picture
    per_video = {os.path.dirname(s) for s in page.images}
    assert len(per_video) == 2                            # the failed video has none
    names = {os.path.basename(s) for s in page.images}
    assert {"timeline.png", "score.png", "frame_0.png", "low_0.png"} <= names
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def test_report_without_the_source_video_says_so(run, tmp_path):
    src, out, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    moved = tmp_path / "elsewhere.mp4"
    os.rename(src / "two faces.mp4", moved)
    try:
        assert main(["report", str(copy)]) == 0
    finally:
        os.rename(moved, src / "two faces.mp4")
    page = _page(copy)
    text = " ".join(page.text)
    assert "is not reachable from here" in text and "two faces.mp4" in text
    v = [s for s in page.images if "frame_" in s or "low_" in s]
    assert {os.path.dirname(s) for s in v} == {"report/v001"}        # only the other video's frames
    assert all((copy / s).exists() for s in page.images)


def test_past_videos_n_only_those_most_worth_a_look_get_pictures(run, tmp_path):
    """A run of 10,000 videos made 10,000 sections. With `--videos 1` every video keeps its row,
    and only the one with the lowest mean score (no failed one: it has nothing to picture) gets
    pictures and a link from its row."""
    _, out, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    assert main(["report", str(copy), "--videos", "1"]) == 0
    page = _page(copy)
    names = sorted(read_summary(str(copy))["videos"])
    assert sorted(r[0] for r in page.rows) == names
    means = {n: pq.read_table(copy / (n + ".parquet")).to_pandas().score.mean() for n in names if n != "notes.mp4"}
    lowest = names.index(min(means, key=means.get))
    assert {os.path.dirname(s) for s in page.images} == {f"report/v{lowest:03d}"}
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert html.count('href="#v') == 1 and "Pictures for 1 of the 3 videos, those most worth a look" in html
    assert sorted(os.listdir(copy / "report")) == [f"v{lowest:03d}"]


def test_track_files_of_an_earlier_run_into_the_same_folder_are_reported(run, tmp_path):
    """The summary is the last run's: after `annotate A --out X` then `annotate B --out X` it
    lists only B, and the report used to show only B. A track file it does not list is reported
    as `earlier`, with its numbers and pictures."""
    _, out, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    summary = json.loads((copy / "_summary.json").read_text())
    del summary["videos"]["two faces.mp4"]                      # as a later run over other inputs leaves it
    (copy / "_summary.json").write_text(json.dumps(summary))
    assert main(["report", str(copy)]) == 0
    page = _page(copy)
    rows = {r[0]: r for r in page.rows}
    assert set(rows) == set(NAMES) and rows["two faces.mp4"][1] == "earlier" and int(rows["two faces.mp4"][4]) == 2
    assert "1 from earlier runs" in " ".join(page.text)
    assert any(s.startswith("report/v002/") for s in page.images)   # sorted: notes, sub/then_nothing, two faces


def test_a_folder_without_a_run_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "_summary.json: no such file" in err
    for text, said in (("[]", "not a facetracks run summary"), ("{", "cannot read the run summary")):
        (tmp_path / "_summary.json").write_text(text)        # edited by hand ([] was a traceback)
        assert main(["report", str(tmp_path)]) == 2
        assert said in capsys.readouterr().err


def test_chromium_opens_the_report_without_errors(run):
    """The one test that needs a browser: skipped off-CI without Chromium, failed in CI."""
    exe = find_chromium()
    if not exe:
        if os.environ.get("FACETRACKS_REQUIRE_SHARED"):
            pytest.fail("Chromium is missing and FACETRACKS_REQUIRE_SHARED is set (CI): .ci/setup installs it")
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium); the browser check needs one")
    _, out, _ = run
    shot = load_page((out / "report.html").as_uri(), chromium=exe)
    assert shot.errors == [] and shot.broken_images == []
    img = cv2.imdecode(np.frombuffer(shot.png, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (1300, 1000)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 500     # not a blank page


def test_the_browser_check_can_fail(tmp_path):
    """The same check on a page with a missing image, a console error and an exception reports all
    three: an empty error list above means something."""
    exe = find_chromium()
    if not exe:
        pytest.skip("no Chromium on PATH")
    (tmp_path / "bad.html").write_text('<img src="missing.png"><script>console.error("boom"); nope();</script>')
    shot = load_page((tmp_path / "bad.html").as_uri(), width=200, height=100, chromium=exe)
    joined = "\n".join(shot.errors)
    assert "boom" in joined and "nope" in joined and "ERR_FILE_NOT_FOUND" in joined
    assert len(shot.broken_images) == 1 and shot.broken_images[0].endswith("missing.png")


def test_frames_are_spread_and_lowest_scores_kept_apart():
    faces = pd.DataFrame({"frame_index": np.r_[10:50, 80:100], "score": np.linspace(0.2, 0.9, 60)})
    assert spaced_frames(faces, 100, 5) == [10, 25, 49, 80, 99]      # 0 and 75 move to a face
    low = lowest_score_rows(faces, 3, min_gap=10)
    assert low.frame_index.tolist() == [10, 20, 30]


def test_worth_a_look_puts_no_face_first_then_the_lowest_score():
    from facetracks.jobs.report_data import VideoReport, worth_a_look
    videos = [VideoReport("a", "ok", mean_score=0.9), VideoReport("b", "failed", error="x"),
              VideoReport("c", "ok", mean_score=0.5), VideoReport("d", "ok", note="cannot read the track file"),
              VideoReport("e", "skipped", mean_score=None), VideoReport("f", "ok", mean_score=0.7)]
    assert worth_a_look(videos, 6) == [0, 1, 2, 3, 4, 5]       # all of them, up to n
    assert worth_a_look(videos, 2) == [2, 4]                    # no face (e), then the lowest score (c)
    assert worth_a_look(videos, 3) == [2, 4, 5]
    assert worth_a_look(videos, 5) == [0, 2, 4, 5]              # never the failed one or the unreadable one


def test_timeline_gives_many_tracks_one_shared_lane():
    faces = pd.DataFrame({"track_id": np.arange(30) % 15, "time_s": np.arange(30) / 10.0})
    few = timeline_chart(faces[faces.track_id < 3], 3.0)
    many = timeline_chart(faces, 3.0)
    assert many.shape[0] - few.shape[0] == (13 - 3) * 14       # 12 lanes of their own + "3 more"


@pytest.mark.parametrize("how, said", [
    ({"interrupted": True}, "the run was interrupted"),
    ({"stopped": "the output is full: writing x.parquet failed (No space left on device)"},
     "the run stopped (the output is full"),
])
def test_a_run_that_did_not_finish_is_reported_as_such(run, tmp_path, capsys, how, said):
    """An interrupted run's summary (`"interrupted": true`) was reported as "3 videos: 2 ok, 0
    skipped, 1 failed" and `report: …/report.html`, as if the run had done every video."""
    _, out, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    summary = json.loads((copy / "_summary.json").read_text())
    (copy / "_summary.json").write_text(json.dumps({**summary, **how}))
    assert main(["report", str(copy)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"report: {copy / 'report.html'}; {said}") and "again does the rest" in line
    assert len(line.splitlines()) == 1
    page = (copy / "report.html").read_text()                  # the page says it too, at its top
    assert f'<p class="failed">{said[0].upper()}{said[1:]}' in page.split("<table>")[0]
    assert main(["report", str(out)]) == 0
    assert "; the run" not in capsys.readouterr().out          # a run that finished: the path alone


def test_a_file_uri_with_a_space_is_the_local_folder(run, tmp_path, capsys):
    """`file:///tmp/a b` (annotate --out takes it) was pyarrow's "Cannot parse URI" traceback."""
    _, out, _ = run
    copy = tmp_path / "a run #1"
    shutil.copytree(out, copy)
    assert main(["report", f"file://{copy}"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {copy / 'report.html'}"
    from facetracks.jobs.cli import build_parser
    from facetracks.jobs.outputs import local_folder
    given = build_parser().parse_args(["annotate", "x", "--out", f"file://{copy}"]).out      # where annotate writes
    assert local_folder(given) == str(copy)
