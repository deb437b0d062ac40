"""The Python API, used as a user would: from a folder holding its own models.py, pipeline.py, jobs.py."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq

from facetracks.training.metrics import nme

from .clips import moving_clip, pick_faces

SHADOWS = ("models", "pipeline", "jobs", "training")


def test_import_facetracks_from_a_folder_with_its_own_models_pipeline_jobs(tmp_path, data_dir):
    clip = moving_clip(str(tmp_path / "clip.mp4"), pick_faces(data_dir, 2), frames_each=4)
    work = tmp_path / "project"
    work.mkdir()
    for name in SHADOWS:   # a user's own modules: importing any of them is the bug
        (work / f"{name}.py").write_text(f"raise ImportError('the user\\'s {name}.py was imported')\n")
    script = textwrap.dedent(f"""
        import json, facetracks
        tracks = facetracks.annotate_video({clip.path!r}, "fast")
        tracks.to_parquet("tracks.parquet")
        st = facetracks.render_video({clip.path!r}, tracks, "clip.sunglasses.mp4")
        back = facetracks.read_tracks("tracks.parquet")
        print(json.dumps({{"rows": len(back), "frames": st.frames, "with_faces": st.frames_with_faces,
                          "api": sorted(dir(facetracks))}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"annotate_video", "load_profile", "render_video", "read_tracks"} <= set(out["api"])
    assert out["frames"] == len(clip.truth) == out["rows"]          # one row per frame: one face each
    assert out["with_faces"] == len(clip.truth)
    df = pq.read_table(work / "tracks.parquet").to_pandas().sort_values("frame_index")
    assert df["frame_index"].tolist() == list(range(len(clip.truth)))
    pts = np.stack([df[[f"x_{i}", f"y_{i}"]].to_numpy(np.float32) for i in range(68)], axis=1)
    errs = [nme(p, t[0]) for p, t in zip(pts, clip.truth)]
    assert max(errs) < 0.10, errs


def test_the_installed_packages_are_under_one_name():
    import facetracks.jobs.cli
    import facetracks.models.registry
    for top in SHADOWS:
        assert top not in sys.modules, f"a top-level {top!r} module was imported"
    assert facetracks.models.registry.default_weights().endswith(".pt")


def test_a_photo_is_one_frame_and_renders_as_a_photo(tmp_path, data_dir):
    import cv2

    import facetracks
    from .conftest import face_canvas
    face = pick_faces(data_dir, 1)[0]
    img, truth = face_canvas(face.gray, face.points, at=(10, 6))
    cv2.imwrite(str(tmp_path / "still.png"), img)
    tracks = facetracks.annotate_video(tmp_path / "still.png")
    assert tracks["frame_index"].tolist() == [0] and tracks["time_s"].tolist() == [0.0]
    pts = np.stack([tracks[[f"x_{i}", f"y_{i}"]].to_numpy(np.float32)[0] for i in range(68)])
    assert nme(pts, truth) < 0.10
    st = facetracks.render_video(tmp_path / "still.png", tracks, tmp_path / "still.sunglasses.jpg")
    out = cv2.imread(str(tmp_path / "still.sunglasses.jpg"))
    assert (st.frames, st.frames_with_faces) == (1, 1) and out.shape == img.shape
    eyes = pts[36:48].mean(axis=0).astype(int)      # sunglasses drawn over the eyes, not elsewhere
    assert np.abs(out[eyes[1], eyes[0]].astype(int) - img[eyes[1], eyes[0]]).max() > 40
    assert np.abs(out[-3:, -3:].astype(int) - img[-3:, -3:]).max() < 8
