"""Which Stable Diffusion family a loaded pipeline is, read from its components, and what CLIP skip means in it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    encoders: tuple[tuple[str, str], ...]  # (text encoder, its tokenizer) attribute names, in the UNet's order
    final_norm: bool  # whether the chosen layer goes through the encoder's final layer norm
    native_skip: int  # the skip the family was trained with
    diffusers_offset: int  # diffusers' clip_skip k selects hidden_states[-(k + offset)]; unset selects -offset
    pooled: bool  # whether the UNet also takes the last encoder's pooled (projected) embedding
    labels: tuple[str, ...] = ("L",)  # each encoder's letter in a per-encoder skip ("L1/G2"), in `encoders`' order


SD1 = Family("SD 1.x", (("text_encoder", "tokenizer"),), True, 1, 1, False)
SD2 = Family("SD 2.x", (("text_encoder", "tokenizer"),), True, 1, 1, False, ("H",))  # OpenCLIP ViT-H
SDXL = Family(
    "SDXL", (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")), False, 2, 2, True, ("L", "G")
)


def detect_family(pipe) -> Family:
    """From the components, never the name: two encoders is SDXL; an OpenCLIP (gelu) encoder is SD 2.x."""
    encoder, encoder_2 = getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)
    if encoder is None:
        raise ValueError(f"{type(pipe).__name__} has no first CLIP text encoder, so no CLIP skip to compare")
    if encoder_2 is not None:
        return SDXL
    return SD2 if encoder.config.hidden_act == "gelu" else SD1
