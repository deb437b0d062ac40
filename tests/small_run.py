"""One small real `facetracks annotate` run for the tests of what reads a finished run (report,
export): two faces side by side, a face then an empty scene (frames without a face), a text file
named .mp4 (a failed video), names with a space and a sub-folder."""
from __future__ import annotations

import os

import numpy as np

from facetracks.jobs.cli import main

from .clips import pick_faces, two_face_clip
from .conftest import face_canvas, write_video

NAMES = ("two faces.mp4", "sub/then_nothing.mp4", "notes.mp4")


def face_then_nothing(path: str, face, n_face: int = 6, n_empty: int = 4) -> None:
    img, _ = face_canvas(face.gray, face.points, at=(8, 4))
    write_video(path, [img] * n_face + [np.full_like(img, 110)] * n_empty)


def annotate_small_run(data_dir: str, src, out, *extra: str) -> int:
    """Write the inputs under `src`, annotate them into `out`; the command's exit status."""
    a, b, c = pick_faces(data_dir, 3)
    two_face_clip(str(src / NAMES[0]), a, b)
    os.makedirs(src / "sub", exist_ok=True)
    face_then_nothing(str(src / NAMES[1]), c)
    (src / NAMES[2]).write_text("not a video\n")
    return main(["annotate", str(src), "--out", str(out), *extra])
