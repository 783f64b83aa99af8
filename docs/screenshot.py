"""Regenerates docs/screenshot.png: the real app on localhost, one real comparison, in headless Chromium.

Needs Debian's chromium (`apt-get install chromium`) and `pip install playwright`; run `python docs/screenshot.py`.
"""

import socket
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clipskip.settings import AppSettings, LoadOptions  # noqa: E402
from clipskip.ui import EMBEDDED_EXAMPLE_LABELS, serve  # noqa: E402

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
OUT = Path(__file__).with_name("screenshot.png")


def main(out: Path = OUT) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = AppSettings(("embedded",), "cpu", None, LoadOptions(), "127.0.0.1", port, False, max_loaded=1)
    demo = serve(settings, prevent_thread_lock=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(demo.local_url)
            page.get_by_text(EMBEDDED_EXAMPLE_LABELS[0]).click()  # prompt, seed, skips and size of a clear effect
            page.get_by_role("button", name="Generate").click()
            page.wait_for_selector("#grid img", timeout=120_000)
            page.wait_for_timeout(1000)  # let the gallery and metadata settle
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
