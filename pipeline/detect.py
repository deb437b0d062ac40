"""Face detection: OpenCV's Haar cascade behind a small pluggable interface.

Every detector returns an (N, 5) float32 array of x, y, w, h, score in the pixels of the image it
was given, so the rest of the pipeline never knows which detector ran. The cascade XML comes from
the installed OpenCV (`cv2.data`), never a copied file; with OpenCV 5, which ships none,
`FACETRACKS_CASCADE_DIR` names a folder holding OpenCV 4's XMLs, which the torch evaluation of the
cascade (`haar_torch.py`) reads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Protocol

import cv2
import numpy as np

from facetracks.models.crop import CropSpec, crop_matrices, invert_affines, tilt_of_turn


class FaceDetector(Protocol):
    def detect(self, gray: np.ndarray) -> np.ndarray: ...


CASCADE_DIR_ENV = "FACETRACKS_CASCADE_DIR"


def _cascade_path(name: str) -> str:
    folder = os.environ.get(CASCADE_DIR_ENV)
    if folder:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise RuntimeError(f"{path}: no such cascade (from ${CASCADE_DIR_ENV})")
        return path
    data = getattr(cv2, "data", None)
    if data is None or not os.path.isfile(os.path.join(getattr(data, "haarcascades", ""), name)):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no Haar cascades (5.x dropped them); install "
                           f"opencv-python-headless<5, or set ${CASCADE_DIR_ENV} to a folder of OpenCV 4's XMLs "
                           f"(the torch detector reads them)")
    return os.path.join(data.haarcascades, name)


def scan_scale(shape: tuple[int, ...], detect_side: int) -> tuple[float, tuple[int, int]]:
    """The factor that brings a frame of `shape` to at most `detect_side` on its longest side, and
    the (w, h) the cascade then sees. With `min_window`, one rule for OpenCV's cascade and the
    torch one, so both read the same pixels at the same scales."""
    h, w = shape[:2]
    f = min(1.0, detect_side / max(h, w))
    return f, ((w, h) if f == 1.0 else (round(w * f), round(h * f)))


def min_window(min_face: int, f: float) -> int:
    """The smallest window side scanned: `min_face` frame pixels at factor `f`, at least 8."""
    return max(8, round(min_face * f))


@dataclass
class HaarDetector:
    """Haar cascade on a downscaled copy of the frame.

    `detect_side` bounds the longest side the cascade sees (detection cost grows with area, and
    faces worth landmarking survive the downscale); boxes are mapped back to full resolution.
    The score is the cascade's final-stage weight (`detectMultiScale3` level weights), a margin
    that grows with how face-like the window is.
    """
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face: int = 24             # smallest face side, pixels of the full frame
    detect_side: int = 640         # longest side the cascade sees
    cascade: str = "haarcascade_frontalface_default.xml"
    _clf: cv2.CascadeClassifier = field(init=False, repr=False)

    def __post_init__(self) -> None:
        path = _cascade_path(self.cascade)
        if not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no CascadeClassifier (5.x dropped it): install "
                               f"opencv-python-headless<5, or use the torch detector (--detector torch)")
        self._clf = cv2.CascadeClassifier(path)
        if self._clf.empty():
            raise RuntimeError(f"cannot load Haar cascade {path}")

    def detect(self, gray: np.ndarray) -> np.ndarray:
        return self._scan(*self._downscaled(gray))

    def detect_in(self, gray: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
        """The faces wholly inside `region` (x0, y0, x1, y1, pixels of `gray`), found at the scale
        a scan of the whole of `gray` uses, in `gray`'s pixels (`change_scan.py` rescans only what
        changed this way). The frame is downscaled whole, as `detect` does, and the rectangle cut
        from that at even pixels, so its first scale's windows fall where a whole scan's do."""
        img, f = self._downscaled(gray)
        x0, y0 = (int(v * f) // 2 * 2 for v in region[:2])
        x1, y1 = (min(n, int(np.ceil(v * f))) for v, n in zip(region[2:], (img.shape[1], img.shape[0])))
        out = self._scan(img[y0:y1, x0:x1], f)
        out[:, 0] += x0 / f
        out[:, 1] += y0 / f
        return out

    def _downscaled(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame as the cascade sees it (longest side at most `detect_side`), and the factor."""
        f, size = scan_scale(gray.shape, self.detect_side)
        img = gray if f == 1.0 else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return img, f

    def _scan(self, img: np.ndarray, f: float) -> np.ndarray:
        """The cascade on `img`, a frame (or part of one) scaled by `f`: boxes in unscaled pixels."""
        min_side = min_window(self.min_face, f)
        if min(img.shape[:2]) < max(min_side, 24):       # smaller than the cascade's window
            return np.zeros((0, 5), np.float32)
        boxes, _, weights = self._clf.detectMultiScale3(
            img, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side), outputRejectLevels=True)
        if len(boxes) == 0:
            return np.zeros((0, 5), np.float32)
        out = np.hstack([np.asarray(boxes, np.float32) / f, np.asarray(weights, np.float32).reshape(-1, 1)])
        return out[np.argsort(-out[:, 4])]


