"""Skip N is layer T-N+1 through the final norm, for prompt and negative alike, from one encoder pass per text."""

import copy

import pytest
import torch

from clipskip import compare, skip_embeddings
from clipskip.encoding import encoder_layers, layer_choice, tokenize
from tests.conftest import TINY

TEXTS = ["a watercolor painting of a fox in a snowy forest", "blurry, lowres, bad anatomy", ""]


def truncated_encoder_output(pipe, text: str, skip: int) -> torch.Tensor:
    """Independent of hidden_states indexing: drop the last skip-1 layers (as InvokeAI does) and run the rest."""
    encoder = copy.deepcopy(pipe.text_encoder)
    encoder.encoder.layers = encoder.encoder.layers[: len(encoder.encoder.layers) - (skip - 1)]
    encoder.config.num_hidden_layers = len(encoder.encoder.layers)
    ids = pipe.tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids).last_hidden_state


@pytest.mark.parametrize("text", TEXTS)
def test_every_skip_matches_a_truncated_encoder(pipe, text):
    layers = encoder_layers(pipe)
    embeddings = skip_embeddings(pipe, text, range(1, layers + 1))
    assert list(embeddings) == list(range(1, layers + 1))
    for skip, embedding in embeddings.items():
        assert embedding.shape == (1, 77, pipe.text_encoder.config.hidden_size)
        torch.testing.assert_close(embedding, truncated_encoder_output(pipe, text, skip), rtol=1e-5, atol=1e-5)


def test_skip_1_is_what_diffusers_itself_conditions_on(pipe):
    ours = skip_embeddings(pipe, TEXTS[0], [1])[1]
    theirs, _ = pipe.encode_prompt(TEXTS[0], "cpu", 1, False)
    torch.testing.assert_close(ours, theirs)


def test_skips_differ_from_each_other(pipe):
    embeddings = skip_embeddings(pipe, TEXTS[0], [1, 2, 3])
    assert not torch.allclose(embeddings[1], embeddings[2])
    assert not torch.allclose(embeddings[2], embeddings[3])


def test_out_of_range_skips_are_refused(pipe):
    with pytest.raises(ValueError, match="CLIP skip 13 is out of range: this text encoder has 12 layers"):
        skip_embeddings(pipe, "a cat", [1, 13])
    with pytest.raises(ValueError, match="choose at least one CLIP skip value"):
        skip_embeddings(pipe, "a cat", [])


def count_encoder_passes(pipe):
    calls = []
    handle = pipe.text_encoder.register_forward_hook(lambda module, args, output: calls.append(1))
    return calls, handle


@pytest.mark.parametrize(("guidance_scale", "passes"), [(7.5, 2), (1.0, 1)])
def test_one_encoder_pass_per_text_whatever_the_number_of_skips(pipe, guidance_scale, passes):
    calls, handle = count_encoder_passes(pipe)
    try:
        compare(
            pipe, "a cat", negative_prompt="a dog", seed=1, skips=range(1, 13), guidance_scale=guidance_scale, **TINY
        )
    finally:
        handle.remove()
    assert len(calls) == passes  # prompt, and the negative prompt only when CFG uses it


def test_skip_embeddings_uses_one_pass(pipe):
    calls, handle = count_encoder_passes(pipe)
    try:
        skip_embeddings(pipe, "a cat", [1, 2, 3, 4])
    finally:
        handle.remove()
    assert len(calls) == 1


def test_negative_prompt_gets_the_same_layer_as_the_prompt(pipe, monkeypatch):
    seen = {}
    run = type(pipe).__call__

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    compare(pipe, "a cat", negative_prompt="blurry", seed=3, skips=[2, 4], **TINY)
    expected = skip_embeddings(pipe, "blurry", [2, 4])
    torch.testing.assert_close(seen["negative_prompt_embeds"], torch.cat([expected[2], expected[4]]))
    positive = skip_embeddings(pipe, "a cat", [2, 4])
    torch.testing.assert_close(seen["prompt_embeds"], torch.cat([positive[2], positive[4]]))


def test_layer_choice_names_every_tool_equivalent(pipe):
    assert layer_choice(pipe, 1).as_dict() == {
        "skip": 1,
        "layer": 12,
        "layers": 12,
        "final_norm": True,
        "comfyui": -1,
        "diffusers_clip_skip": None,
    }
    two = layer_choice(pipe, 2)
    assert (two.layer, two.comfyui, two.diffusers_clip_skip) == (11, -2, 1)


def test_long_prompts_are_cut_at_the_window_and_the_cut_words_returned(pipe):
    words = " ".join(f"word{i}" for i in range(100))
    ids, dropped = tokenize(pipe, words)
    assert ids.shape == (1, 77)
    assert dropped is not None and dropped.replace(" ", "").endswith("word98word99")  # CLIP splits digits apart
    kept = pipe.tokenizer.decode(ids[0], skip_special_tokens=True)
    assert kept.replace(" ", "") + dropped.replace(" ", "") == words.replace(" ", "")
    assert tokenize(pipe, "a short prompt")[1] is None
