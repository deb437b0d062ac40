"""Issue 15 lever: how far a followed face's first-pass square may move from the square it was cut
from and still skip the refine pass (`settled_move`, models/inference.py; 0.03 was chosen before the
heatmap head, on `ft68-resnet-s`). Val identities only: the labelled clips of steady_work.py, and
the val stills as `facetracks evaluate --part val` reads them (a detector's box that lands within
`settled_move` of the points' square settles too). Speed in-process on the shared clips, one run
each. Run from the repo: `python docs/eval/settled_move.py [--weights W] [--no-speed]` writes
docs/eval/settled_move.json.

The shipped `accurate` weights saw the val identities in training (`--include-val`), so a choice
that depends on how the network reads an off-centre crop of a val face is measured with weights
trained on the train identities alone: `--weights` the 60-epoch slim two-level run of
docs/eval/heads.json (`levels`), the same architecture; speed with the shipped weights.
"""
import json
import os
import sys
from dataclasses import replace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import steady_work as sw  # noqa: E402

from facetracks.pipeline.profiles import load_profile  # noqa: E402
from facetracks.training.evaluate import evaluate  # noqa: E402

MOVES = (0.03, 0.05, 0.08, 0.12)


def main() -> None:
    clips = sw.val_clips()
    speed = "--no-speed" not in sys.argv
    weights = sys.argv[sys.argv.index("--weights") + 1] if "--weights" in sys.argv else None
    parts = load_profile("accurate", weights=weights)
    out = {}
    for move in MOVES:
        p = replace(parts, predictor=replace(parts.predictor, settled_move=move))
        r = evaluate(p.predictor, sw.DATA, "identity", "haar", p.detector.detect, None, "val", p.follow.min_score)
        row = {"settled_move": move, "val_stills": {k: r[k] for k in ("nme_mean", "faces_found") if k in r},
               **sw.labelled(p, p.follow, clips)}
        if speed:
            row["speed"] = sw.speed(p, p.follow)
        row["weights"] = weights or parts.predictor.model_id
        out[str(move)] = row
        print(move, json.dumps(row), flush=True)
    with open(os.path.join(HERE, "settled_move.json"), "w") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
