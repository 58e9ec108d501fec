"""A PNG screenshot of a local HTML page (a report.html or record.html) in headless Chromium,
e.g. for the README:

    python scripts/screenshot.py runs/demo/report.html docs/img/report.png --width 1280

Needs an installed Chromium (Debian: apt-get install chromium); see scripts/headless.py.
Prints the console errors the page raised, if any, and exits 1 on them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from headless import Chromium


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800, help="window height (px)")
    ap.add_argument("--window-only", action="store_true",
                    help="the first window only, not the whole page")
    args = ap.parse_args()
    with Chromium() as browser:
        browser.open(args.page, width=args.width, height=args.height)
        browser.screenshot(args.out, full_page=not args.window_only)
        errors = browser.errors
    print(f"wrote {args.out}")
    for e in errors:
        print(f"page error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
