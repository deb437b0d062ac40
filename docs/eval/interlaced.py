"""Whether interlaced video needs deinterlacing before landmarks: a talking head with strong motion
(the shared `liveportrait_driving_d6.mp4`), frames paired into woven frames (even lines of one,
odd lines of the next, as a 50i camera records), read by `accurate` against the mean of the two
frames' own points; beside it the first frame alone, one field line-doubled (bob) and a 50/50
blend of the two frames. Prints the mean distance in % of the inter-ocular distance.
Run from the repo: `python docs/eval/interlaced.py` (about a minute on 2 cores)."""
import os, tempfile
import av, numpy as np, cv2
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.schema import points_from_columns
src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "videos", "liveportrait_driving_d6.mp4")
fr = [f.to_ndarray(format="gray") for f in av.open(src).decode(video=0)][:400]
def write(path, frames):
    o = av.open(path, "w"); s = o.add_stream("libx264", rate=25); h, w = frames[0].shape
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"; s.options = {"crf": "12", "bf": "0"}
    for i, g in enumerate(frames):
        f = av.VideoFrame.from_ndarray(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), format="bgr24"); f.pts = i
        for p in s.encode(f): o.mux(p)
    for p in s.encode(): o.mux(p)
    o.close()
n = len(fr) // 2
TMP = tempfile.mkdtemp()
A0 = [fr[2 * k] for k in range(n)]; A1 = [fr[2 * k + 1] for k in range(n)]
B = []
for k in range(n):
    w = A0[k].copy(); w[1::2] = A1[k][1::2]; B.append(w)
C = []
for b in B:
    e = b[0::2].astype(np.float32)
    up = cv2.resize(e, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_LINEAR)
    C.append(np.clip(up, 0, 255).astype(np.uint8))
D = [cv2.addWeighted(a, 0.5, b, 0.5, 0) for a, b in zip(A0, A1)]   # the blend a progressive camera would see mid-way
for name, frames in (("a0", A0), ("a1", A1), ("weave", B), ("bob", C), ("blend", D)):
    write(os.path.join(TMP, name + ".mp4"), frames)
parts = load_profile("accurate")
P = {}
for name in ("a0", "a1", "weave", "bob", "blend"):
    df = annotate_video(os.path.join(TMP, name + ".mp4"), name, parts.detector, parts.predictor, parts.follow).table.to_pandas()
    df = df[df.track_id.notna()].groupby("frame_index").first()
    P[name] = {i: points_from_columns(df.loc[[i]])[0] for i in df.index}
common = set.intersection(*[set(p) for p in P.values()])
ref = {i: (P["a0"][i] + P["a1"][i]) / 2 for i in common}
iod = {i: np.linalg.norm(ref[i][36:42].mean(0) - ref[i][42:48].mean(0)) for i in common}
motion = np.array([np.linalg.norm(P["a0"][i] - P["a1"][i], axis=1).mean() / iod[i] for i in sorted(common)])
for name in ("a0", "weave", "bob", "blend"):
    e = np.array([np.linalg.norm(P[name][i] - ref[i], axis=1).mean() / iod[i] for i in sorted(common)])
    fast = motion > np.percentile(motion, 75)
    print(f"{name:6s} frames {len(e)} dev from mid-way ref: mean {e.mean()*100:.2f} %IOD, on the fastest quarter {e[fast].mean()*100:.2f} %, faces {len(P[name])}")
print("inter-frame motion: mean %.2f %% IOD, 75th pct %.2f" % (motion.mean() * 100, np.percentile(motion, 75) * 100))
