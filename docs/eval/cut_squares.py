"""How much a face's square changes between two frames of one shot, and between two different
people: the numbers behind `shots.Cut.changed` (a scene cut ends only the tracks whose faces it
changed). Six shared clips, one face each, annotated by the default profile (unsmoothed); per
frame, the face's square (its core, as `Cut.changed` reads it) compared with the same square of
the frame before; every 20th frame's square compared with every other clip's. Run from the repo:
`python docs/eval/cut_squares.py` writes docs/eval/cut_squares.json."""
import json, os

import av
import numpy as np

from facetracks.api import annotate_video
from facetracks.pipeline.shots import SQUARE_CORE, _samples

HERE = os.path.dirname(os.path.abspath(__file__))
VIDEOS = os.path.join(HERE, "..", "..", "..", "shared", "videos")
CLIPS = ["pyfeat_WolfgangLanger_Pexels.mp4", "liveportrait_driving_d6.mp4", "liveportrait_driving_d9.mp4",
         "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", "liveportrait_source_s18.mp4", "liveportrait_driving_d0.mp4"]
PCT = [50, 90, 99, 99.9, 100]


def squares(df):
    """frame -> (cx, cy, side) of its face: the square around the landmarks' box."""
    side = np.maximum(df.w, df.h)
    return {int(f): np.array([x + w / 2, y + h / 2, s]) for f, x, y, w, h, s in
            zip(df.frame_index, df.x, df.y, df.w, df.h, side)}


def main() -> None:
    moves = {"mean": [], "median": []}
    across = {"mean": [], "median": []}
    samples = {}
    for name in CLIPS:
        path = os.path.join(VIDEOS, name)
        df = annotate_video(path, smooth=False)
        sq = squares(df[df.track_id.notna()].drop_duplicates("frame_index"))
        prev, kept = None, []
        with av.open(path) as c:
            for i, fr in enumerate(c.decode(video=0)):
                g = fr.to_ndarray(format="gray")
                if i in sq:
                    if prev is not None:
                        d = np.abs(_samples(g, sq[i]) - _samples(prev, sq[i]))
                        moves["mean"].append(float(d.mean()))
                        moves["median"].append(float(np.median(d)))
                    if i % 20 == 0:
                        kept.append(_samples(g, sq[i]))
                prev = g
        samples[name] = kept
    names = list(samples)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            for p in samples[names[a]]:
                for q in samples[names[b]]:
                    d = np.abs(p - q)
                    across["mean"].append(float(d.mean()))
                    across["median"].append(float(np.median(d)))
    out = {"clips": CLIPS, "square_core": SQUARE_CORE,
           "one_shot_next_frame": {k: {"n": len(v), "percentiles": dict(zip(map(str, PCT), np.percentile(v, PCT).round(1).tolist()))}
                                   for k, v in moves.items()},
           "different_people": {k: {"n": len(v), "percentiles": dict(zip(map(str, [0.1, 1, 10, 50]),
                                                                        np.percentile(v, [0.1, 1, 10, 50]).round(1).tolist()))}
                                for k, v in across.items()}}
    print(json.dumps(out, indent=1))
    with open(os.path.join(HERE, "cut_squares.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
