"""Grid geometry: one column per image in order, headers above, row labels at the left, caption below, small cells
enlarged exactly; text that stays readable when a wide grid is shown small; CJK and emoji drawn, never as boxes."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from clipskip.grid import GAP, INK, MIN_TEXT, NONCHARACTER, draw_text, fit, font, glyph_source, render_grid, wrap

HEADERS = [["CLIP skip 1", "layer 12 of 12 · final norm"], ["CLIP skip 2", "layer 11 of 12 · final norm"]]


def solid(colour, size=(512, 512)):
    return Image.new("RGB", size, colour)


def column_box(grid, index, cell, header_h):
    x = GAP + index * (cell + GAP)
    return grid.crop((x, header_h, x + cell, header_h + cell))


def header_height(grid, cell_colour):
    """Rows above the first cell: find the first row whose pixel at the cell's centre has the cell's colour."""
    column = np.asarray(grid)[:, GAP + 5]
    return int(np.argmax((column == cell_colour).all(axis=1)))


@pytest.mark.parametrize(("size", "scale"), [(512, 1), (256, 1), (64, 4), (100, 3)])
def test_columns_in_order_at_a_readable_size(size, scale):
    red, blue, green = (200, 0, 0), (0, 0, 200), (0, 160, 0)
    images = [solid(red, (size, size)), solid(blue, (size, size)), solid(green, (size, size))]
    grid = render_grid([images], HEADERS + [["CLIP skip 3", "layer 10 of 12"]], ["Prompt: a cat", "seed 1"])
    cell = size * scale  # enlarged by the least whole factor that makes it 256 px (MIN_CELL) wide
    assert grid.width == 3 * cell + 4 * GAP
    top = header_height(grid, red)
    assert top > 30  # room for the headers
    for index, colour in enumerate((red, blue, green)):
        box = np.asarray(column_box(grid, index, cell, top))
        assert (box == colour).all(), f"column {index + 1} is not image {index + 1}"
    assert grid.height > top + cell + 30  # caption below


def test_enlarging_is_exact_nearest_neighbour_and_said_in_the_caption():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    marker = solid((1, 2, 3), (64, 64))
    grid = render_grid([[marker, image]], HEADERS, ["Prompt: x"])
    top = header_height(grid, (1, 2, 3))
    enlarged = column_box(grid, 1, 256, top)
    assert np.array_equal(np.asarray(enlarged), np.asarray(image.resize((256, 256), Image.NEAREST)))
    same_cells_unscaled = render_grid([[solid((1, 2, 3), (256, 256))] * 2], HEADERS, ["Prompt: x"])
    assert same_cells_unscaled.width == grid.width
    assert grid.height > same_cells_unscaled.height  # one more caption line: "cells shown enlarged 4×"


def test_warnings_and_long_prompts_make_the_caption_taller_not_wider():
    images = [solid((0, 0, 0), (256, 256))] * 2
    short = render_grid([images], HEADERS, ["Prompt: a cat", "seed 1"])
    long = render_grid([images], HEADERS, ["Prompt: " + "a very long prompt " * 40, "seed 1"], ["prompt was cut"])
    assert long.width == short.width and long.height > short.height


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="need one header per column and 2 images in every row"):
        render_grid([[solid((0, 0, 0))]], HEADERS, [])
    with pytest.raises(ValueError, match="all images must be 512×512; row 1, column 2 is 256×256"):
        render_grid([[solid((0, 0, 0)), solid((0, 0, 0), (256, 256))]], HEADERS, [])
    with pytest.raises(ValueError, match="need one label per row, got 1 labels for 2 rows"):
        render_grid([[solid((0, 0, 0))] * 2] * 2, HEADERS, [], row_labels=["seed 1"])


def test_fit_and_wrap_stay_inside_the_width():
    face = font(16)
    assert fit("short", face, 500) == "short"
    cut = fit("a rather long header line", face, 80)
    assert cut.endswith("…") and face.getlength(cut) <= 80
    lines = wrap("word " * 200, face, 300, 3)
    assert len(lines) == 3 and lines[-1].endswith("…")
    assert all(face.getlength(line) <= 300 for line in lines)


@pytest.mark.parametrize("width", [40, 80, 300])
def test_fit_keeps_the_longest_prefix_that_fits_with_few_measurements(monkeypatch, width):
    from clipskip import grid

    face, text = font(16), "a red circle on the left, " * 80  # 2,000 characters: a prompt row's label
    measured = []
    monkeypatch.setattr(grid, "text_width", lambda t, f: measured.append(len(t)) or f.getlength(t))
    cut = fit(text, face, width)
    assert cut.endswith("…") and text.startswith(cut[:-1])
    assert face.getlength(cut) <= width < face.getlength(text[: len(cut)] + "…")  # one character more would not fit
    assert len(measured) <= 2 + 12 and sum(measured) <= len(text) + 12 * (width + 2)  # halving, not one by one


def test_image_and_metadata_modules_import_neither_torch_nor_gradio():
    modules = "clipskip.grid, clipskip.metadata, clipskip.analysis, clipskip.formats.a1111, clipskip.outputs"
    code = f"import sys, {modules}; print(sorted({{'torch', 'gradio'}} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_rows_stack_beside_their_labels_with_badges_and_footer():
    red, blue = (200, 0, 0), (0, 0, 200)
    rows = [[solid(red, (256, 256)), solid(blue, (256, 256))], [solid(blue, (256, 256)), solid(red, (256, 256))]]
    plain = render_grid(rows, HEADERS, ["Prompt: x"])
    labelled = render_grid(rows, HEADERS, ["Prompt: x"], row_labels=["seed 1", "seed 2"])
    assert plain.width == 2 * 256 + 3 * GAP
    assert labelled.width > plain.width and labelled.height == plain.height  # a label column, not a band over rows
    column = np.asarray(plain)[:, GAP + 128]
    reds = np.flatnonzero((column == red).all(axis=1))
    blues = np.flatnonzero((column == blue).all(axis=1))
    assert len(reds) == len(blues) == 256 and blues[0] > reds[-1]  # row 2 under row 1
    pixels = np.asarray(labelled)
    left = int(np.argmax((pixels[reds[0]] == red).all(axis=1)))  # where the cells begin
    assert left > 2 * GAP
    for r, cells in enumerate((reds, blues)):  # each label's ink lies beside its own row, none above it
        ink = np.flatnonzero((pixels[:, :left] < 128).all(axis=2).any(axis=1))
        assert ((ink >= cells[0]) & (ink <= cells[-1])).any(), f"no label at the left of row {r + 1}"
    assert not (pixels[reds[0] - GAP : reds[0], :left] < 128).all(axis=2).any()  # no label over the first row
    badged = render_grid(rows, HEADERS, ["Prompt: x"], badges={(1, 0): "same as skip 1"})
    assert not np.array_equal(np.asarray(badged), np.asarray(plain))
    bottom_left = np.asarray(badged)[blues[-1] - 20 : blues[-1], GAP : GAP + 100]
    assert (bottom_left == INK).all(axis=2).any()  # the badge's dark box sits on row 2, column 1
    footer = solid((0, 255, 0), (100, 20))
    with_footer = render_grid(rows, HEADERS, ["Prompt: x"], footer=footer)
    assert with_footer.height == plain.height + 20 + GAP
    assert (np.asarray(with_footer)[-GAP - 10, GAP + 50] == (0, 255, 0)).all()


def text_lines(pixels):
    """(top, height) of each band of rows with dark ink: a line of text."""
    inked = np.concatenate([[False], (pixels < 160).all(axis=2).any(axis=1), [False]])
    edges = np.flatnonzero(np.diff(inked.astype(int)))
    return [(int(top), int(bottom - top)) for top, bottom in zip(edges[::2], edges[1::2], strict=True)]


def test_text_on_a_12_skip_grid_of_64_px_cells_stays_readable_shown_720_px_wide():
    headers = [
        [
            f"CLIP skip {s}" + (" (native)" if s == 1 else ""),
            f"layer {13 - s} of 12 · final norm",
            f"ComfyUI −{s} · diffusers {s - 1}",
        ]
        for s in range(1, 13)
    ]
    cells = [solid((200, 0, 0), (64, 64))] * 12
    grid = render_grid([cells], headers, ["Prompt: a cat on a windowsill", "seed 1 · 20 steps · CFG 7.5"])
    pixels = np.asarray(grid)
    top = header_height(grid, (200, 0, 0))
    lines = text_lines(pixels[:top]) + [(t + top + 256, h) for t, h in text_lines(pixels[top + 256 :])]
    assert len(lines) >= 4 + 3  # the header's lines (some wrapped) and the caption's
    smallest = min(height for _, height in lines)
    assert smallest >= MIN_TEXT  # at the grid's own size, ink from ascender to descender
    # Shown in the app's 720-px column: the smallest line had 14 px of ink in a 3,176-px grid, 3.2 px there
    assert smallest * 720 / grid.width >= 5, f"{smallest} px of ink in a {grid.width}-px grid"


def test_cjk_and_emoji_are_drawn_as_glyphs_not_boxes():
    face = font(32)
    if glyph_source(face.paths, "猫") is None or glyph_source(face.paths, "🦊") is None:
        pytest.skip("no CJK or emoji font installed (Debian: fonts-wqy-microhei, fonts-symbola; see packages.txt)")

    def ink(text, draw):
        image = Image.new("L", (200, 60), 255)
        draw(ImageDraw.Draw(image), text)
        return np.asarray(image)

    def ours(d, text):
        draw_text(d, (0, 0), text, face, 0)

    def primary_font_only(d, text):
        d.text((0, 0), text, font=face.fonts[0], fill=0)

    box = ink(NONCHARACTER, primary_font_only)
    assert (box < 128).any() and np.array_equal(ink("猫", primary_font_only), box)  # DejaVu alone draws a box
    for char in "猫ね고🦊":
        drawn = ink(char, ours)
        assert (drawn < 128).any() and not np.array_equal(drawn, box), f"{char!r} drawn as a box"
    assert not np.array_equal(ink("猫", ours), ink("犬", ours))  # two glyphs, not one box twice
    assert np.array_equal(ink("\U000f0000", ours), ink("?", ours))  # in no font: a question mark
    assert face.getlength("a\u0301\U000f0000") == face.getlength("a\u0301?")


@pytest.mark.parametrize("spaced", [True, False])
def test_long_labels_wrap_in_bounded_work(monkeypatch, spaced):
    from clipskip import grid

    measured = []
    monkeypatch.setattr(grid, "text_width", lambda t, f: measured.append(len(t)) or f.getlength(t))
    face, width, most = font(20), 250, 6
    word = "a red circle on the left, " if spaced else "窓辺に座る猫"  # Japanese has no spaces to break at
    for repeat in (100, 1000):
        measured.clear()
        lines = wrap(word * repeat, face, width, most)
        assert len(lines) == most and lines[-1].endswith("…")
        assert all(face.getlength(line) <= width for line in lines)
        assert sum(measured) <= 20 * most * width  # the lines shown, not the whole text
    rows = [[solid((0, 0, 0), (64, 64))] * 2]
    costs = []
    for repeat in (100, 1000):
        measured.clear()
        render_grid(rows, HEADERS, ["Prompts: one per row"], row_labels=[word * repeat])
        costs.append(sum(measured))
    assert costs[1] - costs[0] <= 10 * len(word)  # a ten times longer label costs no more: its first lines are drawn
