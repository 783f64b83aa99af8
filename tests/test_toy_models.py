"""The embedded model's parts: SD 1.x classes at toy size, and the text encoder kept from its contrastive pair."""

import torch

from clipskip.embedded import build_tokenizer
from clipskip.toy import models


def test_parts_fit_together_as_sd_1x():
    tokenizer = build_tokenizer()
    pair, vae, unet = models.contrastive_pair(tokenizer), models.autoencoder(), models.denoiser()
    assert pair.text_model.config.num_hidden_layers == 12
    assert unet.config.cross_attention_dim == pair.text_model.config.hidden_size
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 4 and unet.config.sample_size * 4 == models.SIZE
    assert unet.config.in_channels == vae.config.latent_channels == 4


def test_the_text_encoder_is_the_pairs_text_side():
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    pair = models.contrastive_pair(tokenizer).eval()
    encoder = models.text_encoder_of(pair, tokenizer).eval()
    ids = tokenizer(["a red circle, on a blue background"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(encoder(ids).last_hidden_state, pair.text_model(ids).last_hidden_state)