OVERSIZE_MIN = 0.6      # the smallest face `detect_oversize` looks for, in shorter sides of the frame
OVERSIZE_PAD = 1 / 3    # the border it adds on each side, in shorter sides of the frame
OVERSIZE_WINDOW = 24    # canvas pixels the smallest such face gets: the cascade's own window


def detect_whole(detector: FaceDetector, gray: np.ndarray, oversize: bool = True) -> np.ndarray:
    """A whole-frame detection: the detector's boxes, and where it finds none (with `oversize`),
    `detect_oversize`'s: a close-up face too big for the frame is then the only face there is."""
    boxes = detector.detect(gray)
    return boxes if len(boxes) or not oversize else detect_oversize(detector, gray)


def detect_oversize(detector: FaceDetector, gray: np.ndarray) -> np.ndarray:
    """Faces larger than the frame, or cut by its edge: the frame shrunk so that a face of
    `OVERSIZE_MIN` of its shorter side is the cascade's 24 px window, inside a replicated border of
    `OVERSIZE_PAD` of that side all round. Boxes (N, 5) in the frame's pixels; they may reach past
    its edges, which crops replicate as they do for any face at the edge.

    Why: the cascade's largest window is the frame, and a window needs the whole face. A webcam
    close-up whose chin or forehead leaves the frame was found on few frames or none (the bundled
    sample zoomed 1.8x: 42 of 120 frames, 92 with this; moved down until a third of the face is
    below the frame: none, 62 with this), though once given a square the network reads it as it
    reads a face at the edge. About 2 ms (a ~100 px image), and only for frames where the
    whole-frame scan found nothing."""
    h, w = gray.shape[:2]
    short = min(h, w)
    f = OVERSIZE_WINDOW / (OVERSIZE_MIN * short)           # canvas pixels per frame pixel
    small = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    pad = round(OVERSIZE_PAD * short * f)
    canvas = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    boxes = np.asarray(detector.detect(canvas), np.float32).reshape(-1, 5)
    boxes = boxes[boxes[:, 2] >= OVERSIZE_WINDOW - 0.5]      # smaller windows (another detector): not its faces
    out = boxes.copy()
    out[:, :2] = (boxes[:, :2] - pad) / f
    out[:, 2:4] = boxes[:, 2:4] / f
    return out


# a frame turned a quarter at a time: cv2's code, and the crop turn (radians, `crop.crop_matrices`)
# that cuts a face found upright in the turned frame upright from the frame itself
QUARTER_TURNS = ((cv2.ROTATE_90_COUNTERCLOCKWISE, np.pi / 2), (cv2.ROTATE_90_CLOCKWISE, -np.pi / 2),
                 (cv2.ROTATE_180, np.pi))


