"""The driver's bookkeeping that needs no Ray: what a skipped video's summary entry keeps."""
from facetracks.jobs.inputs import VideoItem
from facetracks.jobs.ray_runner import RunOptions, _skipped


def test_a_skipped_video_keeps_its_record_but_never_an_old_failure():
    opt = RunOptions(out_dir="o", weights=None, model_id="m", detector={}, follow={}, predictor={})
    before = {"status": "ok", "frames": 3, "faces": 2, "written_by": "run-1", "error": "old",
              "render": {"status": "failed", "error": "muxer said no"}}
    e = _skipped(before, VideoItem("/in/a.mp4", "a.mp4"), opt)
    assert e["status"] == "skipped" and e["frames"] == 3 and e["written_by"] == "run-1"
    assert "error" not in e and "render" not in e        # this run renders nothing: no old render either
    # skipped with a render asked for: the render is current (its key was read), so the entry names
    # it, never an earlier run's failure nor another filter's render
    opt.render = {"name": "sunglasses"}
    this = {"status": "ok", "output": "o/a.mp4.sunglasses.mp4"}
    assert _skipped(before, VideoItem("/in/a.mp4", "a.mp4"), opt)["render"] == this
    before["render"] = {"status": "ok", "output": "o/a.mp4.landmarks.mp4", "audio": "copied aac"}
    assert _skipped(before, VideoItem("/in/a.mp4", "a.mp4"), opt)["render"] == this
    before["render"] = {**this, "audio": "copied aac"}          # the run that wrote this render: its record
    assert _skipped(before, VideoItem("/in/a.mp4", "a.mp4"), opt)["render"] == before["render"]
    before["render"] = {**this, "output": "/abs/o/a.mp4.sunglasses.mp4", "audio": "copied aac"}   # --out spelt apart
    assert _skipped(before, VideoItem("/in/a.mp4", "a.mp4"), opt)["render"] == {**this, "audio": "copied aac"}
