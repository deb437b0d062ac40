"""The follow loop's schedule, frame by frame, with our own tiny detector and predictor stand-ins:
when the detector runs, which frames share a batch, what cuts and confidence drops do."""
from dataclasses import dataclass, field

import numpy as np
import pytest

from facetracks.pipeline.follow import FollowParams, FollowStats, Schedule, follow_faces
from facetracks.pipeline.video import Frame

# 68 points whose bounding box is the unit square around 0: a square maps to points and back exactly
TEMPLATE = np.random.default_rng(0).uniform(-0.5, 0.5, (68, 2)).astype(np.float32)
TEMPLATE[:2] = [[-0.5, -0.5], [0.5, 0.5]]
TEMPLATE[36:42] = TEMPLATE[36:42] * 0.3 - (0.25, 0.1)     # eyes level, the left one (image right) to the right:
TEMPLATE[42:48] = TEMPLATE[36:42] + (0.5, 0)              # an upright face, cropped upright (crop.square_along_face)


def clip(n: int, shots: dict[int, int] | None = None) -> list[Frame]:
    """n 32x32 frames; `shots` maps a first frame to its grey level (a new shot). Pixel (0, 0)
    holds the frame's index so the stand-ins know which frame they were given."""
    level, frames = 100, []
    for i in range(n):
        level = (shots or {}).get(i, level)
        g = np.full((32, 32), level, np.uint8)
        g[0, 0] = i
        frames.append(Frame(i, i, i / 25, g))
    return frames


@dataclass
class Detector:
    """Boxes (x, y, w, h) for every frame but those in `no_face`; remembers the frames it saw."""
    boxes: list = field(default_factory=lambda: [(8, 8, 12, 12)])
    no_face: set = field(default_factory=set)
    calls: list = field(default_factory=list)

    near_calls: list = field(default_factory=list)

    def detect(self, gray):
        i = int(gray[0, 0])         # a window around a face (detect_near) repeats the frame's border: same index
        window = gray.shape != (32, 32)
        (self.near_calls if window else self.calls).append(i)
        if i in self.no_face:
            return np.zeros((0, 5), np.float32)
        if window:                  # the face at the window's centre, at the size it was
            c = gray.shape[0] / 2
            return np.array([(c - 22, c - 22, 44, 44, 1.0)], np.float32)
        return np.array([(*b, 1.0) for b in self.boxes], np.float32)


@dataclass
class Predictor:
    """Points = the template on the square; the score is 0.9, 0.1 for the first `low[i]` tries on
    frame i and for every try on an `occluded` frame, or NaN everywhere with `unmeasured`."""
    low: dict = field(default_factory=dict)
    occluded: set = field(default_factory=set)
    unmeasured: bool = False
    batches: list = field(default_factory=list)

    def squares_from_boxes(self, boxes):
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        return np.stack([b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2, b[:, 2]], axis=1)

    def predict_with_score(self, grays, squares):
        idx = [int(g[0, 0]) for g in grays]
        self.batches.append(sorted(set(idx)))
        pts = TEMPLATE[None] * squares[:, None, 2:3] + squares[:, None, :2]    # (cx, cy, side, turn): upright here
        score = np.full(len(idx), np.nan if self.unmeasured else 0.9, np.float32)
        for k, i in enumerate(idx):
            if self.low.get(i, 0) > 0 or i in self.occluded:
                score[k] = 0.1
        for i in set(idx):
            if self.low.get(i, 0) > 0:
                self.low[i] -= 1
        return pts, score


def run(frames, det, pred, **params):
    params.setdefault("look_near", False)   # the whole-frame retry; looking near is tested on its own below
    params.setdefault("turned_every", 0)    # the stand-in detector reads upright frames; turned scans: below
    stats = FollowStats()
    out = list(follow_faces(frames, det, pred, FollowParams(**params), stats))
    assert [f.index for f, _ in out] == [f.index for f in frames]        # every frame once, in order
    return {f.index: [x.track_id for x in faces] for f, faces in out}, stats


