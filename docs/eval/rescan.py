"""Issue 15 lever, measured against labels (val identities only, as docs/eval/steady_work.py):
`rescan_changed` (pipeline/change_scan.py), a detection that rescans only the cells that changed
since they were scanned, leaving out the faces followed and trusted, and the whole frame every
`full_scan_every` frames; against the whole frame every time.

Same clips and measures as steady_work.py (moving stills, head shakes, a hand over faces, faces
coming into steady shots) and in-process speed on the shared clips. Run from the repo:
`python docs/eval/rescan.py` writes docs/eval/rescan.json. (rescan_with_motion.log: the same run
with a trial of cropping each frame of a chunk where the face's last velocity put it, not taken.)
"""
import json
import os
import sys
from dataclasses import replace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import steady_work as sw  # noqa: E402

from facetracks.pipeline.profiles import load_profile  # noqa: E402

VARIANTS = {"accurate": {"whole frame": {"rescan_changed": 0.0}, "rescan 8 (default)": {}},
            "fast": {"whole frame": {"rescan_changed": 0.0}, "rescan 8 (default)": {}}}


def main() -> None:
    clips = sw.val_clips()
    only = sys.argv[1:]
    out = {}
    for prof, vs in VARIANTS.items():
        parts = load_profile(prof)
        for name, follow in vs.items():
            if only and f"{prof} {name}" not in only:
                continue
            f = replace(parts.follow, **follow)
            row = {"follow": follow, **sw.labelled(parts, f, clips), "speed": sw.speed(parts, f)}
            out[f"{prof} {name}"] = row
            print(f"{prof} {name}:", json.dumps({k: v for k, v in row.items() if k != "follow"}), flush=True)
    with open(os.path.join(HERE, "rescan.json"), "w") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
