"""The torch cascade (GPU actors; run here on the CPU) under ChangeScan: detector calls with every
round a whole scan (`rescan_changed` 0, as that cascade ran before a round with no change was
skipped) and with the profile's rescanning (such a round skipped), with the faces and ids each run
writes. Usage: python docs/eval/torch_skip.py CLIP...  (torch_skip.log: five shared clips)"""
import sys
from dataclasses import replace

import torch

from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import build_parts, get_profile


def run(clip: str, parts, follow) -> tuple[int, int, int]:
    """Detector calls, frames with a face, track ids."""
    r = annotate_video(clip, "x", parts.detector, parts.predictor, follow)
    df = r.table.select(["frame_index", "track_id", "x"]).to_pandas().dropna()
    return r.stats.detections - r.stats.skipped_scans, len(df), df.track_id.nunique()


def main() -> None:
    torch.set_num_threads(2)
    for prof in ("accurate", "fast"):
        p = get_profile(prof)
        parts = build_parts(prof, p.model, dict(p.detector, backend="torch"), p.follow, p.predictor, "cpu")
        for clip in sys.argv[1:]:
            old = run(clip, parts, replace(parts.follow, rescan_changed=0.0))
            new = run(clip, parts, parts.follow)
            print(prof, clip.split("/")[-1][:24], "detector calls old/new", old[0], new[0],
                  "faces", old[1], new[1], "ids", old[2], new[2], flush=True)


if __name__ == "__main__":
    main()