def test_detects_every_n_frames_while_following_and_batches_up_to_the_next_detection():
    det, pred = Detector(), Predictor()
    ids, st = run(clip(20), det, pred, detect_every=4, batch_size=4)
    assert det.calls == [0, 4, 8, 12, 16]
    assert pred.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19]]
    assert set(map(tuple, ids.values())) == {(0,)}
    assert (st.frames, st.detections, st.faces, st.crops) == (20, 5, 20, 20)


def test_batches_are_capped_by_batch_size():
    det, pred = Detector(), Predictor()
    run(clip(12), det, pred, detect_every=8, batch_size=3)
    assert det.calls == [0, 8]
    assert pred.batches == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9, 10], [11]]


@pytest.mark.parametrize("idle, calls", [(1, list(range(10))), (3, [0, 3, 6, 9])])
def test_without_faces_the_detector_runs_every_idle_frames(idle, calls):
    det, pred = Detector(no_face=set(range(10))), Predictor()
    ids, _ = run(clip(10), det, pred, idle_detect_every=idle)
    assert det.calls == calls and pred.batches == []
    assert all(v == [] for v in ids.values())


def test_a_cut_ends_the_tracks_forces_a_detection_and_splits_the_batch():
    det, pred = Detector(), Predictor()
    ids, st = run(clip(20, shots={10: 200}), det, pred, detect_every=8, batch_size=8)
    assert det.calls == [0, 8, 10, 18]
    assert pred.batches == [list(range(8)), [8, 9], list(range(10, 18)), [18, 19]]
    assert [ids[i] for i in (0, 9, 10, 19)] == [[0], [0], [1], [1]]      # the new shot's face is a new track
    assert st.cuts == 1


@pytest.mark.parametrize("shots", [{10: 200, 11: 100}, {10: 200, 12: 100}, {10: 30, 11: 180, 12: 100}])
def test_a_change_undone_within_two_frames_is_no_cut(shots):
    """A flash (one frame or two), or a frame the decoder garbled: the frame after it is like the
    one before, so the face keeps its track and the detector its cadence."""
    det, pred = Detector(), Predictor()
    ids, st = run(clip(20, shots=shots), det, pred, detect_every=8, batch_size=8)
    assert {tuple(v) for v in ids.values()} == {(0,)}
    assert (st.cuts, st.transients) == (0, 1) and det.calls == [0, 8, 16]


def test_a_change_that_lasts_three_frames_is_a_cut_and_so_is_one_through_a_black_frame():
    det, pred = Detector(), Predictor()
    ids, st = run(clip(20, shots={10: 200, 13: 100}), det, pred, detect_every=8, batch_size=8)
    assert [ids[i] for i in (9, 10, 12, 13)] == [[0], [1], [1], [2]] and (st.cuts, st.transients) == (2, 0)
    det, pred = Detector(), Predictor()
    ids, st = run(clip(20, shots={10: 0, 11: 200}), det, pred, detect_every=8, batch_size=8)
    assert [ids[i] for i in (9, 10, 11, 19)] == [[0], [1], [2], [2]] and st.cuts == 2


def test_a_cut_in_part_of_the_frame_ends_only_the_tracks_there():
    """A split screen or a video call's tile that switches: the face beside it keeps its track; the
    new shot's face where the picture changed is a new track, found at once."""
    frames = []
    for i in range(20):
        g = np.full((32, 32), 100, np.uint8)
        g[:, 16:] = 250 if i >= 10 else 100         # the right half changes: 75 grey levels on average
        g[0, 0] = i
        frames.append(Frame(i, i, i / 25, g))
    det, pred = Detector(boxes=[(1, 8, 12, 12), (19, 8, 12, 12)]), Predictor()
    ids, st = run(frames, det, pred, detect_every=8, batch_size=8)
    assert ids[9] == [0, 1] and ids[10] == ids[19] == [0, 2]
    assert st.cuts == 1 and 10 in det.calls


