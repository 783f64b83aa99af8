"""The embedded model's parts: SD 1.x classes at toy size, and the text encoder kept from its contrastive pair."""

import math

import torch

from clipskip.embedded import build_tokenizer
from clipskip.toy import models
from clipskip.toy.scenes import sample_scenes, scene_batch


def test_parts_fit_together_as_sd_1x():
    tokenizer = build_tokenizer()
    pair, vae, unet = models.ContrastivePair(tokenizer), models.autoencoder(), models.denoiser()
    assert pair.text.config.num_hidden_layers == 12
    assert unet.config.cross_attention_dim == pair.text.config.hidden_size
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 4 and unet.config.sample_size * 4 == models.SIZE
    assert unet.config.in_channels == vae.config.latent_channels == 4


def test_the_text_encoder_is_the_pairs_text_side():
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    pair = models.ContrastivePair(tokenizer).eval()
    encoder = models.text_encoder_of(pair, tokenizer).eval()
    ids = tokenizer(["a red circle, on a blue background"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(encoder(ids).last_hidden_state, pair.text(ids).last_hidden_state)


def test_the_contrastive_loss_is_low_for_matching_pairs_and_high_for_shuffled_ones():
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    pair = models.ContrastivePair(tokenizer)
    scenes = sample_scenes(1, 8)
    ids = tokenizer([s.caption for s in scenes], padding="longest", return_tensors="pt").input_ids
    pixels = torch.from_numpy(scene_batch(scenes))
    opt = torch.optim.AdamW(pair.parameters(), lr=1e-3)
    for _ in range(30):  # learn these eight pairs by heart
        loss = pair(ids, pixels)
        loss.backward(), opt.step(), opt.zero_grad()
    with torch.no_grad():
        matched, shuffled = pair(ids, pixels).item(), pair(ids, pixels.roll(1, dims=0)).item()
    assert matched < 0.5 < math.log(8) < shuffled  # log(8): the loss of a guess among eight
