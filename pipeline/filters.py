"""Face filters: functions (bgr frame, faces) -> bgr frame, drawn by the project itself.

Overlays are RGBA sprites placed with a similarity transform (scale, rotation, translation)
fitted from the sprite's own anchor points to the face's landmarks, so a tilted head gets tilted
sunglasses; they are alpha-blended inside the sprite's footprint only and clipped at the frame
edge. The sprites are drawn procedurally with OpenCV at import-free cost (cached on first use):
no art files, nothing downloaded.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from facetracks.models.draw import draw_landmarks
from facetracks.models.landmarks68 import (BROWS_MIDDLE, LEFT_BROW_OUTER, LEFT_EYE, LEFT_EYE_OUTER, LEFT_MOUTH_CORNER,
                                           LEFT_NOSTRIL, NOSE_BASE, RIGHT_BROW_OUTER, RIGHT_EYE, RIGHT_EYE_OUTER,
                                           RIGHT_MOUTH_CORNER, RIGHT_NOSTRIL, UPPER_LIP_TOP)

FilterFn = Callable[[np.ndarray, list[np.ndarray]], np.ndarray]   # (bgr, [points (68, 2)]) -> bgr


@dataclass(frozen=True)
class Sprite:
    rgba: np.ndarray          # (H, W, 4) uint8
    anchors: np.ndarray       # (K, 2) sprite pixels that land on ...
    targets: tuple            # ... these landmark groups (each an index or a range, averaged)


def _target_points(points: np.ndarray, targets: tuple) -> np.ndarray:
    return np.stack([points[list(t)].mean(axis=0) if isinstance(t, (range, list, tuple)) else points[t]
                     for t in targets]).astype(np.float32)


def place(bgr: np.ndarray, sprite: Sprite, points: np.ndarray) -> np.ndarray:
    """Warp the sprite onto the face with a fitted similarity transform and alpha-blend it in place."""
    dst = _target_points(points, sprite.targets)
    m, _ = cv2.estimateAffinePartial2D(sprite.anchors.astype(np.float32), dst, method=cv2.LMEDS)
    if m is None:
        return bgr
    h, w = sprite.rgba.shape[:2]
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float32) @ m[:, :2].T + m[:, 2]
    H, W = bgr.shape[:2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1 <= x0 or y1 <= y0:
        return bgr                                    # entirely outside the frame
    m = m.copy()
    m[:, 2] -= (x0, y0)                               # warp only the footprint inside the frame
    layer = cv2.warpAffine(sprite.rgba, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    alpha = layer[..., 3:4].astype(np.float32) / 255.0
    roi = bgr[y0:y1, x0:x1]
    roi[:] = (roi * (1 - alpha) + layer[..., :3] * alpha).astype(np.uint8)
    return bgr


def _canvas(w: int, h: int) -> np.ndarray:
    return np.zeros((h, w, 4), np.uint8)


@functools.lru_cache(maxsize=None)
def sunglasses() -> Sprite:
    img = _canvas(420, 160)
    for cx in (110, 310):
        cv2.ellipse(img, (cx, 80), (92, 62), 0, 0, 360, (25, 25, 25, 235), -1, cv2.LINE_AA)
        cv2.ellipse(img, (cx, 80), (92, 62), 0, 0, 360, (10, 10, 10, 255), 8, cv2.LINE_AA)
        cv2.ellipse(img, (cx - 35, 55), (28, 12), -25, 0, 360, (200, 200, 200, 110), -1, cv2.LINE_AA)
    cv2.line(img, (195, 62), (225, 62), (10, 10, 10, 255), 12, cv2.LINE_AA)
    cv2.line(img, (20, 55), (0, 45), (10, 10, 10, 255), 10, cv2.LINE_AA)
    cv2.line(img, (400, 55), (419, 45), (10, 10, 10, 255), 10, cv2.LINE_AA)
    # lens centres on the eye centres, frame edges on the outer eye corners (the subject's right on the image left)
    return Sprite(img, np.array([[110, 80], [310, 80], [40, 80], [380, 80]], np.float32),
                  (RIGHT_EYE, LEFT_EYE, RIGHT_EYE_OUTER, LEFT_EYE_OUTER))


@functools.lru_cache(maxsize=None)
def moustache() -> Sprite:
    img = _canvas(300, 110)
    col = (30, 45, 75, 250)
    for side in (-1, 1):
        pts = [(150, 30), (150 + side * 40, 18), (150 + side * 95, 30), (150 + side * 135, 70),
               (150 + side * 145, 45), (150 + side * 120, 88), (150 + side * 70, 75), (150, 60)]
        cv2.fillPoly(img, [np.array(pts, np.int32)], col, cv2.LINE_AA)
    img[..., 3] = cv2.GaussianBlur(img[..., 3], (0, 0), 1.2)
    # between the nostrils and the upper lip, as wide as the mouth
    return Sprite(img, np.array([[150, 15], [55, 62], [245, 62], [150, 62]], np.float32),
                  (NOSE_BASE, RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER, UPPER_LIP_TOP))


@functools.lru_cache(maxsize=None)
def party_hat() -> Sprite:
    img = _canvas(240, 300)
    cone = np.array([(120, 10), (20, 270), (220, 270)], np.int32)
    cv2.fillPoly(img, [cone], (200, 60, 230, 255), cv2.LINE_AA)
    for k, y in enumerate(range(60, 270, 50)):
        half = (y - 10) * 100 // 260
        cv2.line(img, (120 - half, y), (120 + half, y + 12), (40, 220, 250, 255) if k % 2 else (90, 230, 90, 255),
                 10, cv2.LINE_AA)
    cv2.ellipse(img, (120, 272), (105, 18), 0, 0, 360, (250, 250, 250, 255), -1, cv2.LINE_AA)
    cv2.circle(img, (120, 14), 16, (60, 200, 255, 255), -1, cv2.LINE_AA)
    # brim on the brows, centred over the nose bridge
    return Sprite(img, np.array([[30, 300], [210, 300], [120, 300]], np.float32),
                  (RIGHT_BROW_OUTER, LEFT_BROW_OUTER, BROWS_MIDDLE))


ANCHORS = {  # for a user's overlay PNG: landmark pair it spans and the share of its width they cover
    "eyes": ((RIGHT_EYE_OUTER, LEFT_EYE_OUTER), 0.8),
    "nose": ((RIGHT_NOSTRIL, LEFT_NOSTRIL), 0.45),
    "mouth": ((RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER), 0.7),
}


def load_overlay(source: str | bytes, anchor: str) -> Sprite:
    """A user's PNG with alpha (a path, or the file's bytes as Ray actors get them), spanning the
    anchor's landmark pair across `share` of its width. 16-bit PNGs are scaled to 8 bits."""
    if anchor not in ANCHORS:
        raise ValueError(f"unknown anchor {anchor!r}: choose from {', '.join(ANCHORS)}")
    name = "overlay" if isinstance(source, bytes) else source
    if isinstance(source, bytes):
        img = cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_UNCHANGED) if source else None
    elif not os.path.exists(source):
        raise ValueError(f"{source}: no such overlay file")
    else:
        img = cv2.imread(source, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{name}: not a readable image")
    if img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"{name}: overlay needs an alpha channel (RGBA PNG); this image has none")
    if img.dtype == np.uint16:
        img = np.round(img / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"{name}: overlay must be 8- or 16-bit, not {img.dtype}")
    (a, b), share = ANCHORS[anchor]
    h, w = img.shape[:2]
    anchors = np.array([[w * (1 - share) / 2, h / 2], [w * (1 + share) / 2, h / 2]], np.float32)
    return Sprite(img, anchors, (a, b))


