"""Skip N is layer T-N+1 through the final norm, for prompt and negative alike, from one encoder pass per text."""

import copy
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from clipskip import compare, skip_embeddings
from clipskip.encoding import encode, encoder_layers, layer_choice, tokenize
from clipskip.loading import load_pipeline
from tests.conftest import TINY, spy_on_calls

TEXTS = ["a watercolor painting of a fox in a snowy forest", "blurry, lowres, bad anatomy", ""]


def truncated_encoder_output(encoder, tokenizer, text: str, skip: int, final_norm: bool = True) -> torch.Tensor:
    """Independent of hidden_states indexing: drop the last skip-1 layers (as InvokeAI does) and run the rest."""
    encoder = copy.deepcopy(encoder)
    inner = getattr(encoder, "text_model", encoder)  # CLIPTextModelWithProjection still nests its text_model
    inner.encoder.layers = inner.encoder.layers[: len(inner.encoder.layers) - (skip - 1)]
    if not final_norm:
        inner.final_layer_norm = torch.nn.Identity()
    ids = tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids).last_hidden_state


@pytest.mark.parametrize("text", TEXTS)
def test_every_skip_matches_a_truncated_encoder(pipe, text):
    layers = encoder_layers(pipe)
    embeddings = skip_embeddings(pipe, text, range(1, layers + 1))
    assert list(embeddings) == list(range(1, layers + 1))
    for skip, embedding in embeddings.items():
        assert embedding.shape == (1, 77, pipe.text_encoder.config.hidden_size)
        expected = truncated_encoder_output(pipe.text_encoder, pipe.tokenizer, text, skip)
        torch.testing.assert_close(embedding, expected, rtol=1e-5, atol=1e-5)


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
    seen = spy_on_calls(monkeypatch, type(pipe))
    compare(pipe, "a cat", negative_prompt="blurry", seed=3, skips=[2, 4], **TINY)
    expected = skip_embeddings(pipe, "blurry", [2, 4])
    torch.testing.assert_close(seen["negative_prompt_embeds"], torch.cat([expected[2], expected[4]]))
    positive = skip_embeddings(pipe, "a cat", [2, 4])
    torch.testing.assert_close(seen["prompt_embeds"], torch.cat([positive[2], positive[4]]))


def test_layer_choice_names_every_tool_equivalent(pipe):
    assert layer_choice(pipe, 1).as_dict() == {
        "skip": 1,
        "native": True,
        "hidden_states": -1,
        "encoders": [{"encoder": "text_encoder", "layer": 12, "layers": 12}],
        "final_norm": True,
        "equivalents": {
            "AUTOMATIC1111": "1",
            "Forge": "1",
            "ComfyUI": "-1",
            "diffusers": "unset",
            "InvokeAI": "0",
            "SD.Next": "1",
        },
    }
    two = layer_choice(pipe, 2)
    assert two.encoders[0].layer == 11
    assert (two.equivalents["ComfyUI"], two.equivalents["diffusers"]) == ("-2", "clip_skip=1")


def test_long_prompts_are_cut_at_the_window_and_the_cut_words_returned(pipe):
    words = " ".join(f"word{i}" for i in range(100))
    ids, length, dropped = tokenize(pipe.tokenizer, pipe.text_encoder, words)
    assert length == 77
    assert ids.shape == (1, 77)
    assert dropped is not None and dropped.replace(" ", "").endswith("word98word99")  # CLIP splits digits apart
    kept = pipe.tokenizer.decode(ids[0], skip_special_tokens=True)
    assert kept.replace(" ", "") + dropped.replace(" ", "") == words.replace(" ", "")
    assert tokenize(pipe.tokenizer, pipe.text_encoder, "a red fox")[1:] == (5, None)  # start, 3 words, end


