"""AUTOMATIC1111's `parameters` text: what we write reads back, and real AUTOMATIC1111 texts fill the form."""

from clipskip.infotext import form_settings, read_parameters, write_parameters
from clipskip.samplers import SAMPLERS

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
    form, notes = form_settings(A1111, SAMPLERS)
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
    }
    assert notes == []
    assert read_parameters(A1111)[2]["Lora hashes"] == "add_detail: 7c6bad76eb54, x: 1"


def test_a_missing_clip_skip_means_1_and_unknown_samplers_are_noted():
    form, notes = form_settings(A1111_OLD, SAMPLERS)
    assert (form["skips"], form["scheduler"], form["negative_prompt"]) == ([1], "Euler a", "")
    form, notes = form_settings(A1111_OLD.replace("Euler a", "LMS"), SAMPLERS)
    assert "scheduler" not in form and notes == ["sampler 'LMS' is not offered here"]


def test_what_we_write_reads_back_with_awkward_values():
    settings = {"Steps": 20, "Sampler": "Euler a", "Model": "my, model: v2", "Clip skip": 1}
    text = write_parameters("a fox, at dawn\nsecond line", "blurry", settings)
    prompt, negative, parsed = read_parameters(text)
    assert (prompt, negative) == ("a fox, at dawn\nsecond line", "blurry")
    assert parsed == {"Steps": "20", "Sampler": "Euler a", "Model": "my, model: v2", "Clip skip": "1"}


def test_a_text_without_a_settings_line_is_all_prompt():
    prompt, negative, settings = read_parameters("just a prompt\nNegative prompt: ugly")
    assert (prompt, negative, settings) == ("just a prompt", "ugly", {})
