"""The picture in the README's "Faces on their side": the bundled sample turned a quarter each way
with no rotation tag (a clip filmed sideways whose tag was lost), frame 60 read by `accurate`: no
face before the turned scans, her points now. Run from the repo:
`python docs/eval/quarter_turns_picture.py` -> docs/quarter_turns.png."""
import os
import tempfile

import av
import cv2
import numpy as np

from facetracks.jobs.bench_paths import SAMPLE
from facetracks.jobs.clips import write_video
from facetracks.models.draw import draw_landmarks
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.smoothing import table_ids, table_points

FRAME = 60
HERE = os.path.dirname(os.path.abspath(__file__))
with av.open(SAMPLE) as c:
    imgs = [f.to_ndarray(format="bgr24") for _, f in zip(range(FRAME + 1), c.decode(video=0))]
parts = load_profile("accurate")
panels = []
with tempfile.TemporaryDirectory() as work:
    for code, label in ((cv2.ROTATE_90_CLOCKWISE, "a quarter clockwise"), (cv2.ROTATE_90_COUNTERCLOCKWISE, "a quarter anticlockwise")):
        path = os.path.join(work, f"{code}.mp4")
        write_video(path, (cv2.rotate(i, code) for i in imgs), fps=24)
        t = annotate_video(path, "x", parts.detector, parts.predictor, parts.follow).table
        tid, fi = table_ids(t)
        img = cv2.rotate(imgs[FRAME], code)
        for r in np.flatnonzero((fi == FRAME) & (tid >= 0)):
            img = draw_landmarks(img, table_points(t)[r])
        img = np.ascontiguousarray(img[100:560])
        cv2.putText(img, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        panels.append(img)
cv2.imwrite(os.path.join(HERE, "..", "quarter_turns.png"), cv2.resize(np.hstack(panels), None, fx=0.75, fy=0.75))