def test_a_low_face_on_a_cut_frame_is_dropped_without_detecting_that_frame_again():
    """Its square came from the detector on that very frame: detecting it again would give the same
    square and the same score, so the first failure is the last."""
    det, pred = Detector(), Predictor(low={10: 1})
    ids, st = run(clip(20, shots={10: 200}), det, pred, detect_every=8, batch_size=8)
    assert det.calls == [0, 8, 10, 11, 19]
    assert ids[10] == [] and ids[11] == ids[19] == [2] and st.cuts == 1


def test_a_face_rejected_frame_after_frame_costs_one_frame_of_crops_a_frame():
    """A face the detector keeps finding and the network keeps rejecting (a hand over it): once
    dropped, each frame is detected once and landmarked alone; chunks grow back when it scores again."""
    det, pred = Detector(), Predictor(low={i: 99 for i in range(4, 10)})
    ids, st = run(clip(16), det, pred, detect_every=8, batch_size=8)
    assert det.calls == [0, 4, 5, 6, 7, 8, 9, 10]
    assert pred.batches == [list(range(8)), list(range(4, 12)), [5], [6], [7], [8], [9], [10], [11, 12], [13, 14, 15]]
    assert all(ids[i] == [] for i in range(4, 10)) and ids[10] == ids[15] != ids[0]
    assert st.crops == 8 + 8 + 6 + 2 + 3


def test_a_confidence_drop_redetects_at_once_and_keeps_the_face_when_the_retry_is_good():
    det, pred = Detector(), Predictor(low={5: 1})
    ids, _ = run(clip(16), det, pred, detect_every=8, batch_size=8)
    assert det.calls == [0, 5, 13]
    assert pred.batches[:2] == [list(range(8)), list(range(5, 13))]
    assert all(ids[i] == [0] for i in range(16))


def test_a_face_still_lost_on_the_retry_is_dropped_and_a_new_track_starts():
    det, pred = Detector(), Predictor(low={5: 2})
    ids, st = run(clip(16), det, pred, detect_every=8, batch_size=8)
    assert det.calls == [0, 5, 6, 14]
    assert [ids[i] for i in (4, 5, 6, 15)] == [[0], [], [1], [1]]
    assert st.faces == 15


def test_with_hold_lost_a_hidden_face_comes_back_under_its_id_without_a_detection_a_frame():
    """A hand over the face for frames 5-9: dropped, it would be re-detected on every frame and
    come back as track 1 (above); held, it is tried at its last square, the detector keeps its
    cadence, and the face returns as track 0."""
    hand = set(range(5, 10))
    det, pred = Detector(), Predictor(occluded=hand)
    ids, st = run(clip(16), det, pred, detect_every=8, batch_size=8, hold_lost=True)
    assert det.calls == [0, 5, 13]
    assert [ids[i] for i in range(16)] == [[0]] * 5 + [[]] * 5 + [[0]] * 6
    det, pred = Detector(), Predictor(occluded=hand)
    ids, _ = run(clip(16), det, pred, detect_every=8, batch_size=8)
    assert det.calls[:7] == [0, 5, 6, 7, 8, 9, 10] and ids[10] not in ([0], [])   # the default: drop, re-detect


def test_a_held_face_the_next_detection_round_misses_ends():
    det, pred = Detector(no_face=set(range(6, 20))), Predictor(occluded=set(range(5, 20)))
    ids, _ = run(clip(20), det, pred, detect_every=4, batch_size=4, hold_lost=True)
    assert det.calls == [0, 4, 5, 9] + list(range(10, 20))     # held until the round at 9; then idle: every frame
    assert all(ids[i] == [] for i in range(5, 20))


def test_an_unmeasured_score_never_drops_a_face():
    det, pred = Detector(), Predictor(unmeasured=True)
    ids, _ = run(clip(10), det, pred, detect_every=8, batch_size=8, min_score=0.35)
    assert det.calls == [0, 8] and all(v == [0] for v in ids.values())