def face_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """The whole face: an ellipse around the landmarks, raised to take in the forehead."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    w, h = hi - lo
    centre = ((lo[0] + hi[0]) / 2, lo[1] + h * 0.38)
    axes = (w * 0.62, h * 0.78)
    mask = np.zeros(shape[:2], np.uint8)
    cv2.ellipse(mask, (centre, (2 * axes[0], 2 * axes[1]), 0.0), 255, -1)
    return mask


BLUR_SIDE = 64    # px: the longest side of the copy of a face region that `blurred` blurs


def blur_size(w: int, h: int) -> tuple[int, int]:
    """The size `blurred` blurs a w x h face region at: shrunk to at most BLUR_SIDE a side, never grown."""
    scale = min(1.0, BLUR_SIDE / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def blurred(roi: np.ndarray) -> np.ndarray:
    """A face region blurred past recognition: a Gaussian of sigma a sixth of its size, then a box
    as wide. Done on a copy shrunk to `blur_size` and scaled back up, the same blur at any face size
    (within 3 levels of the full-size one): at full size the Gaussian's cost grew with the cube of
    the face's size (1.9 s a 1080p frame with a 600 px face, 93 s a 4000x3000 photo with a 2000 px
    one); shrunk, it costs what the two resizes cost (0.03 s, 0.16 s)."""
    h, w = roi.shape[:2]
    sw, sh = blur_size(w, h)
    sigma = max(3.0, max(w, h) / 6) * sw / w             # in the shrunk copy's pixels
    small = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma)
    small = cv2.blur(small, (max(1, round(sigma)),) * 2)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _anonymise(bgr: np.ndarray, faces: list[np.ndarray], how: str) -> np.ndarray:
    for points in faces:
        mask = face_mask(bgr.shape, points)
        ys, xs = np.nonzero(mask)
        if not len(xs):
            continue
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        roi = bgr[y0:y1, x0:x1]
        if how == "blur":
            new = blurred(roi)
        else:
            block = max(4, int(max(x1 - x0, y1 - y0) / 10))
            small = cv2.resize(roi, (max(1, (x1 - x0) // block), max(1, (y1 - y0) // block)),
                               interpolation=cv2.INTER_AREA)
            new = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        m = mask[y0:y1, x0:x1, None] > 0
        roi[:] = np.where(m, new, roi)
    return bgr


def _sprite_filter(sprite_fn: Callable[[], Sprite]) -> FilterFn:
    def apply(bgr, faces):
        sprite = sprite_fn()
        for points in faces:
            place(bgr, sprite, points)
        return bgr
    return apply


def _landmarks(bgr, faces):
    thick = max(1, round(max(bgr.shape[:2]) / 640))
    for points in faces:
        draw_landmarks(bgr, points, (0, 255, 0), radius=thick + 1, thickness=thick)
    return bgr


FILTERS: dict[str, FilterFn] = {
    "sunglasses": _sprite_filter(sunglasses),
    "moustache": _sprite_filter(moustache),
    "party_hat": _sprite_filter(party_hat),
    "landmarks": _landmarks,
    "blur": lambda bgr, faces: _anonymise(bgr, faces, "blur"),
    "pixelate": lambda bgr, faces: _anonymise(bgr, faces, "pixelate"),
}


def get_filter(name: str | None, overlay: str | bytes | None = None, anchor: str = "eyes") -> FilterFn:
    """A filter by name; `overlay` (a PNG path or its bytes) makes a filter from the user's own
    image, under the name "overlay" (or None); that name without an image is refused as such (it was
    "unknown filter 'overlay'", a name the help lists). An overlay with another filter's name is
    refused: it drew the overlay alone, so `blur` with an overlay left the faces it was to hide sharp."""
    if overlay and name not in (None, "overlay") and not name.startswith("overlay-"):
        raise ValueError(f"an overlay draws your image instead of a filter, so the {name} filter would not be "
                         f"drawn: use the overlay filter with it, or {name} without an overlay")
    if overlay:
        sprite = load_overlay(overlay, anchor)
        return _sprite_filter(lambda: sprite)
    if name is None:
        name = "sunglasses"
    if name == "overlay" or name.startswith("overlay-"):     # listed by help, but drawn only from the user's image
        raise ValueError("the overlay filter needs --overlay PNG (in Python: overlay=PATH), your RGBA image")
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}: choose from {', '.join(FILTERS)} or --overlay PNG")
    return FILTERS[name]
