"""Layer-skip text encoding: every requested CLIP skip from ONE text-encoder pass per text.

Skip N is `hidden_states[-N]` passed through the encoder's final layer norm, so skip 1 is `last_hidden_state`
(AUTOMATIC1111 and ComfyUI agree). diffusers' own `clip_skip` is not used: it crashes with transformers >= 5.6 and
never skips the negative prompt.
"""

from dataclasses import asdict, dataclass

import torch

from .request import check_skips


@dataclass(frozen=True)
class LayerChoice:
    """Which layer one skip value selects, and what other tools call the same setting."""

    skip: int
    layer: int  # counted 1..layers from the first transformer layer
    layers: int
    final_norm: bool
    comfyui: int  # CLIPSetLastLayer's stop_at_clip_layer
    diffusers_clip_skip: int | None  # None: leave diffusers' clip_skip unset

    def as_dict(self) -> dict:
        return asdict(self)


def encoder_layers(pipe) -> int:
    """T: how many transformer layers the checkpoint's text encoder really has."""
    return pipe.text_encoder.config.num_hidden_layers


def native_skip(pipe) -> int:
    """The skip the model was trained with: SD 1.x and 2.x condition on the last layer."""
    return 1


def layer_choice(pipe, skip: int) -> LayerChoice:
    layers = encoder_layers(pipe)
    return LayerChoice(
        skip=skip,
        layer=layers - skip + 1,
        layers=layers,
        final_norm=True,
        comfyui=-skip,
        diffusers_clip_skip=skip - 1 if skip > 1 else None,
    )


def token_window(pipe) -> int:
    # transformers 5 gives locally built CLIP tokenizers an endless model_max_length; the encoder knows its window
    return min(pipe.tokenizer.model_max_length, pipe.text_encoder.config.max_position_embeddings)


def tokenize(pipe, text: str) -> tuple[torch.Tensor, str | None]:
    """Token ids padded to the window, and the words dropped past it (None when the text fits)."""
    window = token_window(pipe)
    ids = pipe.tokenizer(text, padding="max_length", max_length=window, truncation=True, return_tensors="pt").input_ids
    full = pipe.tokenizer(text, truncation=False, verbose=False, return_tensors="pt").input_ids
    if full.shape[-1] <= window:
        return ids, None
    return ids, pipe.tokenizer.decode(full[0, window - 1 : -1], skip_special_tokens=True)


def encode(pipe, text: str, skips) -> tuple[dict[int, torch.Tensor], str | None]:
    """Conditioning for each skip from one forward pass, and the words dropped past the token window."""
    encoder = pipe.text_encoder
    ids, dropped = tokenize(pipe, text)
    device = pipe._execution_device
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):  # as diffusers' encode_prompt does
        mask = (ids != pipe.tokenizer.pad_token_id).long().to(device)
    hidden_states = encoder(ids.to(device), attention_mask=mask, output_hidden_states=True).hidden_states
    final_norm = getattr(encoder, "text_model", encoder).final_layer_norm  # transformers >= 5.6 has no text_model
    embeddings = {skip: final_norm(hidden_states[-skip]).to(encoder.dtype) for skip in skips}
    return embeddings, dropped


@torch.no_grad()
def skip_embeddings(pipe, text: str, skips) -> dict[int, torch.Tensor]:
    """The conditioning the UNet receives for each skip value, shape (1, tokens, dim), from one encoder pass."""
    skips = check_skips(skips, encoder_layers(pipe))
    return encode(pipe, text, skips)[0]
