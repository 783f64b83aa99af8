"""Grid geometry: one column per image in order, headers above, caption below, small cells enlarged exactly."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clipskip.grid import GAP, INK, fit, font, render_grid, wrap

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


def test_rows_stack_under_their_labels_with_badges_and_footer():
    red, blue = (200, 0, 0), (0, 0, 200)
    rows = [[solid(red, (256, 256)), solid(blue, (256, 256))], [solid(blue, (256, 256)), solid(red, (256, 256))]]
    plain = render_grid(rows, HEADERS, ["Prompt: x"])
    labelled = render_grid(rows, HEADERS, ["Prompt: x"], row_labels=["seed 1", "seed 2"])
    assert labelled.width == plain.width == 2 * 256 + 3 * GAP
    assert labelled.height > plain.height  # a label band over each row
    column = np.asarray(plain)[:, GAP + 128]
    reds = np.flatnonzero((column == red).all(axis=1))
    blues = np.flatnonzero((column == blue).all(axis=1))
    assert len(reds) == len(blues) == 256 and blues[0] > reds[-1]  # row 2 under row 1
    badged = render_grid(rows, HEADERS, ["Prompt: x"], badges={(1, 0): "same as skip 1"})
    assert not np.array_equal(np.asarray(badged), np.asarray(plain))
    bottom_left = np.asarray(badged)[blues[-1] - 20 : blues[-1], GAP : GAP + 100]
    assert (bottom_left == INK).all(axis=2).any()  # the badge's dark box sits on row 2, column 1
    footer = solid((0, 255, 0), (100, 20))
    with_footer = render_grid(rows, HEADERS, ["Prompt: x"], footer=footer)
    assert with_footer.height == plain.height + 20 + GAP
    assert (np.asarray(with_footer)[-GAP - 10, GAP + 50] == (0, 255, 0)).all()
