"""Labels and captions say which layer each cell used and every tool's name for it."""

import json

from clipskip.families import SD1, SD3, SDXL
from clipskip.formats.numbering import equivalents
from clipskip.metadata import (
    caption_lines,
    cell_caption,
    cell_header,
    difference_badge,
    metrics_rows,
    row_labels,
    to_json,
)

CELL = {
    "skip": 2,
    "native": False,
    "hidden_states": -2,
    "encoders": [{"encoder": "text_encoder", "layer": 11, "layers": 12}],
    "final_norm": True,
    "equivalents": equivalents(SD1, 2),
}
SDXL_CELL = {
    "skip": 1,
    "native": False,
    "hidden_states": -1,
    "encoders": [
        {"encoder": "text_encoder", "layer": 12, "layers": 12},
        {"encoder": "text_encoder_2", "layer": 32, "layers": 32},
    ],
    "final_norm": False,
    "equivalents": equivalents(SDXL, 1),
}
METADATA = {
    "prompt": "a fox",
    "negative_prompt": "",
    "seed": 42,
    "steps": 20,
    "guidance_scale": 7.5,
    "sampler": "Euler a",
    "width": 512,
    "height": 512,
    "model": "embedded",
    "family": "SD 1.x",
    "rows_by": "seed",
    "rows": [{"prompt": "a fox", "seed": 42}],
}


def test_cell_header_names_layer_norm_and_equivalents():
    assert cell_header(CELL) == [
        "CLIP skip 2",
        "layer 11 of 12 · final norm",
        "ComfyUI −2 · diffusers clip_skip=1",  # AUTOMATIC1111's Clip skip is the skip on SD 1.x: not repeated
    ]
    assert cell_caption(CELL) == "skip 2 · layer 11/12"
    assert cell_header(CELL | {"native": True})[0] == "CLIP skip 2 (native)"


def test_sdxl_header_names_both_encoders():
    assert cell_header(SDXL_CELL) == [
        "CLIP skip 1",
        "layers 12/12 + 32/32 · no final norm",
        "ComfyUI −1 · diffusers — · A1111 —",  # neither diffusers nor AUTOMATIC1111 can select the last layer
    ]
    assert cell_caption(SDXL_CELL) == "skip 1 · layers 12/12+32/32"


def test_sd3_header_names_clip_l_and_clip_g_and_says_pooled_and_t5_are_unchanged():
    cell = SDXL_CELL | {"skip": 3, "equivalents": equivalents(SD3, 3), "t5": "unchanged"}
    cell["encoders"] = [
        {"encoder": "text_encoder", "layer": 10, "layers": 12},
        {"encoder": "text_encoder_2", "layer": 30, "layers": 32},
    ]
    assert cell_header(cell) == [
        "CLIP skip 3",
        "CLIP-L and CLIP-G layers 10/12 + 30/32 · no final norm",
        "pooled and T5 unchanged",
        "ComfyUI −3 · diffusers clip_skip=1",  # AUTOMATIC1111's number on SD 3 is not known: no label claims one
    ]
    assert (
        cell_header(cell | {"t5": "absent: zeros, as diffusers"})[2]
        == "pooled unchanged · T5 absent: zeros, as diffusers"
    )
    assert cell_caption(cell) == "skip 3 · CLIP-L and CLIP-G layers 10/12+30/32"


def test_caption_has_prompt_and_every_setting():
    assert caption_lines(METADATA) == [
        "Prompt: a fox",
        "seed 42 · 20 steps · CFG 7.5 · Euler a · 512×512 · model embedded (SD 1.x)",
    ]
    lines = caption_lines(METADATA | {"negative_prompt": "blurry", "prompt": ""})
    assert lines[:2] == ["Prompt: (empty)", "Negative prompt: blurry"]


def test_json_keeps_unicode_and_round_trips():
    text = to_json(METADATA | {"prompt": "猫 · café"})
    assert "猫 · café" in text and json.loads(text)["prompt"] == "猫 · café"


def test_rows_show_in_labels_and_caption():
    seeds = METADATA | {"rows": [{"prompt": "a fox", "seed": 42}, {"prompt": "a fox", "seed": 43}]}
    assert row_labels(seeds) == ["seed 42", "seed 43"]
    assert caption_lines(seeds)[-1].startswith("seeds 42, 43 · 20 steps")
    prompts = METADATA | {"rows_by": "prompt", "rows": [{"prompt": "a fox", "seed": 1}, {"prompt": "", "seed": 1}]}
    assert row_labels(prompts) == ["Prompt 1: a fox", "Prompt 2: (empty)"]
    assert caption_lines(prompts)[0] == "Prompts: one per row, as labelled"
    assert caption_lines(prompts)[-1].startswith("seed 1 · ")


def test_metrics_table_has_a_row_per_cell_with_notes():
    metadata = METADATA | {
        "reference_skip": 1,
        "columns": [CELL | {"skip": 1}, CELL],
        "rows": [
            {
                "prompt": "a fox",
                "seed": 42,
                "cells": [
                    {"skip": 1, "mean_abs_diff": 0.0, "ssim": 1.0},
                    {"skip": 2, "same_as": 1, "mean_abs_diff": 0.0, "ssim": 1.0},
                ],
            }
        ],
    }
    assert metrics_rows(metadata) == [
        ["1", 1, "layer 11/12", 0.0, 1.0, "reference"],
        ["1", 2, "layer 11/12", 0.0, 1.0, "same as skip 1"],
    ]
    assert difference_badge(12.345, 0.81234) == "MAD 12.3 · SSIM 0.812"


def test_the_caption_says_how_prompts_were_read_when_it_matters():
    assert caption_lines(METADATA | {"prompt_syntax": "a1111", "conditioning_chunks": {"prompts": [1]}})[-1:] == [
        "seed 42 · 20 steps · CFG 7.5 · Euler a · 512×512 · model embedded (SD 1.x)"
    ]
    two = {"prompt_syntax": "a1111", "conditioning_chunks": {"prompts": [2], "negative_prompt": 1}}
    assert caption_lines(METADATA | two)[-1] == "prompts read as AUTOMATIC1111 reads it · 2 chunks of 77 tokens"
    comfy = {"prompt_syntax": "comfyui", "textual_inversions": {"shiny": "0123456789ab"}}
    assert caption_lines(METADATA | comfy)[-1] == "prompts read as ComfyUI reads it · textual inversions: shiny"
    assert caption_lines(METADATA | {"prompt_syntax": "plain"})[-1] == "prompts read as written"
