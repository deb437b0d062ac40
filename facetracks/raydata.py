"""Landmarks for a Ray Data pipeline: a callable class to hand to `Dataset.map_batches`.

Ray Data builds one instance per actor, so the model is loaded once per actor and not once per
batch, and then calls it on each batch. It needs no Ray itself: called directly on a batch it
gives the same rows. Each image is a still, so there is nothing to follow: every image is
detected, and all the faces of a batch go through the network in one pass.

    import ray, facetracks
    ds = ray.data.read_images("photos/", include_paths=True)
    rows = ds.map_batches(facetracks.Landmarker, fn_constructor_kwargs={"profile": "accurate"},
                          batch_size=32, compute=ray.data.ActorPoolStrategy(size=4))
    rows.write_parquet("landmarks/")
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa

from facetracks.models.score import is_kept
from facetracks.pipeline.parquet import TableBuilder
from facetracks.pipeline.profiles import ProfileParts, load_profile
from facetracks.pipeline.schema import SCHEMA

FACE_COLUMN = "face"
# what the track files hold per face (box, score, points, ...): null on a no-face row
FACE_COLUMNS = SCHEMA.names[SCHEMA.get_field_index("track_id") + 1:]

# cv2 conversions to the 8-bit gray the model reads; BT.601 luma, the weights of the Y plane the
# video path reads (full range), so a frame and the same image as a photo give the same gray
_TO_GRAY = {3: cv2.COLOR_RGB2GRAY, 4: cv2.COLOR_RGBA2GRAY}


class Landmarker:
    """Batches of images in, a row per face out.

    In: a batch as `map_batches` gives it (a dict of numpy arrays, a pandas DataFrame or a pyarrow Table), with
    a column `image_column` of uint8 images, gray (H, W) or RGB (H, W, 3) (`read_images` gives
    RGB, or gray for a gray file; RGBA is taken too). Every other column is an id, one scalar a
    row (`path` from `read_images(..., include_paths=True)`), copied onto each row of its image.

    Out: a pyarrow Table (Ray Data takes any batch format back, and Arrow keeps real nulls, as the
    track files do): the ids, `face` (0 is the largest face of its image), x, y, w, h (the box of
    the 68 points), score, yaw, pitch, roll (the image as the camera), x_0..x_67, y_0..y_67 in
    pixels of the image: the track files' columns. An image with no face
    gives one row with `face` and the rest null, so no id is ever lost.

    `profile` names the model and detector settings ("accurate", "fast"); `weights` a
    checkpoint of your own instead of the profile's model; `device` e.g. "cuda" (default: a GPU
    if the actor has one, as with `num_gpus=1`, else the CPU).
    """

    def __init__(self, profile: str = "accurate", *, weights: str | os.PathLike | None = None,
                 device: str | None = None, image_column: str = "image"):
        self.parts: ProfileParts = load_profile(profile, device, os.fspath(weights) if weights else None)
        self.image_column = image_column

    def __call__(self, batch: Mapping[str, Any] | pd.DataFrame | pa.Table) -> pa.Table:
        if isinstance(batch, pa.Table):
            batch = _numpy_columns(batch)
        if self.image_column not in batch:
            raise KeyError(f"the batch has no {self.image_column!r} column (it has {', '.join(map(str, batch))}); "
                           f"name the image column with Landmarker(image_column=...)")
        images = list(batch[self.image_column])
        ids = {str(k): _id_column(k, batch[k]) for k in batch if k != self.image_column}
        clash = sorted(set(ids) & {FACE_COLUMN, *FACE_COLUMNS})
        if clash:
            raise ValueError(f"id column(s) {', '.join(clash)} would be overwritten by the landmark columns; rename them")
        grays = [to_gray(img, f"image {i}{_describe(ids, i)}") for i, img in enumerate(images)]
        faces = self.faces(grays)
        table = pa.concat_tables([_rows(i, g, found) for i, (g, found) in enumerate(zip(grays, faces))]
                                 or [TableBuilder("").table()])
        image = table.column("frame_index").to_numpy()
        out = {name: pa.array(values[image]) for name, values in ids.items()}
        out[FACE_COLUMN] = table.column("track_id")
        out.update((c, table.column(c)) for c in FACE_COLUMNS)
        return pa.table(out)

    def faces(self, grays: list[np.ndarray]) -> list[list[tuple[np.ndarray, float]]]:
        """For each image its faces, largest first, as (68 points, score): the detector on each,
        then one network pass for all. A detection whose landmarks score under the profile's
        `min_score` is not a face (the video path drops it too)."""
        det, pred, follow = self.parts.detector, self.parts.predictor, self.parts.follow
        owner, squares = [], []
        for i, gray in enumerate(grays):
            boxes = det.detect(gray)
            boxes = boxes[np.argsort(-boxes[:, 2], kind="stable")][:follow.max_faces]
            owner += [i] * len(boxes)
            squares.append(pred.squares_from_boxes(boxes[:, :4]) if len(boxes) else np.zeros((0, 3), np.float32))
        out: list[list[tuple[np.ndarray, float]]] = [[] for _ in grays]
        if not owner:
            return out
        pts, score = pred.predict_with_score([grays[i] for i in owner], np.concatenate(squares))
        for i, p, s, keep in zip(owner, pts, score, is_kept(score, follow.min_score)):
            if keep:
                out[i].append((p, float(s)))
        return out


def _numpy_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """A `batch_format="pyarrow"` batch as map_batches' numpy one: converted chunk by chunk, as Ray
    Data's tensor columns convert themselves to (N, H, W, C) or to one array per image (a whole
    column's `to_numpy` gave a flat buffer, or dicts, per image)."""
    def numpy(c: pa.Array) -> np.ndarray:     # Arrow's own tensors (Ray's ARROW_NATIVE format): whole
        return c.to_numpy_ndarray() if isinstance(c, pa.FixedShapeTensorArray) else c.to_numpy(zero_copy_only=False)
    return {name: np.concatenate([numpy(c) for c in table.column(name).chunks])
            if table.column(name).num_chunks else np.array([]) for name in table.column_names}