def detect_turned(detector: FaceDetector, gray: np.ndarray, to_squares: Callable[[np.ndarray], np.ndarray]
                  ) -> np.ndarray:
    """Faces lying on their side or upside down: the detector on the frame turned a quarter, the
    other quarter and a half, as (N, 4) squares (cx, cy, side, turn) in the frame. `to_squares` (the
    landmark model's box calibration) is applied in the turned frame, where the face is upright as
    the calibration was fitted, and the square is turned back.

    Why: the frontal cascade sees faces within about 20 degrees of upright, and the crops of a
    followed face turn with it (`crop.square_along_face`), but nothing found a face that was never
    upright: a clip filmed sideways whose rotation tag was lost (a messenger's re-encode, a screen
    recording), a camera mounted on its side or upside down, a person lying down. The bundled
    sample turned a quarter or a half: no face on any frame without this. Three scans of the
    whole frame; `follow` runs them only while no face is trusted, at most every
    `FollowParams.turned_every` frames (`Schedule.turned_scan`)."""
    centre = (np.array(gray.shape[1::-1], np.float64) - 1) / 2
    out = []
    for code, turn in QUARTER_TURNS:
        img = cv2.rotate(gray, code)
        boxes = np.asarray(detector.detect(img), np.float32).reshape(-1, 5)
        if not len(boxes):
            continue
        sq = np.asarray(to_squares(boxes[:, :4]), np.float64).reshape(-1, 3)
        # the turned frame is the frame turned by -turn about its centre (`crop.crop_matrices`'
        # convention): its pixel centres go back by the turn
        c, s = round(np.cos(turn)), round(np.sin(turn))
        d = sq[:, :2] - (np.array(img.shape[1::-1], np.float64) - 1) / 2
        xy = centre + d @ np.array([[c, s], [-s, c]], np.float64)
        out.append(np.column_stack([xy, sq[:, 2], np.full(len(sq), turn)]).astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, 4), np.float32)


NEAR_SIDE = 96       # pixels of the window `detect_near` hands the detector
NEAR_REACH = 2.5     # window side, in face-square sides: how far a face may have moved since
NEAR_GROWTH = 0.25   # ... wider by this many sides for each frame the face has not been trusted
NEAR_MAX_REACH = 6.0


def near_reach(untrusted: int) -> float:
    """How wide to look for a face not trusted for `untrusted` frames: it may have moved on since
    (a face crossing the frame at a tenth of its size a frame leaves a 2.5-side window in 6 frames)."""
    return min(NEAR_MAX_REACH, NEAR_REACH + NEAR_GROWTH * max(0, untrusted - 1))


def detect_near(detector: FaceDetector, gray: np.ndarray, square: np.ndarray,
                to_squares: Callable[[np.ndarray], np.ndarray], side: int | None = None,
                reach: float = NEAR_REACH) -> np.ndarray:
    """The detector on a window around one face square (cx, cy, side, and optionally the turn its
    crop was cut at), resampled to `side` pixels and turned by that turn: the faces found, as (N, 4)
    squares (cx, cy, side, turn) in the frame. `to_squares` makes (N, 3) squares of (N, 4) boxes
    (the landmark model's calibration, `LandmarkPredictor.squares_from_boxes`); it is applied in
    the window, where the face stands as upright as the cascade needs it, and the squares are then
    turned back with the window's turn.

    Why: a followed face whose landmarks stopped being trusted (a hand over it, a fast turn) is
    looked for where it just was, at about its size and tilt. The window puts the expected face at
    about 44 px whatever its size in the frame, so the cascade scans a 96 px image instead of every
    scale of the whole frame. Faces from 0.55x the expected size up to the whole window are found.
    The turn: the frontal cascade finds faces within about 20 degrees of upright, so a face
    followed while tilted 45 degrees was never found again once a hand had passed over it. The
    window is turned by the face's whole tilt (the crop's turn plus the zone it leaves).
    """
    side = side or round(NEAR_SIDE * reach / NEAR_REACH)    # the expected face at the same ~44 px
    sq = np.asarray(square, np.float64).ravel()
    cx, cy, s = sq[:3]
    turn = float(sq[3]) if len(sq) > 3 else 0.0
    tilt = tilt_of_turn(turn)          # the cascade's window is turned the face's whole way
    f = side / (reach * s)                         # frame px -> window px
    # the window is a crop of the square, `reach` sides wide, turned by the tilt (`crop.crop_matrices`)
    m = np.float32(crop_matrices([cx, cy, s, tilt], CropSpec(side, reach))[0])
    win = cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_AREA if f < 1 and not tilt else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    boxes = detector.detect(win)
    out = np.zeros((len(boxes), 4), np.float32)
    if len(boxes):
        found = np.asarray(to_squares(np.asarray(boxes)[:, :4]), np.float64).reshape(-1, 3)
        back = invert_affines(m[None].astype(np.float64))[0]          # window px -> frame px
        out[:, :2] = found[:, :2] @ back[:, :2].T + back[:, 2]
        out[:, 2] = found[:, 2] / f
        out[:, 3] = turn
    return out
