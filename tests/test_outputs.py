"""Files on disk carry their settings: cell PNGs for AUTOMATIC1111, the grid for this app; the zip holds them all."""

import json
import re
import tracemalloc
import warnings
import zipfile
import zlib

import pytest
from PIL import Image

from clipskip import compare
from clipskip.families import SD1
from clipskip.formats import read_settings
from clipskip.formats.png import MAX_CHUNKS, MAX_FILE_BYTES
from clipskip.outputs import finish_bundle, start_bundle, write_bundle, write_outputs, zip_path
from tests.conftest import TINY
from tests.test_settings_fuzz import INFOTEXT, MANIFEST, chunk, png_file, text_chunk

TAKES_SKIP = "this app takes a whole number from 1 to 64"
TAKES_SIZE = "this app takes a width and height that are multiples of 8 from 64 to 2048, like 512x768"


@pytest.fixture(scope="module")
def result(pipe):
    return compare(pipe, "a fox, at dawn", negative_prompt="blurry", seed=[11, 12], skips=[2, 1], **TINY)


def test_files_and_their_text(result, tmp_path):
    paths = write_outputs(result, tmp_path)
    names = ["grid.png", "difference.png", "row1-skip-2.png", "row1-skip-1.png", "row2-skip-2.png"]
    assert [p.name for p in paths] == [*names, "row2-skip-1.png", "comparison.json"]
    cell = Image.open(tmp_path / "row2-skip-1.png").info["parameters"]
    assert cell.startswith(
        "a fox, at dawn\nNegative prompt: blurry\nSteps: 2, Sampler: DPM++ 2M Karras, CFG scale: 7.5"
    )
    assert "Seed: 12, Size: 64x64, Model hash: " + result.metadata["weights_sha256"][:10] in cell
    assert cell.endswith("Model: embedded, Clip skip: 1, Version: clipskip 0.1.0")  # written even when 1
    assert json.loads(Image.open(tmp_path / "grid.png").info["clipskip"]) == result.metadata


def test_settings_round_trip_through_the_grid_and_a_cell(result, tmp_path):
    write_outputs(result, tmp_path)
    form, notes = read_settings(tmp_path / "grid.png", SD1)
    assert notes == []
    assert form == {
        "prompt": "a fox, at dawn",
        "prompt_rows": False,
        "negative_prompt": "blurry",
        "seed": 11,
        "seeds": "11, 12",
        "skips": [2, 1],
        "steps": 2,
        "guidance_scale": 7.5,
        "width": 64,
        "height": 64,
        "model": "embedded",
        "reference": 1,
        "scheduler": "DPM++ 2M Karras",
        "prompt_syntax": "a1111",
    }
    form, notes = read_settings(tmp_path / "row2-skip-2.png", SD1)
    assert notes == []
    assert form == {
        "prompt": "a fox, at dawn",
        "negative_prompt": "blurry",
        "steps": 2,
        "guidance_scale": 7.5,
        "seed": 12,
        "skips": [2],
        "width": 64,
        "height": 64,
        "scheduler": "DPM++ 2M Karras",
        "model": "embedded",
        "prompt_syntax": "a1111",
    }
    assert MANIFEST.keys() <= result.metadata.keys()  # the hostile-file tests start from a real manifest's fields
    assert MANIFEST["rows"][0].keys() <= result.metadata["rows"][0].keys()


@pytest.mark.parametrize("syntax", ["a1111-no-norm", "comfyui", "plain"])
def test_a_prompt_syntax_round_trips_through_the_grid_and_a_cell(pipe, tmp_path, syntax):
    from clipskip import compare

    write_outputs(compare(pipe, "a (fox:1.2)", seed=3, skips=[1], prompt_syntax=syntax, steps=1), tmp_path)
    assert read_settings(tmp_path / "grid.png", SD1)[0]["prompt_syntax"] == syntax
    assert read_settings(tmp_path / "skip-1.png", SD1)[0]["prompt_syntax"] == syntax


