"""`facetracks bench`: throughput of the annotate path against its floor (decode only) and the
seed-style naive path, measured side by side in one run on the same files: by default the
bundled sample, synthetic 640x480 and 1280x720 clips made from it (a hand over the face again and
again), and a 640x480 clip made from a real talking head without one (REAL_SOURCE, from the
shared clips when they are there).

Paths measured per video:
- decode: PyAV decode to upright gray (Y plane), nothing else — the floor of this pipeline.
- one row per annotate profile (accurate, fast): what `annotate --profile P` runs per video
  (decode -> detect/follow -> keypoints -> Parquet), in-process, one actor's worth of work.
- naive: the seed's way — BGR conversion, Haar on every full-size frame, one face per model call
  (the accurate model), no refinement.
Each video's paths run `--repeat` rounds (default 3), interleaved, and each path's fastest round is
its row (every round's fps is in the JSON): on a shared or throttled machine a single pass put the
same path 15-25 % apart between two runs minutes apart, more than the differences measured.
- dlib: the usual CPU peer — dlib's HOG detector (upsample 0 by default: its fastest; --dlib-upsample) and its
  68-point ERT shape predictor on every frame. Needs the `peers` extra (pip install -e '.[peers]');
  without it the row is skipped (null in the JSON, with the reason).
Accuracy: on a clip made from labelled YTF-68 identity-test images (when ../shared is there),
NME of each profile as it runs (following faces) and with the detector on every frame.
Steadiness: jitter (median over a clip of each point's distance from the midpoint of its two
neighbours, over the inter-ocular distance) of every video's tracks, raw and smoothed; and on
"moving stills" (labelled faces moved along known smooth paths, jobs/steady.py) NME and jitter
raw vs smoothed beside the truth's own jitter: a smoother that lags shows as a higher NME.
Memory: peak RSS of the default profile on a clip and on the same clip ten times longer, each in
a fresh process.

With --actors: instead of the above, the whole Ray annotate job per actor count (`N` or `N:G`, G
the GPU share of each of the N actors), on the synthetic minute or on a corpus (--corpus K
--corpus-seconds S: K 640x480 clips of S s from different real clips); per run fps, fps per GPU,
steady fps (actor start-up left out), GPU utilisation and memory (nvidia-smi, sampled), the
actors' batching counters; and beside it each profile's NME on the labelled truth clip.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile

import av
import cv2
import torch

from facetracks.pipeline.profiles import DETECTOR_BACKENDS, PROFILES, build_parts, get_profile, load_profile, make_detector
from facetracks.pipeline.smoothing import SmoothParams

from .argtypes import positive_int, smooth
from .bench_job import CLIPS, make_corpus, scaling
from .bench_paths import SAMPLE, decode_only, dlib_missing, dlib_path, full_path, naive_path, synthetic_clip
from .benchmarks import DATA, accuracy, peak_rss_mb, truth_clip
from .clips import pick_faces
from .steady import moving_stills, steadiness


REAL_SOURCE = "liveportrait_driving_d6.mp4"   # one face, strong expressions and head turns, no hand


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure throughput: decode-only vs full vs naive", description=__doc__)
    p.add_argument("videos", nargs="*", help="videos (default: the bundled sample + synthetic 640x480, 1280x720, and "
                                             "a real 640x480 clip from --clips-from when it is there)")
    p.add_argument("--json", default="bench.json", help="where to write the results (default %(default)s)")
    p.add_argument("--frames", type=int, default=240, help="frames of each synthetic clip (default %(default)s)")
    p.add_argument("--naive-frames", type=int, default=120, help="frames the (slow) naive path runs on (default %(default)s)")
    p.add_argument("--repeat", type=positive_int, default=3,
                   help="rounds over every path of a video, interleaved; each path's fastest round is reported "
                        "(its fps in every round too): a busy or throttled moment costs one round, not the row")
    p.add_argument("--dlib-upsample", type=int, default=0,
                   help="dlib HOG upsampling: 0 (default, its fastest), 1 (face_recognition's default, finds smaller faces)")
    p.add_argument("--dlib-frames", type=int, default=240,
                   help="frames the dlib path runs on, when dlib is installed (the `peers` extra; default %(default)s)")
    p.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES),
                   help="annotate profiles to measure (default: all)")
    p.add_argument("--actors", default=None, metavar="N[:G],M[:G],...",
                   help="instead of the table: scaling of the Ray annotate job over these actor counts "
                        "(N:G: N actors with a GPU share of G each, e.g. 1:1,4:0.25)")
    p.add_argument("--address", default=None, help="Ray cluster for --actors (default: start Ray here)")
    p.add_argument("--segment-seconds", type=float, default=4.0, help="segment length for --actors runs (default %(default)g)")
    p.add_argument("--gpus-per-actor", type=float, default=None,
                   help="for --actors runs: GPU share of each actor (0.25: four per GPU; default 1 with GPUs)")
    p.add_argument("--streams", type=int, default=0,
                   help="for --actors runs: streams each actor follows at once (0: the runner's choice)")
    p.add_argument("--stage-server", action="store_true",
                   help="for --actors runs: the network in one process per GPU, fed by the actors on CPUs (annotate --stage-server)")
    p.add_argument("--corpus", type=int, default=0, metavar="K",
                   help="for --actors runs: K 640x480 clips made from different real clips (0: the synthetic minute)")
    p.add_argument("--corpus-seconds", type=float, default=0, metavar="S",
                   help="length of each --corpus clip (default 60)")
    p.add_argument("--clips-from", default=CLIPS, metavar="DIR",
                   help="real clips for --corpus besides the bundled sample (those with no face are skipped), and the "
                        f"source of the default run's real 640x480 clip ({REAL_SOURCE})")
    p.add_argument("--data", default=DATA, metavar="DIR", help="the labelled YTF-68 data for the NME checks")
    p.add_argument("--detector", default=None, choices=DETECTOR_BACKENDS,
                   help="detector backend for --actors runs and their NME check (default: auto, torch on CUDA "
                        "actors; torch wherever OpenCV has no Haar)")
    p.add_argument("--smooth", type=smooth, default=SmoothParams(),
                   help="smoother whose jitter is reported beside the raw points' (default: annotate's)")
    p.add_argument("--moving-stills", type=int, default=8, metavar="N",
                   help="labelled stills on smooth paths for the NME/jitter-with-smoothing check (0: skip; default %(default)s)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS comparison")
    p.add_argument("--no-accuracy", action="store_true", help="skip the NME comparisons (truth clip, moving stills)")
    p.set_defaults(func=run)


def parse_counts(text: str) -> list[tuple[int, float | None]]:
    """"1,4" or "1:1,4:0.25" -> [(actors, GPU share of each or None)]."""
    out = []
    for part in (x.strip() for x in text.split(",")):
        if part:
            n, _, g = part.partition(":")
            out.append((int(n), float(g) if g else None))
    if not out or any(n < 1 for n, _ in out):
        raise ValueError(f"--actors {text!r}: expected N or N:G, N >= 1, comma-separated")
    return out


def _dlib_version() -> str:
    import dlib
    return getattr(dlib, "__version__", "?")


def _fastest(runs: list[dict]) -> dict:
    """The fastest of a path's rounds, with every round's fps beside it (`fps_rounds`)."""
    out = dict(max(runs, key=lambda r: r["fps"]))
    out["fps_rounds"] = [r["fps"] for r in runs]
    return out


def _f(x, fmt: str, width: int) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:{width}{fmt}}"


def run_scaling(args: argparse.Namespace) -> int:
    counts = parse_counts(args.actors)
    # OpenCV 5 has no Haar: then the torch evaluation of the same cascade, unless told otherwise
    backend = args.detector or (None if hasattr(cv2, "CascadeClassifier") else "torch")
    cuda = torch.cuda.is_available()        # (no CUDA context here before the runs: the GPU is the actors')
    res = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "opencv": cv2.__version__, "av": av.__version__, "gpu": None},
           "options": {"actors": args.actors, "streams": args.streams, "stage_server": args.stage_server, "segment_seconds": args.segment_seconds,
                       "gpus_per_actor": args.gpus_per_actor, "detector_backend": backend or "auto"},
           "scaling": {}}

    def dump() -> None:                      # after each step, so that a run stopped half-way leaves what it measured
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    with tempfile.TemporaryDirectory() as work:
        if args.corpus:
            if args.videos:
                raise SystemExit("bench: give videos or --corpus, not both")
            seconds = args.corpus_seconds or 60.0
            # which clips have a face: a cheap look (the fast profile's settings), on the CPU
            look = make_detector({**get_profile("fast").detector, "backend": backend or "auto"}, "cpu")
            corpus = make_corpus(work, args.corpus, seconds, args.clips_from, look)
            videos = [f.pop("path") for f in corpus["files"]]
            res["corpus"] = corpus
            print(f"corpus: {len(videos)} clips x {seconds:g} s, {corpus['frames']} frames, written in "
                  f"{corpus['write_seconds']:.1f} s, from " + ", ".join(f["source"] for f in corpus["files"])
                  + (f"; no face: {', '.join(corpus['sources_without_face'])}" if corpus["sources_without_face"] else ""))
        else:
            # default: a minute of 640x480 video, so that actor start-up is a small part of the time
            videos = args.videos or [synthetic_clip(os.path.join(work, "minute_640x480.mp4"), (640, 480), args.frames, repeat=6)]
        head = (f"{'profile':9} {'actors':>6} {'gpu/a':>5} {'strm':>4} {'frames':>7} {'seconds':>8} {'fps':>8} {'steady':>8} "
                f"{'fps/gpu':>8} {'eff':>5} {'util%':>5} {'p90%':>5} {'memMB':>6} {'det':>5} {'lmk':>5} {'wait':>5} {'idle':>5} "
                f"{'crops':>6} {'cpu%':>5} {'cpu/f':>6}  device")
        print(head)
        for name in args.profiles:
            prof = get_profile(name)
            det = {**prof.detector, "backend": backend} if backend else None
            sc = res["scaling"][name] = {"profile": name, "runs": []}

            def row(r: dict, name: str = name) -> None:
                res["scaling"][name]["runs"].append(r)
                share = r["stage_share"] or {}
                print(f"{name:9} {r['actors']:6d} {_f(r['gpus_per_actor'], '.2f', 5)} {_f(r['streams'], 'd', 4)} {r['frames']:7d} {r['seconds']:8.1f} "
                      f"{r['fps']:8.1f} {_f(r['steady_fps'], '.1f', 8)} {r['fps_per_gpu']:8.1f} {r['efficiency']:5.2f} "
                      f"{_f(r['gpu_util_mean'], '.0f', 5)} {_f(r['gpu_util_p90'], '.0f', 5)} {_f(r['gpu_mem_peak_mb'], '.0f', 6)} "
                      f"{_f(share.get('detect'), '.2f', 5)} {_f(share.get('landmarks'), '.2f', 5)} "
                      f"{_f(share.get('waiting'), '.2f', 5)} {_f(share.get('idle'), '.2f', 5)} "
                      f"{_f(share.get('crops_per_landmark_pass'), '.1f', 6)} {_f(r.get('cpu_util_mean'), '.0f', 5)} "
                      f"{_f(r.get('actor_cpu_ms_per_frame'), '.2f', 6)}  {r['device']}")
                dump()
            sc.update(scaling(videos, name, counts, args.segment_seconds, args.address, args.gpus_per_actor,
                              args.streams, det, on_run=row, stage_server=args.stage_server))
            dump()
        if not args.no_accuracy and os.path.isdir(args.data):
            # in-process, on the device the profile picks (CUDA when there is one), after the timed runs;
            # the faces picked by the default detector settings on the same backend, as the table's bench
            dev = "cuda" if cuda else "cpu"
            clip = truth_clip(work, args.data, make_detector({"backend": backend or "auto"}, dev))
            res["accuracy"] = {}
            for name in args.profiles:
                prof = get_profile(name)
                parts = build_parts(name, prof.model, {**prof.detector, **({"backend": backend} if backend else {})},
                                    prof.follow, prof.predictor)
                acc = res["accuracy"][name] = {**accuracy(parts, clip), "device": str(parts.predictor.device),
                                               "detector": type(parts.detector).__name__}
                print(f"accuracy, {name} ({acc['device']}, {acc['detector']}), on a clip of labelled identity-test faces: "
                      + ", ".join(f"{k} NME {100 * a['nme_mean']:.2f}% ({a['frames_with_face']}/{a['frames']} frames)"
                                  for k, a in acc.items() if isinstance(a, dict)))
                dump()
    res["machine"]["gpu"] = torch.cuda.get_device_name() if cuda else None
    dump()
    print(f"wrote {args.json}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.actors:
        return run_scaling(args)
    profiles = [load_profile(n) for n in args.profiles]
    naive_pred = load_profile("accurate").predictor
    dlib_skip = dlib_missing()                    # the dlib row: a reason when it cannot run here
    res = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "device": str(naive_pred.device),
                       "precision": naive_pred.precision,
                       "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                       "platform": platform.platform(), "torch": torch.__version__, "av": av.__version__,
                       "opencv": cv2.__version__, "dlib": None if dlib_skip else _dlib_version()},
           "profiles": {p.name: {"model": p.predictor.model_id, "detector": get_profile(p.name).detector,
                                 "follow": p.follow.to_dict(), "refine": p.predictor.refine, "flip": p.predictor.flip,
                                 "settled_move": p.predictor.settled_move, "settled_score": p.predictor.settled_score}
                        for p in profiles},
           "videos": []}
    with tempfile.TemporaryDirectory() as work:
        videos = args.videos or [SAMPLE, synthetic_clip(os.path.join(work, "synthetic_640x480.mp4"), (640, 480), args.frames),
                                 synthetic_clip(os.path.join(work, "synthetic_1280x720.mp4"), (1280, 720), args.frames)]
        real = os.path.join(args.clips_from, REAL_SOURCE)
        if not args.videos and os.path.isfile(real):
            videos.append(synthetic_clip(os.path.join(work, "real_640x480.mp4"), (640, 480), args.frames, source=real))
        print(f"{'video':34} {'path':9} {'fps':>8} {'x decode':>9} {'x naive':>8} {'x dlib':>7}  "
              "time share detect/landmarks/parquet/decode+other")
        for v in videos:
            rounds: dict[str, list[dict]] = {}
            for _ in range(args.repeat):      # interleaved, so each path sees the same moments of the machine
                rounds.setdefault("decode", []).append(decode_only(v))
                for p in profiles:
                    rounds.setdefault(p.name, []).append(full_path(v, p, args.smooth))
                if dlib_skip is None:
                    rounds.setdefault("dlib", []).append(dlib_path(v, args.dlib_frames, args.dlib_upsample))
                rounds.setdefault("naive", []).append(naive_path(v, naive_pred, args.naive_frames))
            best = {k: _fastest(rs) for k, rs in rounds.items()}
            dec, naive, dl = best["decode"], best["naive"], best.get("dlib")

            def x_dlib(fps: float, dl: dict | None = dl) -> str:
                return _f(fps / dl["fps"] if dl else None, ".1f", 7)
            row = {"video": os.path.basename(v), "decode": dec, "naive": naive,
                   "dlib": dl if dl else {"skipped": dlib_skip}, "profiles": {}}
            print(f"{row['video'][:34]:34} {'decode':9} {dec['fps']:8.1f} {1:9.3f} {dec['fps'] / naive['fps']:8.1f} "
                  f"{x_dlib(dec['fps'])}")
            for p in profiles:
                full = best[p.name]
                full["over_decode"], full["over_naive"] = full["fps"] / dec["fps"], full["fps"] / naive["fps"]
                if dl:
                    full["over_dlib"] = full["fps"] / dl["fps"]
                full["stage_share"] = {k: round(x / full["seconds"], 3) for k, x in full["stage_s"].items()}
                row["profiles"][p.name] = full
                print(f"{'':34} {p.name:9} {full['fps']:8.1f} {full['over_decode']:9.3f} {full['over_naive']:8.1f} "
                      f"{x_dlib(full['fps'])}  "
                      + "/".join(f"{full['stage_share'][k]:.2f}" for k in ("detect", "landmarks", "parquet", "decode+other"))
                      + f"  jitter {100 * full['jitter']['raw']:.3f}% raw, {100 * full['jitter']['smoothed']:.3f}% smoothed")
            print(f"{'':34} {'naive':9} {naive['fps']:8.1f} {naive['fps'] / dec['fps']:9.3f} {1:8.1f} {x_dlib(naive['fps'])}")
            if dl:
                print(f"{'':34} {'dlib':9} {dl['fps']:8.1f} {dl['fps'] / dec['fps']:9.3f} {dl['fps'] / naive['fps']:8.1f} "
                      f"{1:7.1f}  HOG (upsample {dl['upsample']}) + 68-point ERT, every frame: "
                      f"{dl['frames']} frames, {dl['faces']} faces")
            else:
                print(f"{'':34} {'dlib':9} skipped: {dlib_skip}")
            res["videos"].append(row)
        clip = None if args.no_accuracy else truth_clip(work, args.data)
        if clip:
            res["accuracy"] = {}
            for p in profiles:
                acc = res["accuracy"][p.name] = accuracy(p, clip)
                print(f"accuracy, {p.name}, on a clip of labelled identity-test faces: "
                      + ", ".join(f"{k} NME {100 * a['nme_mean']:.2f}% ({a['frames_with_face']}/{a['frames']} frames)"
                                  for k, a in acc.items()))
        if args.moving_stills and not args.no_accuracy and os.path.isdir(args.data):
            clip = moving_stills(os.path.join(work, "moving.mp4"), pick_faces(args.data, args.moving_stills, max_h=260))
            res["steadiness"] = {}
            for p in profiles:
                s = steadiness(p, clip, args.smooth)
                for k in ("raw", "smoothed"):
                    s[k].pop("nme_per_frame")
                res["steadiness"][p.name] = s
                print(f"steadiness, {p.name}, {args.moving_stills} labelled stills on smooth paths (2-10 px/frame): "
                      f"NME {100 * s['raw']['nme_mean']:.2f}% raw, {100 * s['smoothed']['nme_mean']:.2f}% smoothed; "
                      f"jitter {100 * s['raw']['jitter_median']:.3f}% raw, {100 * s['smoothed']['jitter_median']:.3f}% "
                      f"smoothed, truth {100 * s['raw']['truth_jitter_median']:.3f}%")
        if not args.no_memory:
            short = synthetic_clip(os.path.join(work, "mem_short.mp4"), (640, 480), 60)
            long = synthetic_clip(os.path.join(work, "mem_long.mp4"), (640, 480), 60, repeat=10)
            a, b = peak_rss_mb(short), peak_rss_mb(long)
            res["memory"] = {"short_frames": 60, "long_frames": 600, "peak_rss_mb_short": a, "peak_rss_mb_long": b,
                             "ratio": b / a}
            print(f"peak RSS: {a:.0f} MB for 60 frames, {b:.0f} MB for 600 frames (x{b / a:.2f})")
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {args.json}")
    return 0
