"""`facetracks annotate`: videos and photos -> per-frame 68-point landmark tracks in Parquet, on Ray actors."""
from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys
from dataclasses import MISSING

from facetracks.models.inference import LandmarkPredictor
from facetracks.models.registry import ModelCfg, load_checkpoint, resolve_weights
from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.filters import FILTERS, get_filter
from facetracks.pipeline.follow import FollowParams
from facetracks.pipeline import sources
from facetracks.pipeline.render import OUTPUT_FORMATS, check_crf
from facetracks.pipeline.profiles import DEFAULT_PROFILE, DETECTOR_BACKENDS, PROFILES, get_profile
from facetracks.pipeline.smoothing import SmoothParams

from .argtypes import bounded, folder_or_uri, nonneg_float, nonneg_int, positive_int, scale_step, smooth, unit_float
from .inputs import expand_inputs
from .outputs import cannot_write, clean_dest, is_uri
from .render_cmd import add_render_options
from .report_cmd import report
from .progress import PROGRESS_CHOICES
from .ray_runner import ClusterError, LeaseError, OutputBusy, OutputFull, RunOptions, WorkerStartError, run_annotate
from . import stopping
from .sizing import ActorSizeError


def _defaults(cls: type) -> argparse.Namespace:
    return argparse.Namespace(**{k: f.default for k, f in cls.__dataclass_fields__.items() if f.default is not MISSING})


_DETECTOR, _PREDICTOR = _defaults(HaarDetector), _defaults(LandmarkPredictor)
detect_side = bounded(int, lambda v: v >= 32, ">= 32 (pixels)")


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(part: str, key: str) -> str:
    """What `--help` states as the default of one setting: each profile's own value (its
    `pipeline/profiles.py` entry, else the dataclass default it runs with), read from the profiles
    so that the help cannot drift from them: `default: the profile's (accurate 8, fast 24)`, or
    `default 24` when no profile sets it."""
    base = getattr({"detector": _DETECTOR, "follow": FollowParams(), "predictor": _PREDICTOR}[part], key)
    values = {name: getattr(prof, part).get(key, base) for name, prof in PROFILES.items()}
    if all(key not in getattr(prof, part) for prof in PROFILES.values()):
        return f"default {_shown(base)}"
    return f"default: the profile's ({', '.join(f'{n} {_shown(v)}' for n, v in values.items())})"