def test_images_without_settings_say_so(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="this image carries no generation settings"):
        read_settings(tmp_path / "plain.png", SD1)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="^this file is not a PNG image that can be read; "):
        read_settings(tmp_path / "text.png", SD1)
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.jpg")
    with pytest.raises(ValueError, match="^this file is not a PNG image that can be read; "):
        read_settings(tmp_path / "photo.jpg", SD1)


def test_a_bundle_holds_the_files_and_a_zip_of_them(result, tmp_path):
    folder = write_bundle(result, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    with zipfile.ZipFile(zip_path(folder)) as bundle:
        assert len(bundle.namelist()) == 7 and "comparison.json" in bundle.namelist()
    assert (folder / "grid.png").exists() and (folder / "row2-skip-1.png").exists()
    other = write_bundle(result, tmp_path)  # the same result, the same second: a name nobody can guess
    assert other != folder and re.fullmatch(r"clipskip-\d{8}-\d{6}-seed\d+-[0-9a-f]{16}", other.name)


def test_the_grid_comes_first_with_the_whole_manifest_and_the_rest_after(result, tmp_path):
    old = write_bundle(result, tmp_path)
    folder = start_bundle(result, tmp_path)
    assert [p.name for p in folder.iterdir()] == ["grid.png"]  # nothing else yet: the page shows the grid first
    assert json.loads(Image.open(folder / "grid.png").info["clipskip"]) == result.metadata
    assert old.exists()  # cleaning up waits for the rest
    zipped = finish_bundle(result, folder, max_age_s=-1)
    assert zipped == zip_path(folder) and not old.exists()
    with zipfile.ZipFile(zipped) as bundle:
        kinds = {info.filename: info.compress_type for info in bundle.infolist()}
        assert sorted(kinds) == sorted(p.name for p in folder.iterdir() if p != zipped)
        assert kinds.pop("comparison.json") == zipfile.ZIP_DEFLATED  # PNGs are deflated already: stored as they are
        assert len(kinds) == 6 and set(kinds.values()) == {zipfile.ZIP_STORED}
        assert bundle.read("grid.png") == (folder / "grid.png").read_bytes()


def test_files_hold_the_very_pixels_drawn_and_rendered(result, tmp_path):
    paths = write_outputs(result, tmp_path)
    drawn = [result.grid, result.difference_grid] + [image for row in result.rows for image in row.images.values()]
    for path, image in zip(paths[:-1], drawn, strict=True):  # all but comparison.json
        with Image.open(path) as saved:
            assert saved.mode == image.mode and saved.tobytes() == image.tobytes(), path.name


def test_old_and_excess_bundles_are_cleaned_up(result, tmp_path):
    first = write_bundle(result, tmp_path)
    size = sum(f.stat().st_size for f in first.iterdir())
    second = write_bundle(result, tmp_path, max_total_bytes=size * 2 + 1)
    assert first.exists() and second.exists()
    third = write_bundle(result, tmp_path, max_total_bytes=size * 2 + 1)  # three do not fit: the oldest goes
    assert not first.exists() and second.exists() and third.exists()
    fourth = write_bundle(result, tmp_path, max_age_s=-1)  # every older one is past its age
    assert sorted(tmp_path.iterdir()) == [fourth]


def manifest_png(path, **changes):
    """A PNG carrying MANIFEST with `changes` (a value of ... removes that field)."""
    manifest = {key: value for key, value in (MANIFEST | changes).items() if value is not ...}
    return png_file(path, text_chunk("clipskip", json.dumps(manifest)))


def test_a_decompression_bomb_is_never_decoded(tmp_path):
    bomb = png_file(tmp_path / "bomb.png", text_chunk("parameters", INFOTEXT), width=20000, height=20000)
    with pytest.raises(Image.DecompressionBombError):  # what Pillow's Image.open did with it
        Image.open(bomb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a DecompressionBombWarning
        form, notes = read_settings(bomb, SD1)
        assert (form["seed"], form["width"], notes) == (42, 512, [])
        with pytest.raises(ValueError, match="^this image carries no generation settings"):
            read_settings(png_file(tmp_path / "bare-bomb.png", width=20000, height=20000), SD1)


def test_a_deeply_nested_manifest_is_refused_before_it_is_parsed(tmp_path):
    nested = "^this image's clipskip settings are not valid: its JSON is nested more than 16 deep; a manifest nests 5"
    with pytest.raises(ValueError, match=nested):
        read_settings(png_file(tmp_path / "deep.png", text_chunk("clipskip", "[" * 100_000 + "]" * 100_000)), SD1)
    with pytest.raises(ValueError, match=nested):
        read_settings(png_file(tmp_path / "open.png", text_chunk("clipskip", '{"a": ' * 50_000)), SD1)
    quoted = '"[{\\' * 500  # in strings, between escaped quotes and backslashes, brackets do not nest
    form, _ = read_settings(manifest_png(tmp_path / "ok.png", prompt=quoted, negative_prompt=quoted[::-1]), SD1)
    assert (form["prompt"], form["negative_prompt"]) == (quoted, quoted[::-1])
    with pytest.raises(ValueError, match="valid: its JSON has 20,012 brackets; at most 16,384 are read$"):
        read_settings(manifest_png(tmp_path / "wide.png", padding=[[]] * 10_000), SD1)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"steps": 0}, "steps must be 1 to 150, not 0"),
        ({"steps": True}, "steps must be a whole number, not true or false"),
        ({"steps": 20.0}, "steps must be a whole number, not 20.0"),
        ({"sampler": {"name": "Euler"}}, "sampler must be text, not an object"),
        ({"sampler": "x" * 2000}, "sampler is 2,000 characters long; at most 1,024"),
        ({"model": None}, "model must be text, not null"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be 0 to 30, not nan"),
        ({"guidance_scale": 31}, "guidance_scale must be 0 to 30, not 31"),
        ({"width": 10**20}, "width must be 64 to 2,048, not 100000000000000000000"),
        ({"height": 516}, "height must be a multiple of 8, not 516"),
        ({"seed": -1}, "seed must be 0 to 4,294,967,295, not -1"),
        ({"seed": 2**32}, "seed must be 0 to 4,294,967,295, not 4294967296"),
        ({"skips": []}, "skips must list 1 to 64 values, not 0"),
        ({"skips": [2, 2]}, "skips lists a value twice"),
        ({"skips": [1, 65]}, "each skip must be 1 to 64, not 65"),
        ({"skips": "1, 2"}, "skips must be a list, not text"),
        ({"reference_skip": 3}, "reference_skip must be one of the skips, not 3"),
        ({"rows_by": "model"}, "rows_by must be 'seed' or 'prompt', not 'model'"),
        ({"rows": [{"prompt": "a", "seed": 1}] * 9}, "rows must hold 1 to 8 rows, not 9"),
        ({"rows": [{"prompt": "a"}]}, "row 1's seed is missing"),
        ({"rows": [[]]}, "row 1 must be an object, not a list"),
        ({"rows_by": "prompt", "rows": [{"prompt": "a\nb", "seed": 1}]}, "row 1's prompt must be one line of text"),
        ({"rows_by": "prompt", "rows": [{"prompt": " ", "seed": 1}]}, "row 1's prompt must be one line of text"),
        ({"prompt": "x" * 2001}, "prompt is 2,001 characters long; at most 2,000"),
        ({"negative_prompt": "\ud800"}, "negative_prompt holds a lone surrogate"),
        ({"prompt": ...}, "prompt is missing"),
        ({"prompt_syntax": "sd"}, "prompt_syntax must be one of: a1111, a1111-no-norm, comfyui, plain; not 'sd'"),
        ({"prompt_syntax": ["plain"]}, "prompt_syntax must be one of: a1111, a1111-no-norm, comfyui, plain; not ['pl"),
    ],
)
def test_a_manifest_with_a_bad_field_is_refused_naming_it(tmp_path, changes, message):
    with pytest.raises(ValueError, match="^this image's clipskip settings are not valid: " + re.escape(message)):
        read_settings(manifest_png(tmp_path / "bad.png", **changes), SD1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{}", "rows_by is missing"),
        ("[]", "the manifest must be an object, not a list"),
        ("null", "the manifest must be an object, not null"),
        ("", "it is not JSON (Expecting value at character 0)"),
        ('{"steps": 1' + "0" * 5000 + "}", "it holds a number 5,001 characters long"),
    ],
)
def test_a_manifest_that_is_not_one_is_refused(tmp_path, text, message):
    with pytest.raises(ValueError, match="^this image's clipskip settings are not valid: " + re.escape(message) + "$"):
        read_settings(png_file(tmp_path / "bad.png", text_chunk("clipskip", text)), SD1)