def test_only_the_largest_faces_are_followed():
    det = Detector(boxes=[(0, 0, 6, 6), (10, 0, 14, 14), (20, 16, 10, 10)])
    pred = Predictor()
    frames = clip(2)
    out = list(follow_faces(frames, det, pred, FollowParams(max_faces=2)))
    sides = sorted(float(np.ptp(f.points[:, 0])) for f in out[0][1])
    assert sides == pytest.approx([10, 14])


def test_schedule_alone():
    s = Schedule(FollowParams(detect_every=4, batch_size=8, idle_detect_every=2))
    assert s.detect_now(following=False, lost=False)                 # never detected yet
    s.detected()
    assert s.chunk_size([False] * 8) == 4                             # up to the next detection
    assert s.chunk_size([False, False, True, False]) == 2            # never across a cut
    s.advance(1)
    assert not s.detect_now(following=True, lost=False) and s.detect_now(following=True, lost=True)
    s.advance(1)
    assert s.detect_now(following=False, lost=False) and not s.detect_now(following=True, lost=False)
    kept = np.array([[True], [False], [True]])
    v = s.verdict(kept, [7, 8, 9])
    assert (v.frame, v.done, v.retry) == (1, 1, True)
    v = s.verdict(kept[1:], [8, 9])                                   # the same frame a second time
    assert (v.frame, v.done, v.retry) == (0, 1, False)
    assert s.chunk_size([False] * 8) == 1                             # a face was dropped: one frame next
    v = s.verdict(kept[1:2], [10], fresh=np.array([True]))           # only a square just detected failed
    assert (v.frame, v.done, v.retry) == (0, 1, False)
    v = s.verdict(kept[1:2], [11], fresh=np.array([False]))          # a followed square: worth a retry
    assert v.retry
    s.verdict(kept[:1], [12])
    s.verdict(kept[:1], [13])
    s.detected()
    assert s.chunk_size([False] * 8) == 4                             # two clean chunks: 1 -> 2 -> 4


def test_faces_are_marked_lost_by_id_after_an_update_merged_two_tracks():
    from facetracks.pipeline.tracking import FaceTracker
    tr = FaceTracker()
    tr.detections(np.array([[10, 10, 8], [30, 10, 8], [60, 10, 8]], np.float32))
    tracks = list(tr.tracks)
    tr.update(np.array([[10, 10, 8], [10, 10, 8], [60, 10, 8]], np.float32), np.ones(3, bool))  # 0 and 1 merge
    tr.mark_lost({t.id for t, ok in zip(tracks, [True, True, False]) if not ok})
    assert [(t.id, t.lost) for t in tr.tracks] == [(0, False), (2, True)]


def test_turned_scans_run_while_no_face_is_followed_at_most_every_n_frames_and_on_a_new_shot():
    """Faces lying on their side (`detect.detect_turned`): three more scans of the frame, so only
    while no face is trusted, where the round finds no upright face, at most every `turned_every`
    frames, and at once on a new shot."""
    frames = clip(60, {35: 200})
    _, st = run(frames, Detector(no_face=set(range(256))), Predictor(), idle_detect_every=1, turned_every=10)
    assert st.turned_scans == len([0, 10, 20, 30, 35, 45, 55])
    _, st = run(frames, Detector(), Predictor(), idle_detect_every=1, turned_every=10)
    assert st.turned_scans == 0                     # an upright face on the first round of each shot
    # the network rejecting the upright box on every frame: scanned turned from the shot's second round
    ids, st = run(frames, Detector(), Predictor(occluded=set(range(60))), idle_detect_every=1, turned_every=10,
                  hold_lost=True)
    assert st.turned_scans >= 4 and not any(ids.values())
    _, st = run(frames, Detector(no_face=set(range(256))), Predictor(), idle_detect_every=1)
    assert st.turned_scans == 0


