"""Prompt and negative prompt of different chunk counts, and prompt rows of different chunk counts, in `compare`: the
shorter text is lengthened with chunks of the empty prompt (AUTOMATIC1111's "pad prompt/negative prompt to be same
length"), each length is denoised in its own batch, and every cell is the image its conditioning gives alone. The
conditioning is checked against the per-chunk computation of test_prompt_encoding, the images against the pipeline
called directly with that conditioning."""

import copy

import numpy as np
import pytest
import torch

from clipskip import compare
from tests.conftest import TINY, spy_on_calls
from tests.test_prompt_encoding import TOLERANCE, WORDS, reference

SHORT = "a red fox in the snow"
LONG = " ".join(WORDS[i % len(WORDS)] for i in range(120))  # 120 one-token words, no comma: chunks of 75 and 45
NEGATIVE = "blurry"
SEED, SKIPS = 5, [1, 2, 3]


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def chunks_of(text: str) -> list[list[tuple[str, float]]]:
    words = text.split()
    return [[(" ".join(words[i : i + 75]), 1.0)] for i in range(0, len(words), 75)] or [[("", 1.0)]]


def conditioning(pipe, text: str, length: int) -> dict[int, torch.Tensor]:
    """`text`'s conditioning at each skip, lengthened to `length` chunks with the empty prompt's chunk."""
    chunks = chunks_of(text)
    return reference(pipe, chunks + [[("", 1.0)]] * (length - len(chunks)), SKIPS)[0]


@torch.no_grad()
def alone(pipe, prompt_embeds, negative_prompt_embeds):
    """The pipeline itself on this conditioning, with a fresh copy of its own scheduler (the shared one untouched)."""
    run = copy.copy(pipe)
    run.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    run.set_progress_bar_config(disable=True)
    return run(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_prompt_embeds,
        num_inference_steps=TINY["steps"],
        width=TINY["width"],
        height=TINY["height"],
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]


@pytest.mark.parametrize(
    ("prompt", "negative"), [(LONG, NEGATIVE), (SHORT, LONG)], ids=["long-prompt", "long-negative"]
)
def test_prompt_and_negative_of_different_lengths(pipe, monkeypatch, prompt, negative):
    seen = spy_on_calls(monkeypatch, type(pipe))
    result = compare(pipe, prompt, negative_prompt=negative, seed=SEED, skips=SKIPS, **TINY)
    counts = {"prompts": [len(chunks_of(prompt))], "negative_prompt": len(chunks_of(negative))}
    assert result.metadata["conditioning_chunks"] == counts | {"extended_with_empty_prompt_chunks_to": [2]}
    positive, negative_ = conditioning(pipe, prompt, 2), conditioning(pipe, negative, 2)
    torch.testing.assert_close(seen["prompt_embeds"], torch.cat([positive[k] for k in SKIPS]), **TOLERANCE)
    torch.testing.assert_close(seen["negative_prompt_embeds"], torch.cat([negative_[k] for k in SKIPS]), **TOLERANCE)
    for skip in SKIPS:
        solo = alone(pipe, positive[skip], negative_[skip])
        assert np.abs(pixels(result.images[skip]) - pixels(solo)).max() <= 2, skip  # 2/255, batched vs alone


def test_rows_of_different_chunk_counts_equal_each_prompt_alone(pipe):
    settings = {"negative_prompt": NEGATIVE, "seed": SEED, "skips": [1, 2], **TINY}
    rows = compare(pipe, [SHORT, LONG], **settings)
    assert rows.metadata["conditioning_chunks"] == {
        "prompts": [1, 2],
        "negative_prompt": 1,
        "extended_with_empty_prompt_chunks_to": [1, 2],
    }
    assert rows.metadata["denoise_chunks"]["conditioning_lengths"] == [77, 154]
    for row, text in zip(rows.rows, [SHORT, LONG], strict=True):
        solo = compare(pipe, text, **settings)
        for skip in (1, 2):
            assert np.abs(pixels(row.images[skip]) - pixels(solo.images[skip])).max() <= 2, (text, skip)