def _mirrored() -> str:
    """What each profile mirrors, for --no-flip's help."""
    def what(p: dict) -> str:
        flip, last = p.get("flip", _PREDICTOR.flip), p.get("flip_last", _PREDICTOR.flip_last)
        return "every pass" if flip else "last pass only" if last else "none"
    return ", ".join(f"{name} {what(prof.predictor)}" for name, prof in PROFILES.items())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("annotate", help="landmark every frame of every video into Parquet", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video or photo files, folders (recursive) or globs; photos: JPEG, PNG, WebP, BMP, TIFF")
    p.add_argument("--out", required=True, type=folder_or_uri,
                   help="output folder or pyarrow filesystem URI (s3://bucket/prefix): <relative path>.parquet per video, _summary.json")
    p.add_argument("--weights", default=None,
                   help="landmark checkpoint file or shipped model name (default: the profile's model)")
    p.add_argument("--address", default=None, help="Ray cluster (auto, ray://host:port); default: start Ray here")
    p.add_argument("--actors", type=nonneg_int, default=0,
                   help="model actors (default: one per GPU and one per CPU of the nodes without a GPU, or one per CPU)")
    p.add_argument("--cpus-per-actor", type=nonneg_float, default=0)
    p.add_argument("--gpus-per-actor", type=nonneg_float, default=None, help="fractions allowed; default 1 if GPUs")
    p.add_argument("--gpu-only", action="store_true",
                   help="on a cluster with GPU nodes, leave the nodes without a GPU idle (default: a one-CPU actor per CPU "
                        "there, beside the GPU actors; none with --actors or --stage-server, which size all actors)")
    p.add_argument("--streams", type=nonneg_int, default=0,
                   help="videos or segments one actor follows at once, their faces sharing each forward pass and "
                        "their frames each detector call (default 0: 16 on a GPU actor, 1 on a CPU one)")
    p.add_argument("--stage-server", action="store_true",
                   help="the network (and, without OpenCV's cascade, the detector) in one process per GPU, fed by "
                        "CPU actors that decode, follow and cut crops (--actors: how many; default one per free core)")
    p.add_argument("--batch-size", type=positive_int,
                   help=f"most frames whose faces go through the network in one batch ({_default('follow', 'batch_size')})")
    p.add_argument("--segment-seconds", type=nonneg_float, default=120.0,
                   help="split longer videos at keyframes this far apart, over several actors (0: never; default %(default)g)")
    p.add_argument("--stall-seconds", type=nonneg_float, default=600.0,
                   help="a task that decodes, renders or reads nothing for this long is stuck (a hung mount, a "
                        "decoder that never returns): its worker is stopped and the video tried again alone, then "
                        "quarantined (0: wait for ever; default %(default)g)")
    p.add_argument("--overwrite", action="store_true", help="redo videos whose output is current")
    p.add_argument("--progress", default="auto", choices=PROGRESS_CHOICES,
                   help="a bar of frames done, fps and ETA on stderr; auto: when stderr is a terminal")
    p.add_argument("--smooth", type=smooth, default=SmoothParams(), metavar="FILTER",
                   help="temporal smoothing per track, no lag (centred window): local-poly (default) or none "
                        "(points as predicted); parameters as local-poly:radius=8,shape_radius=4")
    p.add_argument("--render", default=None, metavar="FILTER",
                   help=f"also write DIR/<relative path>.<FILTER>.mp4, for a photo .<FILTER>.<its format> "
                        f"({', '.join(FILTERS)}, or 'overlay' with --overlay)")
    add_render_options(p)
    p.add_argument("--report", action="store_true", help="also write DIR/report.html at the end (facetracks report)")
    g = p.add_argument_group("detection and following (each overrides the --profile value)")
    g.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="accurate: the model card's settings; fast: the small model, fewer detections")
    g.add_argument("--detector", default="auto", choices=DETECTOR_BACKENDS,
                   help="opencv: cv2.CascadeClassifier; torch: the same cascade, same boxes, evaluated with torch "
                        "where the model runs (on a CPU 3.5-5x slower); auto (default): torch on a GPU actor, "
                        "else opencv")
    g.add_argument("--scale-factor", type=scale_step, help=f"Haar scale step ({_default('detector', 'scale_factor')})")
    g.add_argument("--min-neighbors", type=nonneg_int, help=f"Haar neighbours a face needs ({_default('detector', 'min_neighbors')})")
    g.add_argument("--min-face", type=positive_int, help=f"smallest face side, pixels ({_default('detector', 'min_face')})")
    g.add_argument("--detect-side", type=detect_side,
                   help=f"longest side the detector sees, frames are downscaled to it ({_default('detector', 'detect_side')})")
    g.add_argument("--detect-every", type=positive_int,
                   help=f"frames between detections while faces are followed, 1: every frame ({_default('follow', 'detect_every')})")
    g.add_argument("--max-detect-every", type=nonneg_int,
                   help="let the detection cadence double after each round that changed nothing (every face seen "
                        f"again, no new one), up to this many frames; 0: keep --detect-every "
                        f"({_default('follow', 'max_detect_every')}; 0 when --detect-every is given alone)")
    g.add_argument("--idle-detect-every", type=positive_int,
                   help=f"frames between detections while no face is followed ({_default('follow', 'idle_detect_every')})")
    g.add_argument("--min-score", type=unit_float, help=f"confidence below which a face is lost ({_default('follow', 'min_score')})")
    g.add_argument("--max-faces", type=positive_int, help=f"most faces followed at once ({_default('follow', 'max_faces')})")
    g.add_argument("--cut-threshold", type=nonneg_float,
                   help=f"mean grey-level change that makes a frame a scene cut, 0: off ({_default('follow', 'cut_threshold')})")
    g.add_argument("--hold-lost", action=argparse.BooleanOptionalAction, default=None,
                   help="keep a face the score rejects (a hand over it) hidden until the next detection round, "
                        "looked for where it was (with --look-near) and brought back under its id, instead of "
                        "dropping it and running the detector on every frame until it is found again (faster, "
                        f"stable ids; {_default('follow', 'hold_lost')})")
    g.add_argument("--look-near", action=argparse.BooleanOptionalAction, default=None,
                   help="look for a face whose score dropped in a window around where it was, not on the whole "
                        f"frame ({_default('follow', 'look_near')})")
    g.add_argument("--rescan-changed", type=nonneg_float,
                   help="a whole-frame detection rescans only the 16 px cells whose grey levels moved by this much "
                        "on average since they were last scanned, and not the faces followed (a still camera's "
                        f"background is not read again); 0: scan the whole frame each time "
                        f"({_default('follow', 'rescan_changed')})")
    g.add_argument("--oversize", action=argparse.BooleanOptionalAction, default=None,
                   help="where a whole-frame detection finds no face, look again for a face too big for the frame "
                        "or cut by its edge (a close-up: the cascade's windows must hold the whole face); a few ms, "
                        f"on face-less frames only ({_default('follow', 'oversize')})")
    g.add_argument("--turned-every", type=nonneg_int,
                   help="while no face is trusted, a detection round that finds no upright face also scans the frame "
                        "turned a quarter each way and upside down, at most every this many frames (and on each "
                        "new shot), for faces lying on their side or upside down: a clip filmed sideways that lost "
                        f"its rotation tag, a camera on its side, a person lying down; 0: never ({_default('follow', 'turned_every')})")
    g.add_argument("--full-scan-every", type=positive_int,
                   help=f"with --rescan-changed, frames between whole-frame scans at most ({_default('follow', 'full_scan_every')})")
    g.add_argument("--refine", type=nonneg_int, help=f"re-crop passes around predicted points ({_default('predictor', 'refine')})")
    g.add_argument("--no-flip", action="store_true", help=f"skip mirrored test-time averaging, faster (mirrored by default: the profile's ({_mirrored()}))")
    g.add_argument("--settled-move", type=nonneg_float,
                   help="a face whose first-pass square moved at most this share of its side from the one it was "
                        "cut from (in video, a followed face), and whose first-pass score reaches --settled-score, "
                        "skips the refine pass; needs the mirror on every pass (not fast's, nor --no-flip); 0: refine "
                        f"every face ({_default('predictor', 'settled_move')})")
    g.add_argument("--settled-score", type=unit_float, help=f"see --settled-move ({_default('predictor', 'settled_score')})")
    g.add_argument("--net-threads", type=nonneg_int,
                   help="on a CPU, torch threads for the landmark network at most; 0: as many as torch has (the "
                        f"actor's CPUs) ({_default('predictor', 'threads')}: fast's small network gains nothing "
                        f"from a second core that the decoder needs)")
    g.add_argument("--fp32", action="store_true",
                   help="float32 everywhere (default: float16 on GPUs, bfloat16 convolutions on CPUs that run them natively)")
    p.set_defaults(func=run)


