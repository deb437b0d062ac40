"""The README's report screenshot: python docs/report_screenshot.py OUT_DIR [PNG]

OUT_DIR is an `annotate` output folder; its report is (re)written, opened from disk in headless
Chromium (tests/browser.py, the same check the tests make) and the top 1000 x 1300 px saved
(default docs/report_screenshot.png). The README's was made from
`facetracks annotate samples/pyfeat_WolfgangLanger_Pexels.mp4 ../shared/videos/pyfeat_face_noface.mov
../shared/videos/liveportrait_driving_d0.mp4 --out OUT_DIR --report`.
"""
import os
import pathlib
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from facetracks.jobs.report import write_report  # noqa: E402
from tests.browser import load_page  # noqa: E402


def main(out_dir: str, png: str = os.path.join(ROOT, "docs", "report_screenshot.png")) -> None:
    page = load_page(pathlib.Path(write_report(out_dir)).resolve().as_uri())
    if page.errors or page.broken_images:
        sys.exit(f"the report did not load cleanly: {page.errors + page.broken_images}")
    with open(png, "wb") as f:
        f.write(page.png)
    print(png)


if __name__ == "__main__":
    main(*sys.argv[1:])
