"""`facetracks export OUT_DIR --format openface`: every track file of a run as a CSV that tools
written for OpenFace read (jobs/export.py says what maps to what)."""
from __future__ import annotations

import argparse
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from facetracks.pipeline.atomic import temp_path

from .argtypes import folder_or_uri
from .export import to_openface, write_csv
from .outputs import cannot_write, local_folder, track_files

FORMATS = ("openface",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="track files as OpenFace 2.x CSVs", description=__doc__)
    p.add_argument("out_dir", metavar="OUT_DIR", type=folder_or_uri, help="the --out folder of `facetracks annotate` (local)")
    p.add_argument("--format", default="openface", choices=FORMATS, help="openface: FeatureExtraction's columns")
    p.add_argument("--dest", default=None,
                   help="folder for the CSVs (default OUT_DIR/openface): <relative path>.csv per video")
    p.set_defaults(func=run)


def export_file(parquet: str, csv_path: str) -> int:
    """One track file -> one CSV, written under a temp name and moved into place; returns its rows."""
    of = to_openface(pq.read_table(parquet).to_pandas())
    with temp_path(csv_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        write_csv(of, f)
    return len(of)


def _refuse(message: str) -> int:
    """One line on stderr; exit 2 (the command cannot run as given)."""
    print(f"facetracks export: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    folder = local_folder(args.out_dir)     # a path, or a file:// URI as annotate --out takes it
    if folder is not None and os.path.isfile(folder):
        return _refuse(f"{args.out_dir} is a file, not a folder: give the --out folder of `facetracks annotate`")
    if folder is None or not os.path.isdir(folder):
        return _refuse(f"{args.out_dir}: no such local folder")
    args.out_dir = folder
    dest = os.path.abspath(args.dest or os.path.join(args.out_dir, "openface"))
    if os.path.exists(dest) and not os.path.isdir(dest):
        given = f"--dest {args.dest}" if args.dest else os.path.normpath(dest)
        return _refuse(f"{given} is a file, not a folder: name a folder for the CSVs (--dest)")
    damaged: list[tuple[str, str]] = []
    files = [p for p, _ in track_files(args.out_dir, skip=dest, damaged=damaged)]
    if not files and not damaged:
        return _refuse(f"no track files in {args.out_dir}")
    unwritable = cannot_write(dest)       # made here: the CSVs go under it
    if unwritable:
        return _refuse(f"cannot write to {os.path.normpath(dest)} ({unwritable})")
    for p, why in damaged:           # a damaged file is one that failed, not one left out unsaid
        print(f"  failed: {p}: cannot read it ({why})", file=sys.stderr)
    failed = len(damaged)
    files_total = len(files) + failed
    for p in files:
        rel = os.path.relpath(p, args.out_dir)[:-len(".parquet")]
        out = os.path.join(dest, rel + ".csv")
        try:
            rows = export_file(p, out)
        except (OSError, ValueError, pa.ArrowException) as e:
            print(f"  failed: {p}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"  {os.path.normpath(out)}: {rows} rows")
    print(f"export: {files_total - failed} of {files_total} track files as OpenFace CSV in {os.path.normpath(dest)}")
    return 1 if failed else 0
