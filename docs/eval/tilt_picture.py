"""The picture in the README's "Tilted heads": the bundled sample turned 45 degrees about her face
(held after a 120-frame ramp, her hand having passed over her face), one frame read by `accurate`
as it was before turned crops (left) and now (right). Run from the repo:
`python docs/eval/tilt_picture.py` -> docs/tilted_head.png."""
import os
import tempfile

import av
import cv2
import numpy as np

import facetracks.models.crop as crop
import facetracks.models.inference as inference
import facetracks.pipeline.follow as follow
from facetracks.jobs.bench_paths import SAMPLE
from facetracks.jobs.clips import write_video
from facetracks.models.draw import draw_landmarks
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.smoothing import table_ids, table_points

FRAME = 165
HERE = os.path.dirname(os.path.abspath(__file__))
with av.open(SAMPLE) as c:
    imgs = [f.to_ndarray(format="bgr24") for _, f in zip(range(FRAME + 1), c.decode(video=0))]
mats = [cv2.getRotationMatrix2D((447.0, 221.0), 45 * min(1.0, i / 120), 1.0) for i in range(FRAME + 1)]
turned = [cv2.warpAffine(i, m, (640, 360), borderMode=cv2.BORDER_REPLICATE) for i, m in zip(imgs, mats)]
parts = load_profile("accurate")
panels = []
with tempfile.TemporaryDirectory() as work:
    path = os.path.join(work, "tilt45.mp4")
    write_video(path, turned, fps=24)
    for before in (True, False):
        f = (lambda p: crop.square_along_face(p, zone=np.pi)) if before else crop.square_along_face
        inference.square_along_face = follow.square_along_face = f
        t = annotate_video(path, "x", parts.detector, parts.predictor, parts.follow).table
        tid, fi = table_ids(t)
        with av.open(path) as c:
            img = next(fr.to_ndarray(format="bgr24") for k, fr in enumerate(c.decode(video=0)) if k == FRAME)
        rows = np.flatnonzero((fi == FRAME) & (tid >= 0))
        for r in rows:
            img = draw_landmarks(img, table_points(t)[r])
        label = ("before: no face" if not len(rows) else "before") if before else "turned crops"
        img = np.ascontiguousarray(img[:, 120:600])
        cv2.putText(img, label, (12, 32), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
        panels.append(img)
cv2.imwrite(os.path.join(HERE, "..", "tilted_head.png"), cv2.resize(np.hstack(panels), None, fx=0.75, fy=0.75))