def test_of_two_tracks_on_one_face_the_trusted_one_survives_whatever_its_id():
    """Two squares set on one face in one round (the face found lying one way and a false box the
    other way, `detect.detect_turned`): the network trusts one; that one goes on, though the
    other is older by an id. Of two alike the older id survives, as before."""
    from facetracks.pipeline.tracking import FaceTracker
    tr = FaceTracker()
    tr.detections(np.array([[10, 10, 8], [16, 10, 8], [60, 10, 8], [66, 10, 8]], np.float32))
    tr.update(np.array([[10, 10, 8], [10.5, 10, 8], [60, 10, 8], [60.5, 10, 8]], np.float32),
              np.array([False, True, True, True]))
    assert [(t.id, t.lost) for t in tr.tracks] == [(1, False), (2, False)]


def test_a_lost_face_is_looked_for_near_where_it_was_and_the_cadence_goes_on():
    det, pred = Detector(), Predictor(low={4: 1})
    ids, st = run(clip(12), det, pred, detect_every=8, batch_size=8, look_near=True)
    assert det.calls == [0, 8] and det.near_calls == [4]        # no whole-frame detection for the drop
    assert st.detections == 2 and st.near_detections == 1
    assert all(v == [0] for v in ids.values())


def test_a_face_the_window_misses_is_dropped_and_the_whole_frame_is_searched_again():
    det, pred = Detector(no_face={4}), Predictor(low={4: 99})
    ids, st = run(clip(8), det, pred, detect_every=8, batch_size=8, look_near=True)
    assert det.near_calls == [4] and det.calls == [0, 5]        # dropped on 4; with no face, every frame
    assert ids[4] == [] and ids[5] == [1]


def test_a_held_face_is_looked_for_near_every_frame_and_comes_back_under_its_id():
    hand = set(range(3, 7))
    det, pred = Detector(no_face=hand), Predictor(occluded=hand)
    ids, st = run(clip(12), det, pred, detect_every=8, batch_size=8, hold_lost=True, look_near=True)
    assert det.calls == [0, 8]                                  # the cadence only
    assert det.near_calls == [3, 4, 5, 6, 7]                    # the drop on 3, then every held frame
    assert [ids[i] for i in range(12)] == [[0]] * 3 + [[]] * 4 + [[0]] * 5


def test_quiet_rounds_stretch_the_cadence_and_any_change_resets_it():
    s = Schedule(FollowParams(detect_every=4, max_detect_every=12, batch_size=32))
    s.detected()
    assert s.chunk_size([False] * 32) == 4
    for want in (8, 12, 12):                                          # 4 -> 8 -> 12, at most 12
        s.detected(quiet=True)
        assert s.chunk_size([False] * 32) == want
    s.detected(quiet=False)                                           # a face came, went or was re-seeded
    assert s.chunk_size([False] * 32) == 4
    s.detected(quiet=True)
    s.new_shot()
    s.detected()
    assert s.chunk_size([False] * 32) == 4                            # a new shot starts over
    fixed = Schedule(FollowParams(detect_every=4, batch_size=32))     # max_detect_every 0: no stretching
    fixed.detected(quiet=True)
    assert fixed.chunk_size([False] * 32) == 4


def test_a_round_is_quiet_only_when_every_followed_face_is_seen_again_and_none_comes():
    from facetracks.pipeline.tracking import FaceTracker
    tr = FaceTracker()
    a, b = [10, 10, 8], [40, 10, 8]
    assert not tr.detections(np.array([a], np.float32))              # a face came
    assert tr.detections(np.array([a], np.float32))                  # seen again, nothing else
    assert not tr.detections(np.array([a, b], np.float32))           # another came
    assert not tr.detections(np.array([a], np.float32))              # one was not seen
    tr.update(np.array([a, b], np.float32), np.array([True, False]))
    assert not tr.detections(np.array([a, b], np.float32))           # a lost face re-seeded


