"""The app in a real browser: Debian's Chromium, headless, driven by Playwright against the app on localhost.

Needs /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it); skipped, saying so, where it is missing.
The screenshots land in test-artifacts/.
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from clipskip import ui
from clipskip.settings import AppSettings, LoadOptions
from tests.test_server import Renders
from tests.test_ui import free_port

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
FLAGS += ["--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def watched(pipe):
    """The app with every render watched from inside (tests/test_server.py's Renders)."""
    renders = Renders()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ui, "compare", renders)
        demo = ui.serve(
            AppSettings(("embedded",), "cpu", None, LoadOptions(), "127.0.0.1", free_port(), False, 32),
            prevent_thread_lock=True,
        )
        yield demo, renders
        demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(watched, browser):
    return open_app(browser, watched[0].local_url)


def open_app(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    return opened(page, url)


def opened(page, url: str):
    """`page` at `url` once the page's opening event has answered (Generate is ready): a link's or a reload's
    settings arrive with it, and replace what was typed before."""
    page.goto(url)
    page.get_by_role("button", name="Generate", exact=True).wait_for()
    return page


def unfold(page, title: str, box: str) -> None:
    """Opens the folded section `title` and returns once Gradio has given its newly drawn `box` its value: Gradio
    draws a folded section's boxes when it first opens, then sets their values an animation frame later, undoing
    anything typed in between (a test types within milliseconds; a person cannot). The three frames waited here
    come after that one (`render_previously_invisible_children` in Gradio's frontend)."""
    page.get_by_text(title).click()
    page.get_by_label(box).wait_for()
    page.evaluate("() => new Promise(done => { let n = 3; const f = () => --n ? requestAnimationFrame(f) : done(); "
                  "requestAnimationFrame(f); })")  # fmt: skip


def settle(page, selector: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_selector(selector, timeout=timeout_ms)
    page.wait_for_timeout(500)  # the gallery and the JSON arrive with the grid


def test_type_untick_generate_and_see_three_columns(page):
    page.get_by_label("Prompt", exact=True).fill("a watercolor painting of a fox in a snowy forest")
    page.get_by_label("Seed (−1 = random)").fill("42")
    page.get_by_label("number input for Steps").fill("4")
    page.get_by_label("4", exact=True).uncheck()
    page.get_by_role("button", name="Generate").click()
    settle(page, "#grid img")
    assert page.locator("#cells .thumbnail-item").count() == 3
    source = page.locator("#grid img").get_attribute("src")
    grid = page.request.get(source).body()
    from io import BytesIO

    from PIL import Image

    metadata = json.loads(Image.open(BytesIO(grid)).info["clipskip"])
    assert metadata["skips"] == [1, 2, 3] and metadata["seed"] == 42  # three columns, as ticked
    assert page.get_by_label("Seed used").input_value() == "42"
    page.screenshot(path=str(ARTIFACTS / "browser-grid.png"), full_page=True)


def test_a_reload_keeps_the_last_comparison_and_its_settings_as_the_theme_switch_needs(page):
    """Gradio's Settings > Display Theme reloads the page with ?__theme=…; the results and the form come back."""
    grid = page.locator("#grid img").get_attribute("src")
    page.goto(page.url.split("?")[0] + "?__theme=dark")
    page.wait_for_selector("#generate:not([disabled])", timeout=60_000)
    page.wait_for_function(f"() => document.querySelector('#grid img')?.getAttribute('src') === {json.dumps(grid)}")
    assert page.locator("#cells .thumbnail-item").count() == 3
    assert page.get_by_label("Prompt", exact=True).input_value() == "a watercolor painting of a fox in a snowy forest"
    assert page.get_by_label("Seed (−1 = random)").input_value() == "42"
    assert not page.get_by_label("4", exact=True).is_checked()
    page.get_by_text("kept across the reload").wait_for()
    page.screenshot(path=str(ARTIFACTS / "browser-dark-after-reload.png"), full_page=True)


def test_a_bad_input_shows_its_message_on_the_page(page):
    for value in ("1 (native)", "2", "3"):
        page.get_by_label(value, exact=True).uncheck()
    page.get_by_role("button", name="Generate").click()
    message = page.get_by_text("Choose at least one CLIP skip value (1 to 12)")
    message.wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "browser-error.png"), full_page=True)
    page.get_by_label("2", exact=True).check()


