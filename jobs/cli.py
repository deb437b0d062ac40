"""The `facetracks` console script: one command, a subcommand per job."""
from __future__ import annotations

import argparse
import sys

from facetracks.pipeline.video import VideoError

from . import annotate_cmd, bench, evaluate_cmd, export_cmd, render_cmd, report_cmd, stopping, train_cmd


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facetracks", description="68-point facial landmarks on video, at scale")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in (annotate_cmd, render_cmd, report_cmd, export_cmd, bench, train_cmd, evaluate_cmd):
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with stopping.on_signals():
        try:
            return int(args.func(args) or 0)
        except (VideoError, FileNotFoundError) as e:    # a file named on the command line: one line, no traceback
            what = f"no such file: {e.filename}" if isinstance(e, FileNotFoundError) and e.filename else str(e)
            print(f"facetracks {args.command}: {what}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:           # a command that has no words of its own for it
            what, code = stopping.stopped_by()
            print(f"facetracks {args.command}: {what}", file=sys.stderr)
            return code


if __name__ == "__main__":
    sys.exit(main())
