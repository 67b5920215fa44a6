#!/usr/bin/env python3
"""Screenshot of a running dashboard in headless Chromium (tests/browser.py):

    python scripts/dashboard_screenshot.py http://127.0.0.1:8765/ docs/dashboard.png

Waits until the page has drawn its data (bounded), fails on a console error.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import Browser


def main(url: str, out: str) -> int:
    with Browser() as browser:
        browser.open(url)
        browser.wait_for("document.body.dataset.ready === 'yes' && document.body.dataset.charts === '3'", 60,
                         "the three charts drawn with data")
        browser.drain(1.0)
        if browser.errors:
            print("console errors: " + "; ".join(browser.errors), file=sys.stderr)
            return 1
        browser.screenshot(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: dashboard_screenshot.py URL OUT.png", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