def test_stop_ends_a_render_within_one_step_and_the_next_one_runs(page, watched):
    _, renders = watched
    started = len(renders.log)
    page.get_by_label("number input for Steps").fill("150")
    page.get_by_label("number input for Width").fill("256")  # about a second a step on two CPU cores
    page.get_by_role("button", name="Generate").click()
    renders.stop_within_a_step(started, page.get_by_role("button", name="Stop").click)
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_contain_text(f"Stopped at step {renders.log[started]['steps']} of 150")
    page.get_by_label("number input for Steps").fill("2")
    page.get_by_label("number input for Width").fill("64")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#cells .thumbnail-item').length === 1", timeout=30_000
    )  # one skip ticked now: the new render arrived, so the worker was free
    assert renders.log[-1]["outcome"] == "finished"


def test_a_closed_tab_ends_its_render_within_one_step_and_frees_the_server(page, watched):
    from playwright.sync_api import expect

    _, renders = watched
    started = len(renders.log)
    other = open_app(page.context.browser, page.url)
    other.get_by_label("Prompt", exact=True).fill("a long render nobody will wait for")
    other.get_by_label("number input for Steps").fill("150")
    other.get_by_label("number input for Width").fill("256")
    other.get_by_role("button", name="Generate").click()
    renders.stop_within_a_step(started, other.close)
    page.get_by_label("Seed (−1 = random)").fill("7")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_label("Seed used")).to_have_value("7", timeout=15_000)


def test_a_dropped_png_replaces_the_form_and_is_not_kept(page, tmp_path):
    """Rows set before (seeds 7, 8; one prompt per line) were left in place and took over the image's settings."""
    from PIL import Image, PngImagePlugin
    from playwright.sync_api import expect

    unfold(page, "Rows and reference", "Seeds, one row each")
    page.get_by_label("Seeds, one row each").fill("7, 8")
    page.get_by_label("One prompt per line of the prompt box, one row each").check()
    expect(page.get_by_text("Rows and reference · on: one row per line of the prompt box")).to_be_visible()
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters", "a red fox in the snow\nNegative prompt: blurry\nSteps: 2, Seed: 1234, Size: 64x64, Clip skip: 2"
    )
    path = tmp_path / "a1111.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    page.locator("#load-settings input[type=file]").set_input_files(str(path))

    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a red fox in the snow", timeout=15_000)
    expect(page.get_by_label("Negative prompt")).to_have_value("blurry")
    expect(page.get_by_label("number input for Steps")).to_have_value("2")
    expect(page.get_by_label("Seed (−1 = random)")).to_have_value("1234")
    expect(page.get_by_label("Seeds, one row each")).to_have_value("")  # one row, the image's seed
    expect(page.get_by_label("One prompt per line of the prompt box, one row each")).not_to_be_checked()
    expect(page.get_by_text("Rows and reference", exact=True)).to_be_visible()  # its title says no rows now
    expect(page.get_by_label("Seed (−1 = random)", exact=True)).to_have_value("1234")  # no longer "replaced by…"
    expect(page.get_by_label("2", exact=True)).to_be_checked()  # the image's skip, among those ticked
    expect(page.locator("#status")).to_contain_text("Settings loaded from AUTOMATIC1111")  # lasts
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_label("Seed used")).to_have_value("1234", timeout=30_000)  # one row: the image's seed
    ticked = page.locator("input[type=checkbox]:checked").count()  # the skips: prompt rows are off
    expect(page.locator("#cells .thumbnail-item")).to_have_count(ticked)  # one row, not rows of seeds 7 and 8
    page.screenshot(path=str(ARTIFACTS / "browser-settings-loaded.png"), full_page=True)


