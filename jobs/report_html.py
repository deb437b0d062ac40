"""The report's HTML: one static page, no script, no server, images by relative path, every name
escaped (file names are the user's and may hold anything)."""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from .report_data import VideoReport, unfinished


@dataclass
class Picture:
    src: str                 # relative to report.html
    width: int
    height: int
    caption: str = ""


@dataclass
class VideoPictures:
    frames: list[Picture] = field(default_factory=list)
    worst: list[Picture] = field(default_factory=list)
    timeline: Picture | None = None
    score: Picture | None = None
    notes: list[str] = field(default_factory=list)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 6px} h3{font-size:13px;margin:12px 0 4px;color:#555}
table{border-collapse:collapse;background:#fff;font-size:13px} th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f0f0f0} td.name,td.err{text-align:left} td.err{color:#b00020;max-width:480px}
.ok{color:#1b7f35} .skipped{color:#555} .failed{color:#b00020;font-weight:600}
.strip{display:flex;flex-wrap:wrap;gap:8px} figure{margin:0;background:#fff;border:1px solid #ddd;padding:4px}
figcaption{font-size:11px;color:#555;text-align:center} .note{color:#8a5300;font-size:13px}
section{border-top:1px solid #ddd;margin-top:12px} .meta{color:#555;font-size:13px}
"""


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _num(v: float | int | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def _img(p: Picture) -> str:
    cap = f'<figcaption style="width:{p.width}px">{_e(p.caption)}</figcaption>' if p.caption else ""
    return (f'<figure><img src="{_e(quote(p.src))}" width="{p.width}" height="{p.height}" '
            f'alt="{_e(p.caption or p.src)}">{cap}</figure>')


def _row(i: int, v: VideoReport, linked: bool) -> str:
    share = None if v.face_share is None else 100 * v.face_share
    name = f'<a href="#v{i:03d}">{_e(v.name)}</a>' if linked else _e(v.name)
    return (f'<tr><td class="name">{name}</td>'
            f'<td class="{_e(v.status)}">{_e(v.status)}</td><td>{_num(v.frames, "d")}</td>'
            f'<td>{_num(share, ".1f")}{"" if share is None else " %"}</td><td>{v.tracks if v.frames else "–"}</td>'
            f'<td>{_num(v.mean_score, ".3f")}</td><td>{_num(v.fps, ".1f")}</td>'
            f'<td class="err">{_e(v.error or v.note or "")}</td></tr>')


def _section(i: int, v: VideoReport, pics: VideoPictures) -> str:
    out = [f'<section id="v{i:03d}"><h2>{_e(v.name)} <span class="{_e(v.status)}">({_e(v.status)})</span></h2>']
    if v.error:
        out.append(f'<p class="failed">{_e(v.error)}</p>')
    if v.source:
        out.append(f'<p class="meta">source: {_e(v.source)} · {_num(v.duration_s, ".1f")} s</p>')
    out += [f'<p class="note">{_e(n)}</p>' for n in pics.notes]
    for title, group in (("Frames, evenly spaced", pics.frames), ("Lowest-score faces", pics.worst)):
        if group:
            out.append(f'<h3>{title}</h3><div class="strip">{"".join(_img(p) for p in group)}</div>')
    for title, p in (("Tracks over time", pics.timeline), ("Score over time (dashed: the run's --min-score)", pics.score)):
        if p:
            out.append(f"<h3>{title}</h3>{_img(p)}")
    out.append("</section>")
    return "\n".join(out)


def render_html(out_dir: str, summary: dict, videos: list[VideoReport], pictures: list[VideoPictures | None]) -> str:
    """The page: a row for every video, a section for each that has pictures (None: it has none,
    a large run pictures only the videos most worth a look)."""
    counts = {s: sum(v.status == s for v in videos) for s in ("ok", "skipped", "failed", "earlier")}
    earlier = f", {counts['earlier']} from earlier runs" if counts["earlier"] else ""
    head = (f"run {_e(summary.get('run', '?'))} · model {_e(summary.get('model', '?'))} · "
            f"{len(videos)} videos: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed{earlier} · "
            f"{_num(summary.get('seconds'), '.1f')} s · report written {time.strftime('%Y-%m-%d %H:%M')}")
    rows = "\n".join(_row(i, v, p is not None) for i, (v, p) in enumerate(zip(videos, pictures)))
    sections = "\n".join(_section(i, v, p) for i, (v, p) in enumerate(zip(videos, pictures)) if p is not None)
    why = unfinished(summary)            # an interrupted run's summary holds what it did, not what it was given
    stopped = f'<p class="failed">{_e(why[0].upper() + why[1:])}.</p>' if why else ""
    shown = sum(p is not None for p in pictures)
    if shown < len(videos):
        sections = (f'<p class="note">Pictures for {shown} of the {len(videos)} videos, those most worth a look: '
                    f'with no face first, then by lowest mean score (<code>facetracks report --videos N</code> for more).</p>\n'
                    + sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>facetracks report: {_e(out_dir)}</title>
<link rel="icon" href="data:,"><style>{CSS}</style></head>
<body><h1>facetracks report: {_e(out_dir)}</h1><p class="meta">{head}</p>{stopped}
<table><thead><tr><th>video</th><th>status</th><th>frames</th><th>with a face</th><th>tracks</th>
<th>mean score</th><th>fps</th><th>error</th></tr></thead><tbody>
{rows}
</tbody></table>
{sections}
</body></html>
"""
