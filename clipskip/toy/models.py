"""The embedded model's parts, built from small configs in the same diffusers and transformers classes as SD 1.x.

A 12-layer CLIP text encoder (paired, for its contrastive training only, with a small CLIP vision tower), a 4x
`AutoencoderKL` (64x64 pictures, 16x16x4 latents: at 8x, as in SD, a 64-px star's points do not survive) and a
cross-attention `UNet2DConditionModel` on those latents.
"""

from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig

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


def contrastive_pair(tokenizer: CLIPTokenizer) -> CLIPModel:
    """The text encoder with an image tower to learn against, as CLIP was trained; only the text side is kept."""
    vision = CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=4 * WIDTH,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=SIZE,
        patch_size=8,
        projection_dim=WIDTH,
        hidden_act="quick_gelu",
    )
    text = text_config(tokenizer)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=WIDTH))


def text_encoder_of(pair: CLIPModel, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    encoder = CLIPTextModel(text_config(tokenizer))
    encoder.load_state_dict(pair.text_model.state_dict())
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