def _given(options: dict, profile: dict, defaults: object) -> dict:
    """Every parameter, spelled out (it goes into each output's metadata): the dataclass default,
    overridden by the profile, overridden by the options given on the command line."""
    base = {k: getattr(defaults, k) for k in options}
    return {**base, **{k: v for k, v in profile.items() if k in options},
            **{k: v for k, v in options.items() if v is not None}}


def run_params(args: argparse.Namespace, prof) -> tuple[dict, dict, dict]:
    """Detector, follow and predictor settings, every one spelled out: the profile's, with the
    options given on the command line over them."""
    detector = _given({"scale_factor": args.scale_factor, "min_neighbors": args.min_neighbors,
                       "min_face": args.min_face, "detect_side": args.detect_side}, prof.detector, _DETECTOR)
    detector["backend"] = args.detector
    follow = _given({"detect_every": args.detect_every, "idle_detect_every": args.idle_detect_every,
                     "min_score": args.min_score, "max_faces": args.max_faces, "cut_threshold": args.cut_threshold,
                     "batch_size": args.batch_size, "look_near": args.look_near, "hold_lost": args.hold_lost,
                     "max_detect_every": args.max_detect_every, "rescan_changed": args.rescan_changed,
                     "full_scan_every": args.full_scan_every, "oversize": args.oversize,
                     "turned_every": args.turned_every},
                    prof.follow, FollowParams())
    if args.detect_every is not None and args.max_detect_every is None:
        follow["max_detect_every"] = 0      # a cadence given is kept as given ("1: every frame"), not stretched
    no_flip = False if args.no_flip else None      # --no-flip: no mirrored pass at all (nor the last pass's)
    predictor = _given({"refine": args.refine, "flip": no_flip, "flip_last": no_flip, "settled_move": args.settled_move,
                        "settled_score": args.settled_score, "threads": args.net_threads}, prof.predictor, _PREDICTOR)
    predictor["half"] = False if args.fp32 else None         # None: the device's fast precision (LandmarkPredictor.load)
    return detector, follow, predictor


