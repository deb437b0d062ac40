"""The torch cascade (GPU actors; run here on the CPU) under ChangeScan: detector calls before
(every round a whole scan) and after (a round with no change outside the followed faces skipped),
with the faces and ids each run writes. Usage: python docs/eval/torch_skip.py CLIP..."""
import sys, time, torch
torch.set_num_threads(2)
from facetracks.pipeline.profiles import get_profile, build_parts
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline import change_scan
orig = change_scan.ChangeScan._rects
for prof in ("accurate", "fast"):
    P = get_profile(prof)
    parts = build_parts(prof, P.model, dict(P.detector, backend="torch"), P.follow, P.predictor, "cpu")
    for clip in sys.argv[1:]:
        res = {}
        for name, rects in (("old", lambda self, *a: None), ("new", orig)):
            change_scan.ChangeScan._rects = rects
            t = time.perf_counter()
            r = annotate_video(clip, "x", parts.detector, parts.predictor, parts.follow)
            dt = time.perf_counter() - t
            df = r.table.select(["frame_index", "track_id", "x"]).to_pandas().dropna()
            st = r.stats
            res[name] = (st.detections - st.skipped_scans, len(df), df.track_id.nunique(), dt)
        print(prof, clip.split('/')[-1][:24], "detector calls old/new", res["old"][0], res["new"][0], "faces", res["old"][1], res["new"][1], "ids", res["old"][2], res["new"][2], flush=True)
