"""Tiny SD 1.x-, SD 2.x-, SDXL- and SD 3-like pipelines built from small configs (sizes after diffusers' own fast
tests).

Each has the family's real structure (encoder activation, linear projections, SDXL's two encoders and time ids, SD 3's
two projected CLIP encoders beside T5 and its transformer) at a size that renders in milliseconds. Layer counts differ
on purpose, so that nothing can assume 12.
"""

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from clipskip.embedded import build_tokenizer

SD1_LAYERS, SD2_LAYERS, SDXL_LAYERS, SDXL_LAYERS_2 = 6, 5, 5, 7
SD3_LAYERS, SD3_LAYERS_2 = 5, 7  # CLIP-L, CLIP-G
T5_WIDTH = 96  # wider than both CLIP encoders together (32 + 48), as T5-XXL's 4096 is wider than 768 + 1280
T5_WORDS = ("a", "red", "circle", "blue", "square", "green", "triangle", "on", "the", "left", "right", "cat")


def text_config(tokenizer, layers: int, act: str, hidden: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,  # quick_gelu: OpenAI CLIP (SD 1.x); gelu: OpenCLIP (SD 2.x, SDXL's second encoder)
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def vae(**settings) -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        **settings,
    )


def scheduler(**settings) -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, **settings
    )


def unet(**family) -> UNet2DConditionModel:
    """A two-level UNet; `family` gives what differs between SD 1.x, 2.x and SDXL."""
    settings = {
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 32,
    }
    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        norm_num_groups=4,
        **settings | family,
    )


def sd1(safety_checker=None, feature_extractor=None) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    return StableDiffusionPipeline(
        vae=vae(),
        text_encoder=CLIPTextModel(text_config(tokenizer, SD1_LAYERS, "quick_gelu")),
        tokenizer=tokenizer,
        unet=unet(attention_head_dim=4),
        scheduler=scheduler(),
        safety_checker=safety_checker,
        feature_extractor=feature_extractor,
        requires_safety_checker=safety_checker is not None,
    )


def sd2() -> StableDiffusionPipeline:
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    return StableDiffusionPipeline(
        vae=vae(),
        text_encoder=CLIPTextModel(text_config(tokenizer, SD2_LAYERS, "gelu")),
        tokenizer=tokenizer,
        unet=unet(attention_head_dim=(2, 4), use_linear_projection=True),  # SD 2.x's linear projections
        scheduler=scheduler(prediction_type="v_prediction"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sdxl() -> StableDiffusionXLPipeline:
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    return StableDiffusionXLPipeline(
        vae=vae(),
        text_encoder=CLIPTextModel(text_config(tokenizer, SDXL_LAYERS, "quick_gelu")),
        # a different width from the first encoder: diffusers' single-file loader tells them apart by width
        text_encoder_2=CLIPTextModelWithProjection(text_config(tokenizer, SDXL_LAYERS_2, "gelu", hidden=48)),
        tokenizer=tokenizer,
        tokenizer_2=build_tokenizer(),
        unet=unet(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + the second encoder's 32-d pooled embedding
            cross_attention_dim=80,  # both encoders' outputs (32 + 48), concatenated
        ),
        scheduler=scheduler(timestep_spacing="leading"),
    )


def sd1_with_safety_checker() -> StableDiffusionPipeline:
    """SD 1.x with a tiny safety checker whose thresholds flag every image, as a real one flags NSFW ones."""
    tower = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(
            text_config=tower | {"vocab_size": 100, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
            vision_config=tower | {"image_size": 32, "patch_size": 8},
            projection_dim=32,
        )
    )
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-100.0)  # every concept score clears its threshold
    return sd1(checker, CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}))


def t5_tokenizer() -> T5TokenizerFast:
    """A T5 tokenizer made offline (transformers builds it with the `tokenizers` library): T5's Unigram model over
    whole words with the word-start mark `▁`, its special tokens, and `</s>` ending every text."""
    words = [("▁" + word, -1.0) for word in T5_WORDS]
    return T5TokenizerFast(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), *words], extra_ids=0)


def sd3(t5: bool = True) -> StableDiffusion3Pipeline:
    """SD 3: CLIP-L and CLIP-G with projections, T5 (or none: SD 3 runs without it), a joint-attention transformer
    and a VAE with SD 3's shift, under flow matching."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    t5_config = T5Config(
        vocab_size=4 + len(T5_WORDS),
        d_model=T5_WIDTH,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    clip_l = CLIPTextModelWithProjection(text_config(tokenizer, SD3_LAYERS, "quick_gelu"))
    with torch.no_grad():  # SD 3 files carry no CLIP-L projection: diffusers' single-file loader makes it the identity
        clip_l.text_projection.weight.copy_(torch.eye(32))
    return StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(
            sample_size=32,
            patch_size=2,
            in_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=T5_WIDTH,
            pooled_projection_dim=64,  # both encoders' 32-d projections, concatenated
            out_channels=4,
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae(
            shift_factor=0.0609,  # SD 3's VAE shifts its latents as well as scaling them
            scaling_factor=1.5035,
            use_quant_conv=False,
            use_post_quant_conv=False,
        ),
        text_encoder=clip_l,
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(text_config(tokenizer, SD3_LAYERS_2, "gelu", hidden=48)),
        tokenizer_2=build_tokenizer(),
        text_encoder_3=T5EncoderModel(t5_config) if t5 else None,
        tokenizer_3=t5_tokenizer() if t5 else None,
    )