def to_gray(img: Any, what: str = "image") -> np.ndarray:
    """8-bit gray from gray (H, W), (H, W, 1), RGB (H, W, 3) or RGBA (H, W, 4) uint8."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] == 1 and a.shape[2] not in (1, 3, 4):
        a = a[0]        # a gray image in a batch with RGB ones: Ray Data pads it to (1, H, W)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{what}: {a.dtype} array of shape {a.shape}; expected uint8 gray (H, W) or RGB "
                         f"(H, W, 3) (ray.data.read_images(..., mode='RGB') gives that for any file)")
    if a.ndim == 2 or a.shape[2] == 1:
        return a.reshape(a.shape[:2])
    return cv2.cvtColor(np.ascontiguousarray(a), _TO_GRAY[a.shape[2]])


def _rows(i: int, gray: np.ndarray, faces: list[tuple[np.ndarray, float]]) -> pa.Table:
    """Image i's rows, built as a track file's frame is (`track_id` is the face's index; the
    image's size is the head pose's camera)."""
    rows = TableBuilder("", (gray.shape[1], gray.shape[0]))
    rows.add_frame(i, None, 0.0, [(k, pts, score) for k, (pts, score) in enumerate(faces)])
    return rows.table()


def _id_column(name: Any, column: Any) -> np.ndarray:
    values = column.to_numpy() if isinstance(column, pd.Series) else np.asarray(column)
    if values.ndim != 1:
        raise ValueError(f"id column {name!r} holds arrays of shape {values.shape[1:]}, not one value a row; "
                         f"drop it before map_batches (ds.drop_columns)")
    return values


def _describe(ids: dict[str, np.ndarray], i: int) -> str:
    return f" ({', '.join(f'{k}={v[i]}' for k, v in ids.items())})" if ids else ""