def test_the_first_minute_on_a_laptop(watched, browser, tmp_path):
    """At 1440x900: the form's essentials above the fold; an example sets the skips; a file without settings and a
    refused render leave every input and the last results as they were, and say why until the next action."""
    from playwright.sync_api import expect

    demo, _ = watched
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    opened(page, demo.local_url)
    for element in (
        page.get_by_label("Prompt", exact=True),
        page.get_by_label("12", exact=True),  # the last skip checkbox
        page.get_by_role("button", name="Generate"),
        page.get_by_text("Shapes trade places at skip 12"),  # the lead says "pick an example": one is in sight
    ):
        box = element.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900, box  # inside the first viewport
    page.get_by_text("Shapes trade places at skip 12").click()
    expect(page.get_by_label("12", exact=True)).to_be_checked()  # the example ticks skips 1, 4, 8, 12
    expect(page.get_by_label("2", exact=True)).not_to_be_checked()
    page.get_by_role("button", name="Generate").click()
    settle(page, "#grid img")
    grid = page.locator("#grid img").get_attribute("src")
    # a gallery click opens A/B with that cell against its row's reference
    page.locator("#cells .thumbnail-item").nth(1).click()
    expect(page.get_by_role("tab", name="A/B", selected=True)).to_be_visible()
    expect(page.locator("#parameters textarea")).to_have_value(re.compile("Clip skip: 4"))
    # any file reaches the reader: a text file is not marked "Error" by the box, it is named
    (tmp_path / "notes.txt").write_text("hello")
    page.locator("#load-settings input[type=file]").set_input_files(str(tmp_path / "notes.txt"))
    expect(page.locator("#status")).to_contain_text("This file is not a PNG image that can be read")
    # a file without settings: no input marked as an error, the reason beside Generate
    (tmp_path / "bare.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    page.locator("#load-settings input[type=file]").set_input_files(str(tmp_path / "bare.png"))
    expect(page.locator("#status")).to_contain_text("No settings in this image.")
    assert page.get_by_text("Error", exact=True).count() == 0
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(
        "a large white triangle at the top and a large black circle at the bottom, on a red background"
    )
    # a refused render: the last grid stays, the message stays
    page.get_by_label("Seed (−1 = random)").fill("-5")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#status")).to_contain_text("Seed must be -1 (random) or 0 to 4294967295, not -5")
    expect(page.locator(".toast-body")).to_have_count(0)  # the message is not a toast, which would fade in 10 s
    assert page.locator("#grid img").get_attribute("src") == grid
    assert page.get_by_text("Error", exact=True).count() == 0
    page.screenshot(path=str(ARTIFACTS / "browser-refused.png"))
    page.close()


def test_every_cell_shows_on_a_phone(watched, browser):
    from playwright.sync_api import expect

    demo, _ = watched
    page = browser.new_page(viewport={"width": 390, "height": 844})
    opened(page, demo.local_url)
    page.get_by_text("Shapes trade places at skip 12").click()
    expect(page.get_by_text("20/75 tokens")).to_be_visible()  # the example has filled the form
    unfold(page, "Rows and reference", "Seeds, one row each")
    page.get_by_label("Seeds, one row each").fill("11, 12")
    expect(page.get_by_text("Rows and reference · on: one row per seed (11, 12)")).to_be_visible()
    page.get_by_role("button", name="Generate").click()
    settle(page, "#cells .thumbnail-item")
    cells = page.locator("#cells .thumbnail-item")
    expect(cells).to_have_count(8)  # two rows of four: they were cut to six in a capped box
    for i in range(8):
        cells.nth(i).scroll_into_view_if_needed()
        box = cells.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box  # none cut off at the side
        top = page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y)?.closest('.thumbnail-item') !== null",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert top, f"cell {i + 1} is hidden behind something or clipped"
    page.screenshot(path=str(ARTIFACTS / "browser-phone.png"), full_page=True)
    page.close()


