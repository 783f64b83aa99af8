"""AUTOMATIC1111's `parameters` text: what we write reads back, and real AUTOMATIC1111 texts fill the form."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipskip.families import SD1
from clipskip.formats import form_for
from clipskip.formats.a1111 import read_parameters, read_text, settings_pairs, write_parameters


def form_settings(text: str, family=SD1) -> tuple[dict, list[str]]:
    return form_for(read_text(text), family)


# AUTOMATIC1111's own pattern (modules/infotext_utils.py), used with findall: the reference the reader must equal.
# It is quadratic on a long run of key characters without a colon, so it is only ever given short texts here.
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')

# As AUTOMATIC1111 1.10 writes it: the schedule apart from the sampler, a quoted value with a colon and a comma
A1111 = """masterpiece, best quality, 1girl, solo, looking at viewer, (cherry blossoms:1.2)
falling petals
Negative prompt: lowres, bad anatomy, bad hands, text, error, missing fingers
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, \
Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, Lora hashes: "add_detail: 7c6bad76eb54, x: 1", \
Version: v1.10.1"""
# An older one, with Clip skip left out because it was 1, and no negative prompt
A1111_OLD = (
    "a photo of an astronaut riding a horse\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512"
)


def test_a_real_automatic1111_text_fills_the_form():
    form, notes = form_settings(A1111)
    assert form == {
        "prompt": "masterpiece, best quality, 1girl, solo, looking at viewer, (cherry blossoms:1.2)\nfalling petals",
        "negative_prompt": "lowres, bad anatomy, bad hands, text, error, missing fingers",
        "steps": 28,
        "guidance_scale": 7.0,
        "seed": 1234567890,
        "skips": [2],
        "width": 512,
        "height": 768,
        "scheduler": "DPM++ 2M Karras",
        "model": "v1-5-pruned-emaonly",
        "prompt_syntax": "a1111",  # no Emphasis field: AUTOMATIC1111's default, "Original"
    }
    assert notes == [
        "its LoRAs (add_detail, x) are applied by its prompt's <lora:…> tags where this server offers them by name; a "
        "render notes those it does not"
    ]
    assert read_parameters(A1111)[2]["Lora hashes"] == "add_detail: 7c6bad76eb54, x: 1"


def test_a_missing_clip_skip_means_1_and_unknown_samplers_are_noted():
    form, notes = form_settings(A1111_OLD)
    assert (form["skips"], form["scheduler"], form["negative_prompt"], notes) == ([1], "Euler a", "", [])
    form, notes = form_settings(A1111_OLD.replace("Euler a", "LMS"))
    assert "scheduler" not in form and notes == ["sampler 'LMS' is not offered here; the sampler menu's is kept"]


def test_what_we_write_reads_back_with_awkward_values():
    settings = {"Steps": 20, "Sampler": "Euler a", "Model": "my, model: v2", "Clip skip": 1}
    text = write_parameters("a fox, at dawn\nsecond line", "blurry", settings)
    prompt, negative, parsed = read_parameters(text)
    assert (prompt, negative) == ("a fox, at dawn\nsecond line", "blurry")
    assert parsed == {"Steps": "20", "Sampler": "Euler a", "Model": "my, model: v2", "Clip skip": "1"}


def test_a_text_without_a_settings_line_is_all_prompt():
    prompt, negative, settings = read_parameters("just a prompt\nNegative prompt: ugly")
    assert (prompt, negative, settings) == ("just a prompt", "ugly", {})


# Real and odd-but-short settings lines: quoted values with escapes, keys with spaces, dashes and slashes, a quote
# not followed by a comma, an empty quoted value, Unicode word characters and spaces, a line ending in a newline
ODD_LINES = [
    A1111.splitlines()[-1],
    A1111_OLD.splitlines()[-1],
    'Lora hashes: "a: 1, b: 2", Steps: 20',
    'Model: "my, \\"odd\\" model: v2", Seed: 3',
    'Key: "unclosed, Other: 1, Third: 2',
    'Key: "x"y, Other: "", Third: ""',
    'Key: "a\\\nb", Other: 1',
    "ADetailer model/2nd: face_yolov8n.pt, Hires upscale: 2, Clip-skip: 3",
    "Größe: 512x512, 手順: 20,\u3000Seed: 1",
    "x: 1, ab: 2,: 3, cd:, ef:   ,gh:4",
    "Steps: 20, Sampler: Euler a\n",
    'Steps: 20, Model: "v1, v2"\n',
    "Steps: 20\n, Sampler:\n Euler",
    "a" * 150,
    "a b-c/" * 30 + ": value",
    "",
    ":,:,:",
]


@pytest.mark.parametrize("line", ODD_LINES)
def test_the_settings_line_is_read_exactly_as_automatic1111_reads_it(line):
    assert settings_pairs(line) == A1111_PARAM.findall(line)


# Settings-line-like texts, so that generated ones often hold keys, quoted values, escapes and line ends
KEYS = st.sampled_from(["Key", "ab", "Clip skip", "a/b-c", "é²", "x", " ", ""])
VALUES = st.lists(st.sampled_from(['"', "x", ",", "\\", " ", "\n", ":", "é"]), max_size=8).map("".join)
LINES = st.lists(
    st.tuples(KEYS, st.sampled_from([":", ": ", " :", ""]), VALUES, st.sampled_from([",", ", ", "", "\n"])), max_size=6
).map(lambda parts: "".join(map("".join, parts)))


@settings(max_examples=1500, deadline=None)
@given(LINES | st.text(max_size=200))
def test_any_short_text_is_read_exactly_as_automatic1111_reads_it(line):
    assert settings_pairs(line) == A1111_PARAM.findall(line)


def test_a_long_line_without_a_colon_is_read_in_one_pass():
    """The line that took AUTOMATIC1111's regex 10 s: no pairs. (Its time is for benchmarks/, not a test.)"""
    assert settings_pairs("a" * 40_000) == settings_pairs("a b-c/" * 7_000) == []
    assert settings_pairs("a" * 40_000 + ": 1, ab: 2") == [("a" * 40_000, "1"), ("ab", "2")]


