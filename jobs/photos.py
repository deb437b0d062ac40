"""Photos on the Ray actors: many to a task (a folder of 10,000 photos is a few hundred tasks, not
10,000), each still its own output file, summary entry, failure and rerun decision.

One Parquet file per photo, `<relative path>.parquet` as for a video: a rerun decides photo by
photo (one new photo in a folder redoes only it), a bad photo fails alone, and every reader of
track files takes a photo's file unchanged. A rendered photo is written by OpenCV, whose
encoders keep no comment to hold a render key (a video's container does), so the summary that
wrote it says which render it is; with no such record it is simply redone (it is cheap).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs

from .inputs import VideoItem
from .outputs import exists

PHOTOS_PER_TASK = 32       # enough to amortise a task's round trip over photos that take ~20 ms each
MIN_TASKS = 8              # a handful of photos still spreads over the actors


@dataclass(frozen=True)
class PhotoBatch:
    items: tuple[VideoItem, ...]

    @property
    def name(self) -> str:
        """The driver's key for the task (never a summary entry: each photo has its own)."""
        first = self.items[0].name
        return f"photos[{first}]" if len(self.items) == 1 else f"photos[{first} +{len(self.items) - 1}]"

    @property
    def path(self) -> str:
        return self.items[0].path


def batches(photos: list[VideoItem], per_task: int = PHOTOS_PER_TASK) -> list[PhotoBatch]:
    size = max(1, min(per_task, -(-len(photos) // MIN_TASKS)))
    return [PhotoBatch(tuple(photos[i:i + size])) for i in range(0, len(photos), size)]


def render_current(it: VideoItem, plan: tuple[str, str] | None, earlier: dict, fs: pafs.FileSystem,
                   keys: tuple[str, ...] = ()) -> bool:
    """`plan`: (where the render goes, its render key), None when this run does not render;
    `keys`: the keys that make it current (default its own)."""
    if plan is None:
        return True
    before = earlier.get(it.name, {}).get("render", {})
    return before.get("status") == "ok" and before.get("key") in (keys or (plan[1],)) and exists(fs, plan[0])


def failed_each(batch: PhotoBatch, error: str) -> list[dict]:
    """A batch that failed as a whole (its worker's error): each photo's result, naming it."""
    return [{"item": it, "segment": None, "status": "failed", "error": f"{it.path}: {error}"} for it in batch.items]
