"""A sweep's report page, opened from disk in Chromium: a grid for the chosen axes, prompts sorted by how much the
skip changes them, two cells side by side; a prompt's text is shown as text."""

import shutil

import pytest

from clipskip.sweep import sweep
from clipskip.sweep.report import page_data
from tests.test_browser import ARTIFACTS, CHROMIUM, FLAGS

TINY = {"skips": [1, 2, 4], "steps": 1, "width": 64, "height": 64, "device": "cpu", "progress": False}
HOSTILE = "a fox </script><img src=x onerror=alert(1)> & friends"


def test_the_rows_never_close_the_script_element_they_are_written_in():
    text = page_data([{"prompt": HOSTILE}])
    assert "<" not in text and ">" not in text and "&" not in text


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's Chromium at /usr/bin/chromium")
def test_the_report_shows_a_grid_for_the_chosen_axes_and_compares_two_cells(pipe, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    result = sweep(tmp_path, ["a red fox", HOSTILE], seeds=[1, 2], **TINY)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: errors.append(dialog.message) or dialog.dismiss())
        page.goto(result.report.as_uri())
        grid = page.locator("#grid table")
        expect(grid.locator("th")).to_have_text(["", "CLIP skip 1", "CLIP skip 2", "CLIP skip 4", "seed 1", "seed 2"])
        expect(grid.locator("img")).to_have_count(6)
        page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.naturalWidth === 64)")
        page.select_option("#rows", "prompt")
        expect(grid.locator("th.row")).to_have_text(["1. a red fox", f"2. {HOSTILE}"])
        page.select_option("#order", "change")  # the prompt the skip changes most comes first
        changes = page.evaluate("Object.values(change)")
        expect(grid.locator("th.row").first).to_contain_text("a red fox" if changes[0] >= changes[1] else "friends")
        grid.locator("img").nth(0).click()
        grid.locator("img").nth(2).click()
        expect(page.locator("#ab")).to_be_visible()
        expect(page.locator("#ab-labels")).to_contain_text("skip 1 — B (right):")
        expect(page.locator("#plots svg")).to_have_count(1)  # SSIM; no score was asked for
        page.screenshot(path=str(ARTIFACTS / "sweep-report.png"), full_page=True)
        browser.close()
    assert errors == []
