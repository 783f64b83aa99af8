"""Which Stable Diffusion family a loaded pipeline is, read from its components, and what CLIP skip means in it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    encoders: tuple[tuple[str, str], ...]  # (CLIP encoder, its tokenizer) attribute names, in the denoiser's order
    final_norm: bool  # whether the chosen layer goes through the encoder's final layer norm
    native_skip: int  # the skip the family was trained with
    diffusers_offset: int  # diffusers' clip_skip k selects hidden_states[-(k + offset)]; unset selects -offset
    pooled: tuple[str, ...] = ()  # the encoders whose projected pooled outputs, concatenated, the denoiser also takes
    t5: tuple[str, str] | None = None  # T5 encoder and tokenizer: its sequence follows the CLIP layers
    denoiser: str = "unet"  # the pipeline's attribute holding the denoising network
    labels: tuple[str, ...] = ("L",)  # each encoder's letter in a per-encoder skip ("L1/G2"), in `encoders`' order


SD1 = Family("SD 1.x", (("text_encoder", "tokenizer"),), True, 1, 1)
SD2 = Family("SD 2.x", (("text_encoder", "tokenizer"),), True, 1, 1, labels=("H",))  # OpenCLIP ViT-H
SDXL = Family(
    "SDXL",
    (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")),
    False,
    2,
    2,
    ("text_encoder_2",),
    labels=("L", "G"),
)
# diffusers' pipeline_stable_diffusion_3.py: CLIP-L and CLIP-G at hidden_states[-2] (clip_skip k: [-(k + 2)]), no final
# norm; both pooled outputs concatenated; T5-XXL's last layer (zeros when the pipeline has no T5) after the CLIP tokens
SD3 = Family(
    "SD 3",
    (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")),
    False,
    2,
    2,
    ("text_encoder", "text_encoder_2"),
    ("text_encoder_3", "tokenizer_3"),
    "transformer",
    ("L", "G"),
)


def detect_family(pipe) -> Family:
    """From the components, never the name: a transformer denoiser beside two CLIP encoders is SD 3 (its T5 may be
    absent); two encoders is SDXL; an OpenCLIP (gelu) encoder is SD 2.x. Raises ValueError without a first CLIP
    text encoder."""
    encoder, encoder_2 = getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)
    if encoder is None:
        raise ValueError(f"{type(pipe).__name__} has no first CLIP text encoder, so no CLIP skip to compare")
    if encoder_2 is not None and getattr(pipe, "transformer", None) is not None:
        return SD3
    if encoder_2 is not None:
        return SDXL
    return SD2 if encoder.config.hidden_act == "gelu" else SD1


def denoiser(pipe):
    """The pipeline's denoising network: its UNet, or SD 3's transformer."""
    return getattr(pipe, detect_family(pipe).denoiser)