def _refuse(message: str, code: int = 2) -> int:
    """One line on stderr naming the cause; the exit status (2: the command cannot run as given)."""
    print(f"facetracks annotate: {message}", file=sys.stderr)
    return code


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# where `ray job submit --working-dir` unpacks the job's files (and the job runs): its cache
RAY_WORKING_COPY = f"{os.sep}runtime_resources{os.sep}working_dir_files{os.sep}"


def _usage_error(args: argparse.Namespace) -> str | None:
    """What makes the command unusable, found before anything starts (Ray takes seconds)."""
    missing = []
    for a in args.inputs:
        if is_uri(a):
            try:
                if sources.info(a).kind == "missing":
                    missing.append(a)
            except (OSError, ValueError) as e:   # an unknown scheme, no credentials, no network
                return f"cannot read {a} ({e})"
        elif not glob.has_magic(a) and not os.path.exists(a):
            missing.append(a)
    if missing:
        relative = any(not is_uri(a) and not os.path.isabs(a) for a in missing)
        return f"no such file or folder: {', '.join(missing)}" + (f" (in {os.getcwd()})" if relative else "")
    if RAY_WORKING_COPY in os.getcwd() + os.sep and not is_uri(args.out) and not os.path.isabs(args.out):
        return (f"--out {args.out} is relative, and this job runs in Ray's copy of its working dir "
                f"({os.getcwd()}), which Ray deletes with the job's session: give --out as an absolute path "
                f"(on storage every node shares) or a URI")
    if args.stage_server and args.gpus_per_actor is not None:
        return (f"--gpus-per-actor {args.gpus_per_actor:g} with --stage-server: the servers take a whole GPU each "
                f"and the actors none; size the actors with --actors and --cpus-per-actor")
    return None


def _out_error(args: argparse.Namespace) -> str | None:
    """An output folder that cannot be made or written, found before Ray starts."""
    if not is_uri(args.out):
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as e:
            return f"cannot create the output folder {args.out} ({e.strerror or e})"
        why = cannot_write(args.out)
        if why:
            return f"cannot write to the output folder {args.out} ({why})"
    return None