def test_what_a_manifest_says_loads_with_prompt_rows_and_a_sampler_of_the_models_own(tmp_path):
    rows = [{"prompt": "a fox", "seed": 11}, {"prompt": "a cat", "seed": 11}]
    form, notes = read_settings(manifest_png(tmp_path / "rows.png", rows_by="prompt", rows=rows, sampler="PNDM"), SD1)
    assert (form["prompt"], form["prompt_rows"], form["seeds"], "scheduler" in form) == (
        "a fox\na cat",
        True,
        "",
        False,
    )
    assert notes == ["sampler 'PNDM' is the model's own, not one of the sampler menu's"]


@pytest.mark.parametrize(
    "setting, left_out, note",
    [
        ("Clip skip: 99999999999999999999", "skips", "Clip skip '99999999999999999999' was left out: " + TAKES_SKIP),
        ("Clip skip: ²", "skips", "Clip skip '²' was left out: " + TAKES_SKIP),
        ("Clip skip: ٣", "skips", "Clip skip '٣' was left out: " + TAKES_SKIP),
        ("Clip skip: 65", "skips", "Clip skip '65' was left out: " + TAKES_SKIP),
        ("Size: " + "5" * 5000 + "x512", "width height", "Size '" + "5" * 39 + "… was left out: " + TAKES_SIZE),
        ("Size: 1" + "0" * 30 + "x512", "width height", "Size '1" + "0" * 30 + "x512' was left out: " + TAKES_SIZE),
        ("Size: 516x512", "width height", "Size '516x512' was left out: " + TAKES_SIZE),
        ("CFG scale: 1e30", "guidance_scale", "CFG scale '1e30' was left out: this app takes a number from 0 to 30"),
        ("CFG scale: nan", "guidance_scale", "CFG scale 'nan' was left out: this app takes a number from 0 to 30"),
        ("Steps: 0", "steps", "Steps '0' was left out: this app takes a whole number from 1 to 150"),
        ("Seed: -1", "seed", "Seed '-1' was left out: this app takes a whole number from 0 to 4294967295"),
        (
            "Model: " + "m" * 2000,
            "model",
            "its model name '" + "m" * 39 + "… was left out: it is not a name a model can have",
        ),
        ('Model: "\\ud800"', "model", "its model name '\\ud800' was left out: it is not a name a model can have"),
    ],
)
def test_an_automatic1111_value_out_of_range_is_left_out_with_a_note(tmp_path, setting, left_out, note):
    settings_line = INFOTEXT.splitlines()[-1]
    key = setting.split(":")[0]
    changed = ", ".join(part for part in settings_line.split(", ") if not part.startswith(key)) + ", " + setting
    form, notes = read_settings(
        png_file(tmp_path / "a.png", text_chunk("parameters", INFOTEXT.replace(settings_line, changed))), SD1
    )
    assert notes == [note]
    everything, _ = read_settings(png_file(tmp_path / "b.png", text_chunk("parameters", INFOTEXT)), SD1)
    expected = {name: value for name, value in everything.items() if name not in left_out.split()}
    assert form == expected | ({"skips": []} if left_out == "skips" else {})  # the rest loads; [] keeps the form's