def test_numbers_reach_the_form_only_as_plain_decimals_in_the_apps_range():
    text = "p\nSteps: 150, CFG scale: 0, Seed: 4294967295, Size: 2048x64, Clip skip: 64"
    form, notes = form_settings(text)
    assert (form["steps"], form["guidance_scale"], form["seed"], form["width"], form["height"]) == (
        150,
        0,
        2**32 - 1,
        2048,
        64,
    )
    assert (form["skips"], notes) == ([64], [])
    text = "p\nSteps: 1_000, CFG scale: 7.5e0, Seed: ４２, Size: 512 x 512, Clip skip: +2"
    form, notes = form_settings(text)
    assert form == {"prompt": "p", "negative_prompt": "", "skips": [], "prompt_syntax": "a1111"}
    assert [note.split(" was left out")[0] for note in notes] == [
        "Steps '1_000'",
        "CFG scale '7.5e0'",
        "Seed '４２'",
        "Clip skip '+2'",
        "Size '512 x 512'",
    ]


def test_a_prompt_longer_than_the_app_takes_is_left_out_with_a_note():
    form, notes = form_settings("x" * 2001 + "\nNegative prompt: ok\nSteps: 3, Seed: 1, Size: 64x64")
    assert (form["negative_prompt"], form["steps"], "prompt" in form) == ("ok", 3, False)
    assert notes == ["its prompt (2,001 characters) was left out: this app takes at most 2,000"]
    form, notes = form_settings("ok\nNegative prompt: " + "x" * 2001)
    assert (form["prompt"], "negative_prompt" in form) == ("ok", False)
    assert notes == ["its negative prompt (2,001 characters) was left out: this app takes at most 2,000"]


def test_a_text_longer_than_any_real_one_is_refused():
    with pytest.raises(ValueError, match="^this image's parameters text is 65,537 characters long; at most 65,536 "):
        form_settings("x" * 65_537)


@pytest.mark.parametrize(
    ("field", "syntax"),
    [("", "a1111"), ("Emphasis: Original, ", "a1111"), ("Emphasis: No norm, ", "a1111-no-norm")]
    + [("Emphasis: None, ", "plain"), ("Prompt syntax: comfyui, ", "comfyui")],
)
def test_the_emphasis_field_or_its_absence_says_how_the_prompt_was_read(field, syntax):
    form, notes = form_settings(f"a (fox:1.2)\nSteps: 20, {field}Sampler: Euler, Seed: 1")
    assert (form["prompt_syntax"], notes) == (syntax, [])


def test_an_unknown_emphasis_is_noted_and_automatic1111s_used():
    form, notes = form_settings("a fox\nSteps: 20, Emphasis: Sharper, Seed: 1")
    assert form["prompt_syntax"] == "a1111"
    assert notes == ["Emphasis 'Sharper' is not one this app reads; AUTOMATIC1111's is used"]


def test_sdnext_writes_whole_skips_as_decimals_and_fooocus_text_reads_as_fooocus():
    from clipskip.families import SDXL

    form, notes = form_settings("a fox\nSteps: 20, Seed: 1, Clip skip: 2.0, App: SD.Next, Version: 8b2ba52", SDXL)
    assert (form["skips"], notes) == ([3], [])  # SD.Next's 2 is hidden_states[-3] on SDXL
    form, notes = form_settings("a fox\nSteps: 20, Seed: 1, Clip skip: 1.5, App: SD.Next, Version: 8b2ba52")
    assert (form["skips"], notes) == (["1.5"], [])  # its fractional skip, as this app's
    form, notes = form_settings("a fox\nSteps: 20, Seed: 1, Clip skip: 0.25, App: SD.Next, Version: 8b2ba52", SDXL)
    assert (form["skips"], notes) == (["1.25"], [])  # one more on SDXL
    form, notes = form_settings("a fox\nSteps: 20, Seed: 1, Clip skip: 0.5, App: SD.Next, Version: 8b2ba52")
    assert form["skips"] == [] and notes == ["SD.Next's Clip skip 0.5 is below 1, which selects no layer here"]
    fooocus = read_text("cat\nNegative prompt: bad\nSteps: 30, Sampler: Euler, Seed: 1, Version: Fooocus v2.5.0")
    assert (fooocus.format, fooocus.family, fooocus.form["prompt_syntax"]) == (
        "Fooocus (its AUTOMATIC1111 scheme)",
        "SDXL",
        "comfyui",  # Fooocus weights prompts with ComfyUI's code
    )
    assert form_for(fooocus, SDXL)[0]["skips"] == [1]  # 2.3 and later leave out a clip skip of 1