def run(args: argparse.Namespace) -> int:
    args.out = clean_dest(args.out)
    error = _usage_error(args)
    if error:
        return _refuse(error)
    try:
        items = expand_inputs(args.inputs, exclude_outputs_of=args.out)
    except (OSError, ValueError) as e:       # a store that cannot be listed (permissions, network)
        return _refuse(f"cannot list the inputs ({e})")
    if not items:
        return _refuse(f"no videos or photos found in {' '.join(args.inputs)}")
    render = None
    if args.render:
        if args.overlay and args.render != "overlay":
            return _refuse(f"--overlay draws your image instead of a filter: use --render overlay "
                           f"--overlay {args.overlay}, not --render {args.render}")
        try:   # fail fast on a bad filter, overlay or quality, before any video is decoded
            get_filter(args.render, args.overlay, args.anchor)
            check_crf(OUTPUT_FORMATS[".mp4"], args.crf)         # annotate renders H.264 MP4
        except ValueError as e:
            return _refuse(str(e))
        # actors get the overlay's bytes, not its path: a cluster's nodes need no shared copy of it
        overlay_bytes = _read(args.overlay) if args.overlay else None
        name = f"overlay-{os.path.splitext(os.path.basename(args.overlay))[0]}" if args.overlay else args.render
        render = {"name": name, "overlay_bytes": overlay_bytes, "anchor": args.anchor,
                  "crf": args.crf, "preset": args.preset}
    prof = get_profile(args.profile)
    weights = resolve_weights(args.weights or prof.model)
    try:       # on the driver, before any actor starts; actors get the bytes, not the path
        weights_bytes = _read(weights)
        cfg = ModelCfg.from_dict(load_checkpoint(weights_bytes)["config"])
    except FileNotFoundError:
        return _refuse(f"{weights}: no such weights file")
    except (OSError, ValueError) as e:
        return _refuse(f"{weights}: cannot use these weights ({e})")
    detector, follow, predictor = run_params(args, prof)
    opt = RunOptions(out_dir=args.out, weights=weights_bytes, model_id=f"{cfg.name}@{cfg.version}", detector=detector,
                     follow=follow, predictor=predictor, address=args.address, actors=args.actors,
                     cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor, streams=args.streams,
                     stage_server=args.stage_server, cpu_beside=not args.gpu_only,
                     overwrite=args.overwrite, render=render, segment_s=args.segment_seconds,
                     smooth=args.smooth.to_dict(), progress=args.progress, stall_s=args.stall_seconds,
                     # the weights' content, not only their name@version ("dev" for a user's own run).
                     # Not how videos are split (--segment-seconds, a choice of speed like --actors;
                     # it moves only where trackers restart): with it, `--render` (videos whole)
                     # after a plain run annotated every video again, and the next plain run again
                     params_for_key={"weights_sha256": hashlib.sha256(weights_bytes).hexdigest(),
                                     "detector": detector, "follow": follow, "predictor": predictor,
                                     "smooth": args.smooth.to_dict()})
    error = _out_error(args)
    if error:
        return _refuse(error)
    try:
        summary = run_annotate(items, opt)
    except (ActorSizeError, ClusterError, LeaseError, OutputBusy) as e:   # before any actor: nothing to clean up
        return _refuse(str(e))
    except WorkerStartError as e:
        return _refuse(str(e), 1)
    except OutputFull as e:
        return _refuse(f"{e}; stopped. Every file written is complete (no partial file is left); with space "
                       f"freed, the same command again does the rest", 1)
    except KeyboardInterrupt:
        what, code = stopping.stopped_by()
        print(f"facetracks annotate: {what}; every file written is complete (no partial file is left); "
              "the same command again does the rest", file=sys.stderr)
        return code
    v = summary["videos"]
    ok = [n for n, e in v.items() if e["status"] == "ok"]
    skipped = [n for n, e in v.items() if e["status"] == "skipped"]
    failed = {n: e["error"] for n, e in v.items() if e["status"] == "failed"}
    frames = sum(e.get("frames", 0) for e in v.values())
    renders = {n: e["render"] for n, e in v.items() if e.get("render")}
    print(f"annotate: {len(ok)} ok, {len(skipped)} skipped (current), {len(failed)} failed; "
          f"{frames} frames in {summary['seconds']:.1f} s; summary in {os.path.join(args.out, '_summary.json')}")
    for name, r in renders.items():
        if r["status"] == "ok":
            made = v[name].get("reason") != "output is current"       # else an earlier run's, current
            audio = f" (audio: {r['audio']})" if "audio" in r else ""
            print(f"  {'rendered' if made else 'current'}: {r['output']}{audio}")
    for name, e in v.items():
        if e.get("damaged"):
            d = e["damaged"]
            near = f" (from {d['at_s'][0]:.1f} s)" if d["at_s"] else ""
            print(f"  damaged: {name}: the decoder rejected {d['packets']} packets{near}, skipped as players do; "
                  f"the frames they held have no rows", file=sys.stderr)
    for name, e in v.items():
        if e.get("changed_while_read"):
            print(f"  changed: {name}: the file changed while it was read (still being written?): its tracks hold "
                  f"what was there then; the same command again redoes it", file=sys.stderr)
    for name, err in failed.items():
        print(f"  failed: {name}: {err}", file=sys.stderr)
    bad_renders = {n: r["error"] for n, r in renders.items() if r["status"] != "ok"}
    for name, err in bad_renders.items():
        print(f"  render failed (tracks kept): {name}: {err}", file=sys.stderr)
    if args.report and report(args.out):
        return 1
    return 1 if failed or bad_renders else 0
