"""The embedded model: SD 1.x architecture, the same weights everywhere, a CLIP tokenizer with the project's vocab."""

import torch
from diffusers import StableDiffusionPipeline

from clipskip.embedded import CLIP_WINDOW, build_embedded_pipeline, build_tokenizer


def test_it_is_a_stable_diffusion_pipeline_with_a_12_layer_encoder(pipe):
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.text_encoder.config.num_hidden_layers == 12
    assert pipe.vae_scale_factor == 8
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert pipe.name_or_path == "embedded"
    assert pipe.safety_checker is None


def test_weights_are_the_same_on_every_build_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, second = build_embedded_pipeline(), build_embedded_pipeline()
    assert torch.rand(1) == expected_next
    for name in ("text_encoder", "unet", "vae"):
        a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert all(torch.equal(a[key], b[key]) for key in a), name


def test_tokenizer_is_clip_format_and_round_trips_text():
    tokenizer = build_tokenizer()
    assert tokenizer.model_max_length == CLIP_WINDOW
    ids = tokenizer("A photo of a red cat, highly detailed").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert "photo</w>" in tokens and "detailed</w>" in tokens  # whole words from the project's own merges
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a photo of a red cat , highly detailed"
    odd = tokenizer("猫 café 🎲").input_ids  # any text encodes, through byte fallback
    assert tokenizer.unk_token_id not in odd[1:-1]
    assert tokenizer.decode(odd, skip_special_tokens=True).replace(" ", "") == "猫café🎲"


def test_tokenizer_pads_to_the_window():
    tokenizer = build_tokenizer()
    batch = tokenizer("a cat", padding="max_length", max_length=CLIP_WINDOW, return_tensors="pt")
    assert batch.input_ids.shape == (1, CLIP_WINDOW)