def test_a_steady_face_is_detected_less_often_and_followed_the_same():
    det, pred = Detector(), Predictor()
    ids, st = run(clip(64), det, pred, detect_every=4, max_detect_every=16, batch_size=8)
    assert det.calls == [0, 4, 12, 28, 44, 60]                       # gaps 4, 8, 16, 16, 16
    fixed_det = Detector()
    fixed, _ = run(clip(64), fixed_det, Predictor(), detect_every=4, batch_size=8)
    assert ids == fixed and len(fixed_det.calls) == 16


def test_a_window_over_a_face_followed_already_starts_no_track():
    """A lost face's window that finds only the face that came back under a track of its own (or
    took its place) must not start a duplicate of it, frame after frame."""
    from facetracks.pipeline.tracking import FaceTracker
    tr = FaceTracker()
    tr.detections(np.array([[10, 10, 8], [60, 10, 8]], np.float32))
    tr.update(np.array([[10, 10, 8], [60, 10, 8]], np.float32), np.array([False, True]))   # face 0 lost
    tr.redetections(np.array([[63, 10, 8]], np.float32))          # found only face 1 (IoU 0.45), followed
    assert [(t.id, t.lost) for t in tr.tracks] == [(0, True), (1, False)]
    tr.redetections(np.array([[40, 10, 8]], np.float32))          # a face on no track: a new one
    assert [t.id for t in tr.tracks] == [0, 1, 2]


def test_a_re_seeded_face_looks_near_from_the_narrowest_window_again():
    from facetracks.pipeline.tracking import FaceTracker
    tr = FaceTracker()
    tr.detections(np.array([[10, 10, 8]], np.float32))
    for _ in range(3):
        tr.update(np.array([[10, 10, 8]], np.float32), np.array([False]))
    assert tr.tracks[0].untrusted == 3
    tr.redetections(np.array([[11, 10, 8]], np.float32))
    assert not tr.tracks[0].lost and tr.tracks[0].untrusted == 0


def test_a_face_the_round_did_not_examine_is_neither_seen_nor_missed():
    """A round that rescanned only what changed (change_scan.py) did not look at a followed face:
    it is not counted unseen (no track ends for it), and the round can still be quiet."""
    from facetracks.pipeline.tracking import FaceTracker
    tr = FaceTracker(max_unconfirmed=1)
    a, b = [10, 10, 8], [40, 10, 8]
    tr.detections(np.array([a, b], np.float32))
    for _ in range(3):
        assert tr.detections(np.array([b], np.float32), examined=np.array([False, True]))
    assert [t.unconfirmed for t in tr.tracks] == [0, 0]
    assert not tr.detections(np.array([b], np.float32), examined=np.array([True, True]))
    tr.detections(np.array([b], np.float32))
    assert [t.id for t in tr.tracks] == [1]                          # unseen twice when looked at: ended



def test_a_cut_followed_by_a_change_of_frame_size_stays_a_cut():
    """The frame after a cut has another size (a rotation that changes midway): it cannot be
    compared with the frame before the cut, so it does not undo the cut."""
    frames = [Frame(i, i, i / 25, np.full((32, 32) if i < 11 else (32, 24), 100 if i < 10 else 220, np.uint8))
              for i in range(14)]
    for f in frames:
        f.gray[0, 0] = f.index
    det, pred = Detector(), Predictor()
    ids, st = run(frames, det, pred, detect_every=8, batch_size=8)
    assert st.cuts == 1 and st.transients == 0 and ids[9] != ids[10]


def test_a_square_that_is_not_finite_counts_as_changed_at_a_cut():
    from facetracks.pipeline.shots import Cut
    a, b = np.full((32, 32), 100, np.uint8), np.full((32, 32), 100, np.uint8)
    sq = np.array([[16, 16, 10, 0], [np.nan, 16, 10, 0], [16, 16, np.inf, 0]], np.float32)
    assert Cut(a, b).changed(sq, 12).tolist() == [False, True, True]