def test_a_long_line_without_a_colon_is_a_prompt_too_long_to_load(tmp_path):
    """AUTOMATIC1111's regex took 10 s over this; the reader's time is measured in benchmarks, not here."""
    for line in ("a" * 40_000, "a b-c/" * 7000):
        form, notes = read_settings(png_file(tmp_path / "long.png", text_chunk("parameters", line)), SD1)
        assert form == {"negative_prompt": "", "skips": [1], "prompt_syntax": "a1111"}
        assert notes == [f"its prompt ({len(line):,} characters) was left out: this app takes at most 2,000"]


def test_a_file_too_big_is_refused_before_it_is_read(tmp_path):
    with open(tmp_path / "big.png", "wb") as big:  # not even a PNG: were it read, it would say so
        big.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ValueError, match="^this file is over 64 MiB; settings are read from smaller ones$"):
        read_settings(tmp_path / "big.png", SD1)


def refusal_and_peak_memory(path) -> tuple[str, int]:
    """read_settings's ValueError on the file at `path`, and the most memory Python held while reading it."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as refusal:
            read_settings(path, SD1)
        return str(refusal.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_text_chunks_are_bounded_before_they_are_read_or_inflated(tmp_path):
    long = png_file(tmp_path / "long.png", text_chunk("parameters", "a" * 2**24))
    assert refusal_and_peak_memory(long)[0] == "this image's 'parameters' text is over 65,536 bytes; it is not read"
    assert refusal_and_peak_memory(long)[1] < 2**20  # refused unread
    spaces = zlib.compress(b" " * 2**26, 9)  # 64 MiB that packs into 64 KB
    for kind, data in ((b"zTXt", b"clipskip\0\0" + spaces), (b"iTXt", b"clipskip\0\1\0\0\0" + spaces)):
        message, peak = refusal_and_peak_memory(png_file(tmp_path / "bomb.png", chunk(kind, data)))
        assert message == "this image's 'clipskip' text is over 524,288 bytes; it is not read"
        assert peak < 8 * 2**20  # inflated only up to the bound, never all 64 MiB
    form, _ = read_settings(png_file(tmp_path / "z.png", text_chunk("parameters", INFOTEXT, b"zTXt")), SD1)
    assert form["seed"] == 42  # compressed texts are read, Latin-1 and UTF-8
    form, _ = read_settings(png_file(tmp_path / "i.png", text_chunk("clipskip", json.dumps(MANIFEST), b"iTXt")), SD1)
    assert form["seed"] == 11
    many = [chunk(b"tEXt", b"comment\0x")] * (MAX_CHUNKS - 1)  # with IHDR and the parameters: 1,001
    with pytest.raises(ValueError, match="^this file has over 1,000 chunks before its pixels; a PNG has a few$"):
        read_settings(png_file(tmp_path / "many.png", *many, text_chunk("parameters", INFOTEXT)), SD1)
    assert read_settings(png_file(tmp_path / "enough.png", *many[:-1], text_chunk("parameters", INFOTEXT)), SD1)


DAMAGED = "this image's 'parameters' text is damaged (it does not decompress or decode)"


@pytest.mark.parametrize(
    "chunks, message",
    [
        (
            [text_chunk("parameters", INFOTEXT)[:-1] + b"\0"],
            "this image's 'parameters' text is damaged (cut short, or its checksum is wrong)",
        ),
        ([chunk(b"zTXt", b"parameters\0\0not zlib")], DAMAGED),
        ([chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"cut short")[:-3])], DAMAGED),
        ([chunk(b"iTXt", b"parameters\0\0\0\0\0\xff\xfe")], DAMAGED),  # not UTF-8
        ([chunk(b"iTXt", b"parameters\0\0")], DAMAGED),  # no language tag
        (
            [text_chunk("parameters", INFOTEXT)] * 2,
            "this image carries two 'parameters' texts; which one holds its settings is unclear",
        ),
    ],
)
def test_damaged_or_doubled_texts_are_refused(tmp_path, chunks, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        read_settings(png_file(tmp_path / "bad.png", *chunks), SD1)


def test_a_png_cut_short_or_with_texts_after_its_pixels_has_what_came_before(tmp_path):
    path = png_file(tmp_path / "cut.png", text_chunk("parameters", INFOTEXT))
    path.write_bytes(path.read_bytes()[:-20])  # into the pixel data
    assert read_settings(path, SD1)[0]["seed"] == 42
    Image.new("L", (8, 8)).save(tmp_path / "after.png")  # Pillow's Image.open reads only the texts before the pixels
    data = (tmp_path / "after.png").read_bytes()
    (tmp_path / "after.png").write_bytes(data[:-12] + text_chunk("parameters", INFOTEXT) + data[-12:])
    with pytest.raises(ValueError, match="^this image carries no generation settings"):
        read_settings(tmp_path / "after.png", SD1)


def test_each_cell_also_carries_comfyuis_graphs_of_itself(result, tmp_path):
    """Dropped on ComfyUI, a cell's `prompt` and `workflow` rebuild it; read back, they say what the cell is."""
    from clipskip.formats import comfyui, form_for, read_image

    write_outputs(result, tmp_path)
    info = Image.open(tmp_path / "row2-skip-2.png").info
    for key in ("prompt", "workflow"):
        found = comfyui.read({key: info[key]})
        form, notes = form_for(found, SD1)
        assert form == {
            "prompt": "a fox, at dawn",
            "negative_prompt": "blurry",
            "seed": 12,
            "steps": 2,
            "guidance_scale": 7.5,
            "width": 64,
            "height": 64,
            "scheduler": "DPM++ 2M Karras",
            "model": "embedded.safetensors",
            "prompt_syntax": "comfyui",
            "skips": [2],
        }, key
        assert notes == []
    assert read_image(tmp_path / "row2-skip-2.png").format == "a clipskip cell"  # its own text first