def test_tokenizing_from_many_threads_at_once_gives_the_serial_results(pipe):
    """The fast tokenizer keeps its padding and truncation settings in shared state that every call resets: without
    the lock, one thread's settings land in another's call (ids left unpadded, or the dropped words lost)."""
    texts = ["", "a red fox", TEXTS[0], "castle " * 60, " ".join(f"word{i}" for i in range(100))]  # 2 past the window
    serial = {text: tokenize(pipe.tokenizer, pipe.text_encoder, text) for text in texts}
    jobs = texts * 128
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can, so that a race shows in every run
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda text: tokenize(pipe.tokenizer, pipe.text_encoder, text), jobs))
    finally:
        sys.setswitchinterval(interval)
    for text, (ids, length, dropped) in zip(jobs, results, strict=True):
        assert torch.equal(ids, serial[text][0]) and (length, dropped) == serial[text][1:], text


@pytest.mark.parametrize("text", TEXTS[:2])
def test_sd2_skips_match_a_truncated_encoder_with_its_norm(saved, text):
    sd2 = load_pipeline(str(saved["sd2"]), device="cpu")
    for skip, embedding in skip_embeddings(sd2, text, range(1, 6)).items():
        expected = truncated_encoder_output(sd2.text_encoder, sd2.tokenizer, text, skip)
        torch.testing.assert_close(embedding, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("text", TEXTS[:2])
def test_sdxl_skips_are_both_encoders_without_norm_concatenated(saved, text):
    sdxl = load_pipeline(str(saved["sdxl"]), device="cpu")
    for skip, embedding in skip_embeddings(sdxl, text, range(1, encoder_layers(sdxl) + 1)).items():
        first = truncated_encoder_output(sdxl.text_encoder, sdxl.tokenizer, text, skip, final_norm=False)
        second = truncated_encoder_output(sdxl.text_encoder_2, sdxl.tokenizer_2, text, skip, final_norm=False)
        assert embedding.shape == (1, 77, 32 + 48)
        torch.testing.assert_close(embedding, torch.cat([first, second], dim=-1), rtol=1e-5, atol=1e-5)


def test_sdxl_skip_2_is_what_diffusers_conditions_on_by_default_pooled_included(saved):
    sdxl = load_pipeline(str(saved["sdxl"]), device="cpu")
    with torch.no_grad():
        ours = encode(sdxl, TEXTS[0], [2])
    theirs, _, pooled, _ = sdxl.encode_prompt(TEXTS[0], device="cpu", do_classifier_free_guidance=False)
    torch.testing.assert_close(ours.embeddings[2], theirs)
    torch.testing.assert_close(ours.pooled, pooled)


def test_sdxl_skip_limit_is_the_smaller_encoder(saved):
    sdxl = load_pipeline(str(saved["sdxl"]), device="cpu")
    assert (sdxl.text_encoder.config.num_hidden_layers, sdxl.text_encoder_2.config.num_hidden_layers) == (5, 7)
    with pytest.raises(ValueError, match="CLIP skip 6 is out of range: this text encoder has 5 layers"):
        skip_embeddings(sdxl, "a cat", [6])
    assert layer_choice(sdxl, 2).as_dict() | {"encoders": None} == {
        "skip": 2,
        "native": True,
        "hidden_states": -2,
        "encoders": None,
        "final_norm": False,
        "equivalents": {
            "AUTOMATIC1111": "any (CLIP-L too: off)",
            "Forge": "1 or 2",
            "ComfyUI": "-2",
            "diffusers": "unset",
            "InvokeAI": "0",
            "SD.Next": "1",
        },
    }
    assert [vars(e) for e in layer_choice(sdxl, 2).encoders] == [
        {"encoder": "text_encoder", "layer": 4, "layers": 5},
        {"encoder": "text_encoder_2", "layer": 6, "layers": 7},
    ]
    assert layer_choice(sdxl, 1).equivalents["diffusers"] is None  # diffusers cannot select SDXL's last layer
    assert layer_choice(sdxl, 4).equivalents["diffusers"] == "clip_skip=2"


def sd3_from_its_definition(sd3, text: str, skips) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """SD 3's conditioning as diffusers' pipeline_stable_diffusion_3.py defines it, written out here: CLIP-L's and
    CLIP-G's layer (their last skip-1 layers removed, no final norm) side by side, zero-padded to T5's width, then
    T5's last layer over its 256 tokens (zeros without T5); the pooled vector is both encoders' projected outputs."""
    width = sd3.transformer.config.joint_attention_dim
    with torch.no_grad():
        pooled = []
        for encoder, tokenizer in ((sd3.text_encoder, sd3.tokenizer), (sd3.text_encoder_2, sd3.tokenizer_2)):
            ids = tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            pooled.append(encoder(ids.input_ids).text_embeds)
        if sd3.text_encoder_3 is None:
            t5 = torch.zeros(1, 256, width)
        else:
            ids = sd3.tokenizer_3(text, padding="max_length", max_length=256, truncation=True, return_tensors="pt")
            t5 = sd3.text_encoder_3(ids.input_ids).last_hidden_state
    conditioning = {}
    for skip in skips:
        clip = torch.cat(
            [
                truncated_encoder_output(sd3.text_encoder, sd3.tokenizer, text, skip, final_norm=False),
                truncated_encoder_output(sd3.text_encoder_2, sd3.tokenizer_2, text, skip, final_norm=False),
            ],
            dim=-1,
        )
        padded = torch.cat([clip, torch.zeros(1, 77, width - clip.shape[-1])], dim=-1)
        conditioning[skip] = torch.cat([padded, t5], dim=1)
    return conditioning, torch.cat(pooled, dim=-1)


@pytest.mark.parametrize("t5", [True, False], ids=["with T5", "without T5"])
def test_sd3_skips_are_both_clip_layers_padded_then_t5_and_pooled_stays(sd3, t5):
    model = copy.copy(sd3)
    if not t5:  # SD 3 runs without T5: zeros where its sequence would be, as diffusers does
        model.text_encoder_3 = model.tokenizer_3 = None
    text = "a red circle on the left"
    layers = encoder_layers(model)
    assert layers == 5  # CLIP-L's 5, the smaller of the two CLIP encoders; T5 is never skipped
    embeddings = skip_embeddings(model, text, range(1, layers + 1), prompt_syntax="plain")
    with torch.no_grad():
        pooled = encode(model, text, [1]).pooled
    expected, expected_pooled = sd3_from_its_definition(model, text, embeddings)
    for skip, embedding in embeddings.items():
        assert embedding.shape == (1, 77 + 256, 96)
        torch.testing.assert_close(embedding, expected[skip], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, expected_pooled, rtol=1e-5, atol=1e-5)
    assert not torch.equal(embeddings[1], embeddings[2])


def test_sd3_skip_2_is_diffusers_default_and_skip_k_plus_2_its_clip_skip_k(sd3):
    text = "a blue square"
    ours = skip_embeddings(sd3, text, [2, 3], prompt_syntax="plain")
    for skip, clip_skip in ((2, None), (3, 1)):
        theirs, _, _, _ = sd3.encode_prompt(
            text, text, text, device="cpu", do_classifier_free_guidance=False, clip_skip=clip_skip
        )
        torch.testing.assert_close(ours[skip], theirs)
    assert layer_choice(sd3, 3).as_dict()["t5"] == "unchanged"
    assert layer_choice(sd3, 3).equivalents | {"ComfyUI": None} == dict.fromkeys(layer_choice(sd3, 3).equivalents) | {
        "diffusers": "clip_skip=1"
    }


@pytest.mark.parametrize("syntax", ["a1111", "a1111-no-norm", "comfyui"])
def test_sd3_refuses_the_chunked_syntaxes_naming_plain(sd3, syntax):
    with pytest.raises(ValueError, match=f"prompt_syntax '{syntax}' is not offered for SD 3 models.*choose \"plain\""):
        skip_embeddings(sd3, "a (red:1.2) circle", [2], prompt_syntax=syntax)
