"""`facetracks report OUT_DIR`: a page to look at a finished `annotate` run in any browser."""
from __future__ import annotations

import argparse
import os
import sys

from .argtypes import folder_or_uri, nonneg_int
from .outputs import local_folder
from .report import VIDEOS_PICTURED, write_report
from .report_data import ReportError, read_summary, unfinished


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write OUT_DIR/report.html: every video's numbers, frames and charts",
                       description=__doc__)
    p.add_argument("out_dir", metavar="OUT_DIR", type=folder_or_uri, help="the --out folder of `facetracks annotate` (local)")
    p.add_argument("--frames", type=nonneg_int, default=6, help="evenly spaced frames shown per video (default 6)")
    p.add_argument("--lowest", type=nonneg_int, default=4, help="lowest-score faces shown per video (default 4)")
    p.add_argument("--videos", type=nonneg_int, default=VIDEOS_PICTURED,
                   help=f"videos given pictures at most; past that, those with no face, then the lowest mean score "
                        f"(default {VIDEOS_PICTURED}); every video has its row")
    p.set_defaults(func=run)


def report(out_dir: str, frames: int = 6, lowest: int = 4, videos: int = VIDEOS_PICTURED) -> int:
    """Write the report and say where; one line and exit 2 when the folder holds no run."""
    folder = local_folder(out_dir)         # a path, or a file:// URI as annotate --out takes it
    if folder is None:
        print(f"facetracks report: {out_dir}: the report is written to a local folder; copy the run here first",
              file=sys.stderr)
        return 2
    try:
        path = write_report(folder, frames, lowest, videos)
        why = unfinished(read_summary(folder))
    except ReportError as e:
        print(f"facetracks report: {e}", file=sys.stderr)
        return 2
    print(f"report: {os.path.normpath(path)}" + (f"; {why}" if why else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    return report(args.out_dir, args.frames, args.lowest, args.videos)