def test_a_strangers_text_in_a_note_or_error_is_one_printable_line(tmp_path):
    """A lone surrogate in a message broke the page's event stream; ESC and newlines reached the terminal."""
    from clipskip.formats import read_image

    graph = json.dumps({"3": {"class_type": "KSampler", "inputs": {"positive": ["@@", 0]}}})
    for node, shown in (("\\ud800", "\\ud800"), ("\\u001b[31mred", "\\x1b[31mred"), ("no\\nde", "no\\nde")):
        path = png_file(tmp_path / "graph.png", text_chunk("prompt", graph.replace("@@", node)))
        with pytest.raises(ValueError) as error:
            read_image(path)
        message = str(error.value)
        assert message.isprintable() and shown in message, message
    hires = INFOTEXT.replace("Steps:", "Hires upscale: \x1b]0;PWNED\x07, Steps:")
    notes = read_image(png_file(tmp_path / "a.png", text_chunk("parameters", hires))).notes
    assert notes and all(note.isprintable() for note in notes) and any("\\x1b]0;PWNED\\x07" in n for n in notes)


def test_own_cells_edited_stay_this_apps_and_grids_say_their_family(result, tmp_path):
    from clipskip.families import SDXL
    from clipskip.formats import form_for, read_image

    write_outputs(result, tmp_path)
    info = Image.open(tmp_path / "row1-skip-2.png").info
    edited = info["parameters"].replace("Clip skip: 2", "Clip skip: 99")  # unreadable: noted, not another reading
    path = png_file(
        tmp_path / "edited.png",
        text_chunk("parameters", edited),
        text_chunk("prompt", info["prompt"]),
        text_chunk("workflow", info["workflow"]),
    )
    found = read_image(path)
    assert found.format == "a clipskip cell" and found.form["prompt_syntax"] == "a1111"
    assert found.clip_skip is None and any("Clip skip '99' was left out" in note for note in found.notes)
    grid = read_image(tmp_path / "grid.png")
    assert grid.family == "SD 1.x"
    assert "it was made with an SD 1.x model; the chosen model is SDXL" in form_for(grid, SDXL)[1]
