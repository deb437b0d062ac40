"""Named parameter sets for the whole annotate path: which model, how the detector runs, how faces
are followed. A profile is a starting point; any option given on its own overrides it.

- `accurate` (default): the 148 M multiply-add model with a refine pass and mirrored averaging,
  the detector every 8 frames on frames downscaled to 640 px, every 16 while its rounds change
  nothing. The numbers in the model card. A face whose first-pass square barely moved from the
  square it was cut from (in video, a followed face) and that the mirrored read trusts skips the
  refine pass (`settled_move` 0.05, `settled_score` 0.7).
- `fast`: for volume on CPUs. The 15 M multiply-add model (`ft68-resnet-xs-hm`, distilled from
  accurate's), a refine pass mirrored on its last pass only (one forward more than none: the
  mirror is what lets the score see a crop the network cannot read), the detector every 24 frames
  at 320 px with a coarser scale step, every 48 while its rounds change nothing. New faces in a
  steady shot are picked up within 2 s at 25 fps; a face that is lost (score drop) is looked for
  near where it was and held, as in `accurate`. Its network runs on one torch thread (`threads`
  1; `LandmarkPredictor.threads`): its convolutions at 64 px are too small to gain from a second
  core that the decoder and the follow loop need. In one in-process A/B on this 2-core machine
  (5 interleaved rounds, medians) one thread against torch's two: +10 % on the sample, +3 % on the
  synthetic 640x480 clip, +22 % at 1280x720, -1 % on the real clip (best rounds +1 / +6 / +25 /
  -2 %); `accurate`'s 148 M multiply-add network lost 18-24 % on one thread (3 % at 1280x720)
  and keeps two.

Both stretch the cadence (`max_detect_every`): after a round that saw every followed face again
and no new one, the next waits twice as long, up to the maximum; a round that finds a face, misses
one or re-seeds one, or a cut, brings it back. Measured on a clip of *val* faces walking into steady
shots, a face that comes in is found 3.5 frames late on average (at most 7) with accurate's fixed
8, 5.5 (at most 14) with 8-16; on the shared clips accurate ran 1.26-1.41x faster with the same
faces, fast (24-48) 1.13-1.35x (docs/eval/steady_work.json).

`settled_move` was chosen on the val identities' moving and occluded clips (0.03 first: followed
NME 3.476 -> 3.478 %, the same faces; 0.05 with the slim model, read by weights trained without the
val identities: NME within 0.006 pt of 0.03's, raw jitter +3 %, 2-11 % faster; 0.08 cost up to
0.02 pt and +14 % jitter, docs/eval/settled_move.py) and `settled_score` on the train identities'
score sets: at 0.6 one background crop settled with a score of 0.604 and was kept; at 0.7 none is.

Both run the cascade with 3 neighbours (OpenCV's default, 5, is `HaarDetector`'s), `accurate` at
a scale step of 1.15 instead of 1.1: chosen on the *val* identities, where it found more faces
(accurate 97.7 -> 98.6 %, fast 93.6 -> 97.5 %) at the same NME, and on the shared clips, where
the accurate detector costs 28 % less (41 vs 57 ms at 640x480) and fast finds the small faces
of docs/eval/occlusion.py's clip on 89 % of clear frames instead of 74 %. What it costs: more
windows the score has to reject (false detections on the no-face clip: 8 crops, no face kept).

Both look for a face whose score dropped in a window around where it was
(`FollowParams.look_near`, `detect.detect_near`) instead of on the whole frame, and hold it
hidden there (`hold_lost`) until it is trusted again or the next detection round ends it: on
labelled faces with a hand sliding over them (docs/eval/occlusion.py) `accurate` kept every clear
frame, as dropping did, with 42 whole-frame detections instead of 166 and 20 ids for 16 faces
instead of 32. `fast` took both with its distilled two-level model (2026.11.28,
docs/eval/fast_model.py): with `ft68-resnet-xs` they cost it faces on the bundled sample, whose
hand that model's score let through; the two-level model's score rejects those frames as
`accurate`'s does, and dropping them cost a whole-frame detection each.

Both rescan only what changed (`rescan_changed` 8, `change_scan.py`): a whole-frame detection
reads again only the 16 px cells whose grey levels moved by 8 on average since they were last
scanned, leaving out the faces followed and trusted, and the whole frame at least every 96 frames.
On the val identities' labelled clips (docs/eval/rescan.py) the same NME, faces and time to find a
face that comes in; on the shared clips accurate ran 1.21-1.44x faster, fast 1.03-1.16x, but for
s18, whose speaker moves all over the frame: no gain there (0.92x and 0.96x in one run each).

`min_score` of each was chosen on sets built from train identities and the shared clips
(docs/score/build_eval.py): above every crop whose points were wrong (NME > 20 %), while keeping
99 % of the true train faces; the README gives what it keeps and drops on the test identities.
`fast`'s 0.35 (2026.11.28, its distilled model): a background crop of the train sets scored 0.319,
so 0.35 leaves the margin the old 0.3 had (0.025 over its highest wrong crop), keeping 98.0 % of
the true train faces.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch

from facetracks.models.inference import LandmarkPredictor
from facetracks.models.registry import DEFAULT_MODEL

from .detect import FaceDetector, HaarDetector
from .haar_torch import TorchHaarDetector
from .follow import FollowParams


@dataclass(frozen=True)
class Profile:
    model: str                                       # a shipped model name (models.registry.ARCHS)
    detector: dict = field(default_factory=dict)     # HaarDetector fields
    follow: dict = field(default_factory=dict)       # FollowParams fields
    predictor: dict = field(default_factory=dict)    # LandmarkPredictor fields: refine, flip, threads


PROFILES: dict[str, Profile] = {
    "accurate": Profile(DEFAULT_MODEL, detector={"scale_factor": 1.15, "min_neighbors": 3},
                        follow={"min_score": 0.45, "look_near": True, "hold_lost": True, "max_detect_every": 16,
                                "rescan_changed": 8.0},
                        predictor={"refine": 1, "flip": True, "settled_move": 0.05, "settled_score": 0.7}),
    "fast": Profile("ft68-resnet-xs-hm", detector={"detect_side": 320, "scale_factor": 1.2, "min_neighbors": 3},
                    follow={"detect_every": 24, "max_detect_every": 48, "batch_size": 24, "min_score": 0.35,
                            "look_near": True, "hold_lost": True, "rescan_changed": 8.0},
                    predictor={"refine": 1, "flip": False, "flip_last": True, "threads": 1}),
}
DEFAULT_PROFILE = "accurate"


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    return PROFILES[name]


@dataclass
class ProfileParts:
    """What a profile runs, built: the detector, the predictor (model loaded), the following.
    One video at a time: OpenCV's cascade and the predictor's buffers are not for two threads at
    once (two threads sharing one failed in OpenCV, or moved points by up to 1.4 px without a
    word), so whoever runs a video holds `lock`; a profile loaded per thread runs in parallel."""
    name: str
    detector: FaceDetector
    predictor: LandmarkPredictor
    follow: FollowParams
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


DETECTOR_BACKENDS = ("auto", "opencv", "torch")   # the same cascade and the same boxes; torch runs where the model runs


def build_parts(name: str, weights: bytes | str | None, detector: dict, follow: dict, predictor: dict,
                device: str | None = None) -> ProfileParts:
    """The one place a detector, predictor and following settings are built from plain dicts
    (a profile's, or a profile's with command-line overrides, as Ray actors receive them).
    `detector["backend"]`: "opencv" (cv2's cascade on the CPU), "torch" (`haar_torch.py`, the same
    boxes, on the predictor's device) or "auto" (default): torch where the model runs on CUDA,
    opencv on a CPU, where OpenCV is 3.5-5x faster."""
    pred = LandmarkPredictor.load(weights, device=device, **predictor)
    return ProfileParts(name, make_detector(detector, pred.device), pred, FollowParams(**follow))


def make_detector(settings: dict, device: str | torch.device = "cpu") -> FaceDetector:
    """A detector from profile-style settings (`HaarDetector` fields and a "backend", see
    `build_parts`), the torch one on `device`."""
    settings = dict(settings)
    backend = settings.pop("backend", "auto")
    if backend not in DETECTOR_BACKENDS:
        raise ValueError(f"unknown detector backend {backend!r}; known: {', '.join(DETECTOR_BACKENDS)}")
    if backend == "auto":
        backend = "torch" if torch.device(device).type == "cuda" else "opencv"
    return TorchHaarDetector(**settings, device=device) if backend == "torch" else HaarDetector(**settings)


def load_profile(name: str, device: str | None = None, weights: bytes | str | None = None) -> ProfileParts:
    """A profile built; `weights` (a path or the bytes of a checkpoint) instead of its model's."""
    prof = get_profile(name)
    return build_parts(name, weights or prof.model, prof.detector, prof.follow, prof.predictor, device)
