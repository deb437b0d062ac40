"""Argument types that refuse impossible values in the parser, with argparse's own one-line
error (exit 2), instead of a crash per video later."""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable
from urllib.parse import quote

from facetracks.models.registry import ARCHS, DEFAULT_MODEL
from facetracks.pipeline.smoothing import SmoothParams, parse_smooth

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def bounded(kind: type, ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value
    parse.__name__ = what
    return parse


positive_int = bounded(int, lambda v: v >= 1, ">= 1")
nonneg_int = bounded(int, lambda v: v >= 0, ">= 0")
nonneg_float = bounded(float, lambda v: v >= 0, ">= 0")
positive_float = bounded(float, lambda v: v > 0, "> 0")
unit_float = bounded(float, lambda v: 0 <= v <= 1, "in [0, 1]")
scale_step = bounded(float, lambda v: v > 1, "> 1 (the Haar scale step)")
crf = bounded(int, lambda v: 0 <= v <= 63, "in 0..63 (H.264 0..51)")


_URI_PATH_SAFE = "/:@!$&'()*+,;=~-._%"    # RFC 3986's path characters, and the "%" of an escape already there


def folder_or_uri(text: str) -> str:
    """An output folder (`--out`, `OUT_DIR`): a path or URI as given, but a file:// URI with its
    path percent-encoded where it holds what a URI cannot (`file:///tmp/a b` -> `file:///tmp/a%20b`,
    which pyarrow reads as the folder /tmp/a b; given as typed, pyarrow refused the space with a
    traceback). One already encoded is unchanged. (A bucket's keys are not parsed as a URI:
    `s3://b/a b` worked as it was.)"""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() != "file":
        return text
    rest, q, options = rest.partition("?")
    host, slash, path = rest.partition("/")
    path = quote(re.sub("%(?![0-9A-Fa-f]{2})", "%25", path), safe=_URI_PATH_SAFE)     # a lone % is a character
    return f"{scheme}://{host}{slash}{path}{q}{options}"


def smooth(text: str) -> SmoothParams:
    """`--smooth`: `parse_smooth`'s words on what is wrong (argparse shows an ArgumentTypeError's
    own message; for a ValueError only "invalid parse_smooth value")."""
    try:
        return parse_smooth(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


ARCH_FIELDS = {"input_size": int, "expand": float,           # the crop's, then the network's
               **{k: type(v) for k, v in ARCHS[DEFAULT_MODEL].net().items()}}   # widths: tuple, head: str, ...


def arch_override(text: str) -> tuple[str, object]:
    """`KEY=VALUE` changing one field of a named architecture (`widths=24,48,96,144`,
    `head_levels=2`, `expand=1.25`), for experiments; the checkpoint records the architecture and
    crop it was trained as."""
    key, sep, value = text.partition("=")
    if not sep or key not in ARCH_FIELDS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(ARCH_FIELDS)}")
    kind = ARCH_FIELDS[key]
    try:
        return key, tuple(int(v) for v in value.split(",")) if kind is tuple else kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {key} takes {'integers, comma-separated' if kind is tuple else kind.__name__}")
