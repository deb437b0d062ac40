"""What a flash and a change in part of the frame did to tracks, before and after `shots.py` told
them from scene cuts. Two clips made from the shared ones: the README sample with five flashes
(frames brightened ×1.7 + 40: three single, one double) and one mid-grey frame (a garbled
frame); and 2×2 tiles of four shared clips, 200 frames at 1280×720, whose bottom-right clip
ends at frame 72 (its tile turns black). Each annotated by both profiles (unsmoothed), with
the current rule and with the old one (every flagged frame a cut, every track ended), patched
back in. Run from the repo: `python docs/eval/cuts.py` writes docs/eval/cuts.json."""
import json, os, tempfile

import av
import cv2
import numpy as np

from facetracks.pipeline import shots
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import load_profile

HERE = os.path.dirname(os.path.abspath(__file__))
VIDEOS = os.path.join(HERE, "..", "..", "..", "shared", "videos")
SAMPLE = "pyfeat_WolfgangLanger_Pexels.mp4"
TILES = [SAMPLE, "liveportrait_driving_d6.mp4", "liveportrait_driving_d9.mp4", "pyfeat_single_face.mp4"]
FLASHES, GREY = (50, 150, 250, 251, 400), 350


def _writer(path: str, w: int, h: int, rate):
    out = av.open(path, "w")
    s = out.add_stream("libx264", rate=rate)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    return out, s


def _put(out, s, img) -> None:
    for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24") if img is not None else None):
        out.mux(p)


def flash_clip(path: str) -> None:
    with av.open(os.path.join(VIDEOS, SAMPLE)) as src:
        vs = src.streams.video[0]
        out, s = _writer(path, vs.width, vs.height, vs.average_rate)
        for i, f in enumerate(src.decode(video=0)):
            img = f.to_ndarray(format="bgr24")
            if i in FLASHES:
                img = np.clip(img.astype(np.float32) * 1.7 + 40, 0, 255).astype(np.uint8)
            if i == GREY:
                img[:] = 128
            _put(out, s, img)
        _put(out, s, None)
        out.close()


def tile_clip(path: str, n: int = 200, cell=(640, 360)) -> None:
    srcs = [av.open(os.path.join(VIDEOS, c)) for c in TILES]
    gens = [c.decode(video=0) for c in srcs]
    out, s = _writer(path, cell[0] * 2, cell[1] * 2, 25)
    for _ in range(n):
        tiles = []
        for g in gens:
            f = next(g, None)
            tiles.append(cv2.resize(f.to_ndarray(format="bgr24"), cell) if f is not None
                         else np.zeros((cell[1], cell[0], 3), np.uint8))
        _put(out, s, np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])]))
    _put(out, s, None)
    out.close()
    for c in srcs:
        c.close()


def run(path: str, profile: str, old: bool) -> dict:
    settle, changed = shots.Lookahead._settle, shots.Cut.changed
    if old:
        shots.Lookahead._settle = lambda self: None
        shots.Cut.changed = lambda self, sq, t: np.ones(len(sq), bool)
    try:
        parts = load_profile(profile)
        r = annotate_video(path, os.path.basename(path), parts.detector, parts.predictor, parts.follow)
    finally:
        shots.Lookahead._settle, shots.Cut.changed = settle, changed
    df = r.table.to_pandas()
    df = df[df.track_id.notna()]
    return {"cuts": r.stats.cuts, "transients": r.stats.transients, "track_ids": int(df.track_id.nunique()),
            "faces": len(df)}


def main() -> None:
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = {"flashes": os.path.join(tmp, "flashes.mp4"), "tiles_2x2": os.path.join(tmp, "tiles.mp4")}
        flash_clip(clips["flashes"])
        tile_clip(clips["tiles_2x2"])
        for name, path in clips.items():
            for profile in ("accurate", "fast"):
                res[f"{name}/{profile}"] = {"before": run(path, profile, True), "now": run(path, profile, False)}
                print(name, profile, res[f"{name}/{profile}"])
    with open(os.path.join(HERE, "cuts.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