def test_what_a_visitor_types_while_the_first_model_loads_stays(pipe, browser, monkeypatch):
    """The page opens on the built-in model's form while its weights load; the event that readies the page answers
    once they have, and must leave the prompt and the rows typed meanwhile as they are."""
    import threading

    from playwright.sync_api import expect

    release = threading.Event()

    def load_pipeline(*args, **kwargs):  # a model that loads until the test lets it
        assert release.wait(60)
        return pipe

    monkeypatch.setattr(ui, "load_pipeline", load_pipeline)
    demo = ui.serve(  # 32 models kept loaded, as conftest's roomy_cache asks: serve sets it for the process
        AppSettings(("embedded",), "cpu", None, LoadOptions(), "127.0.0.1", free_port(), False, 32),
        prevent_thread_lock=True,
    )
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    try:
        page.goto(demo.local_url)
        expect(page.get_by_role("button", name="Loading the model…")).to_be_disabled()
        unfold(page, "Rows and reference", "Seeds, one row each")
        page.get_by_label("Seeds, one row each").fill("5, 6")
        page.get_by_label("Prompt", exact=True).fill("a small red circle at the top, on a green background")
        expect(page.get_by_text("Rows and reference · on: one row per seed (5, 6)")).to_be_visible()
        assert not demo.first_model.done()
        release.set()
        expect(page.get_by_role("button", name="Generate", exact=True)).to_be_enabled(timeout=30_000)
        page.wait_for_timeout(500)  # the answers that follow it (the token counts)
        expect(page.get_by_label("Prompt", exact=True)).to_have_value(
            "a small red circle at the top, on a green background"
        )
        expect(page.get_by_label("Seeds, one row each")).to_have_value("5, 6")
        expect(page.get_by_text("Rows and reference · on: one row per seed (5, 6)")).to_be_visible()
    finally:
        release.set()
        page.close()
        demo.close()


def test_a_copied_link_reopens_the_page_with_its_settings(watched, browser):
    from playwright.sync_api import expect

    context = browser.new_context(
        permissions=["clipboard-read", "clipboard-write"], viewport={"width": 1440, "height": 900}
    )
    page = context.new_page()
    opened(page, watched[0].local_url)
    page.get_by_text("The background turns yellow").click()
    expect(page.get_by_label("Seed (−1 = random)")).to_have_value("5")
    expect(page.get_by_text("12/75 tokens")).to_be_visible()  # the example has filled the form
    unfold(page, "Rows and reference", "Seeds, one row each")
    page.get_by_label("Seeds, one row each").fill("5, 6")
    expect(page.get_by_text("Rows and reference · on: one row per seed (5, 6)")).to_be_visible()
    page.get_by_role("button", name="Copy a link to these settings").click()
    expect(page.get_by_role("button", name="Link copied ✓")).to_be_visible()
    link = page.evaluate("navigator.clipboard.readText()")
    other = context.new_page()
    opened(other, link)
    expect(other.get_by_label("Prompt", exact=True)).to_have_value(
        "a large orange star in the centre, on a purple background"
    )
    expect(other.get_by_label("Seed (−1 = random)")).to_have_value("5")
    expect(other.get_by_label("12", exact=True)).to_be_checked()
    expect(other.get_by_label("2", exact=True)).not_to_be_checked()
    expect(other.get_by_text("Rows and reference · on: one row per seed (5, 6)")).to_be_visible()  # rows travel too
    context.close()


def test_a_renders_warning_stays_beside_generate_rather_than_fading(watched, browser):
    from urllib.parse import urlencode

    from playwright.sync_api import expect

    demo, _ = watched
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    settings = {"prompt": "a small red circle on the left, " * 12, "syntax": "plain", "steps": "1", "skips": "1,2"}
    opened(page, f"{demo.local_url}?{urlencode(settings)}")
    page.get_by_role("button", name="Generate").click()
    settle(page, "#grid img")
    expect(page.locator("#status")).to_contain_text("The prompt is longer than the text encoder's 77-token window")
    expect(page.locator("#status")).to_contain_text("dropped:")  # in the message that stays, not in a toast
    page.close()
