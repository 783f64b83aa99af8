"""The embedded model's parts, built from small configs in the same diffusers and transformers classes as SD 1.x.

A 12-layer CLIP text encoder (paired, for its contrastive training only, with a small convolutional image encoder),
a 4x `AutoencoderKL` (64x64 pictures, 16x16x4 latents: at 8x, as in SD, a 64-px star's points do not survive) and a
cross-attention `UNet2DConditionModel` on those latents.
"""

import math

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .scenes import SIZE

WIDTH = 64  # the text encoder's hidden size, and so the UNet's cross-attention size
LATENT = SIZE // 4
# SD 1.x's noise schedule, for training (DDPM) and for sampling (DPM++ 2M Karras, the app's default sampler)
BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


def text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=WIDTH,
        intermediate_size=4 * WIDTH,
        num_hidden_layers=12,  # as in SD 1.x, so skips 1..12 mean what they mean there
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="quick_gelu",
        projection_dim=WIDTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


class ContrastivePair(nn.Module):
    """CLIP's training at toy scale: the text encoder, an image encoder, and the symmetric contrastive loss between
    their embeddings. The image side is a small convolutional net, as in CLIP's ResNet variants: a vision transformer
    on 8-pixel patches never learned, in this budget, that a square has corners and a circle none, and the text
    encoder then learned the two words as one."""

    def __init__(self, tokenizer: CLIPTokenizer):
        super().__init__()
        self.text = CLIPTextModelWithProjection(text_config(tokenizer))
        layers, width = [nn.Conv2d(3, 32, 3, padding=1), nn.GELU()], 32
        for out in (32, 64, 128, 128):  # 64 -> 4 pixels; the last map is flattened, so places are kept
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.GELU()]
            width = out
        self.image = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * (SIZE // 16) ** 2, WIDTH))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's starting temperature

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """The loss of a batch of matching captions and pictures: each must pick its partner out of the batch."""
        text = F.normalize(self.text(input_ids).text_embeds, dim=-1)
        image = F.normalize(self.image(pixel_values), dim=-1)
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * text @ image.T  # CLIP caps the scale at 100
        labels = torch.arange(len(logits))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def text_encoder_of(pair: ContrastivePair, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """The pair's text side as SD loads it: a `CLIPTextModel`, without the projection only the loss used."""
    encoder = CLIPTextModel(text_config(tokenizer))
    encoder.load_state_dict(pair.text.text_model.state_dict())
    return encoder


def autoencoder() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 64),  # three blocks: 4x down-sampling
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=2,  # few, wide groups: narrow ones would normalise a flat colour away
        sample_size=SIZE,
    )


def denoiser() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        # as in SDXL, no attention at the finest level (16x16 here): it costs the most there and adds least
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=WIDTH,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**BETAS)


def sampling_scheduler() -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(**BETAS, steps_offset=1, use_karras_sigmas=True)
