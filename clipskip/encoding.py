"""Layer-skip text encoding: every requested CLIP skip from ONE pass of each text encoder per text.

Skip N is `hidden_states[-N]`. On SD 1.x and 2.x it goes through the encoder's final layer norm, so skip 1 is
`last_hidden_state` (AUTOMATIC1111 and ComfyUI agree). On SDXL both encoders give `hidden_states[-N]` without the norm,
concatenated as the UNet expects, and the pooled embedding stays the second encoder's usual one (ComfyUI's way).
diffusers' own `clip_skip` is not used: it crashes with transformers >= 5.6 and never skips the negative prompt.
"""

import threading
from dataclasses import dataclass

import torch

from .families import Family, detect_family
from .request import check_skips


@dataclass(frozen=True)
class EncoderLayer:
    encoder: str  # the pipeline's attribute name
    layer: int  # counted 1..layers from the first transformer layer
    layers: int


@dataclass(frozen=True)
class LayerChoice:
    """Which layer one skip value selects in each text encoder, and what other tools call the same setting."""

    skip: int
    native: bool  # the skip the model family was trained with
    hidden_states: int  # the index into each encoder's hidden_states
    encoders: tuple[EncoderLayer, ...]
    final_norm: bool
    comfyui: int  # CLIPSetLastLayer's stop_at_clip_layer
    diffusers: str  # diffusers' clip_skip for the prompt (diffusers never skips the negative prompt)

    def as_dict(self) -> dict:
        return {
            "skip": self.skip,
            "native": self.native,
            "hidden_states": self.hidden_states,
            "encoders": [vars(e) for e in self.encoders],
            "final_norm": self.final_norm,
            "comfyui": self.comfyui,
            "diffusers": self.diffusers,
        }


@dataclass
class Encoding:
    embeddings: dict[int, torch.Tensor]  # skip -> what the UNet receives, (1, tokens, dim)
    pooled: torch.Tensor | None  # SDXL's pooled embedding, the same for every skip
    dropped: str | None  # the words past the token window, None when the text fits
    length: int  # tokens before the padding: start, words, end


def encoder_layers(pipe) -> int:
    """T: the largest skip, the layer count of the checkpoint's smallest text encoder."""
    return min(getattr(pipe, name).config.num_hidden_layers for name, _ in detect_family(pipe).encoders)


def diffusers_equivalent(family: Family, skip: int) -> str:
    k = skip - family.diffusers_offset
    if k < 0:
        return "none"  # diffusers' SDXL cannot select the last layer
    return "unset" if k == 0 else f"clip_skip={k}"


def layer_choice(pipe, skip: int) -> LayerChoice:
    family = detect_family(pipe)
    encoders = []
    for name, _ in family.encoders:
        layers = getattr(pipe, name).config.num_hidden_layers
        encoders.append(EncoderLayer(name, layers - skip + 1, layers))
    return LayerChoice(
        skip,
        skip == family.native_skip,
        -skip,
        tuple(encoders),
        family.final_norm,
        -skip,
        diffusers_equivalent(family, skip),
    )


def token_window(tokenizer, encoder) -> int:
    # transformers 5 gives locally built CLIP tokenizers an endless model_max_length; the encoder knows its window
    return min(tokenizer.model_max_length, encoder.config.max_position_embeddings)


# A fast tokenizer keeps its padding and truncation settings in shared state and resets them on every call, so two
# requests tokenizing at once could get each other's settings: one at a time.
_tokenizing = threading.Lock()


def tokenize(tokenizer, encoder, text: str) -> tuple[torch.Tensor, int, str | None]:
    """Token ids padded to the window, how many are not padding, and the words dropped past the window."""
    window = token_window(tokenizer, encoder)
    with _tokenizing:
        ids = tokenizer(text, padding="max_length", max_length=window, truncation=True, return_tensors="pt").input_ids
        full = tokenizer(text, truncation=False, verbose=False, return_tensors="pt").input_ids
    if full.shape[-1] <= window:
        return ids, full.shape[-1], None
    return ids, window, tokenizer.decode(full[0, window - 1 : -1], skip_special_tokens=True)


def encode(pipe, text: str, skips, device: torch.device | None = None) -> Encoding:
    """Conditioning for each skip from one forward pass of each text encoder, on `device` (default: the pipeline's
    execution device, which takes diffusers a walk over every module to find)."""
    family = detect_family(pipe)
    device = device or pipe._execution_device
    per_encoder = []
    for encoder_name, tokenizer_name in family.encoders:
        encoder, tokenizer = getattr(pipe, encoder_name), getattr(pipe, tokenizer_name)
        ids, length, dropped = tokenize(tokenizer, encoder, text)  # SDXL's two tokenizers split text alike
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):  # as diffusers' encode_prompt does
            mask = (ids != tokenizer.pad_token_id).long().to(device)
        output = encoder(ids.to(device), attention_mask=mask, output_hidden_states=True)
        if family.final_norm:
            final_norm = getattr(encoder, "text_model", encoder).final_layer_norm  # transformers >= 5.6: no text_model
            per_encoder.append({skip: final_norm(output.hidden_states[-skip]) for skip in skips})
        else:
            per_encoder.append({skip: output.hidden_states[-skip] for skip in skips})
    # SDXL: the last encoder's projected pooled output, whatever the skip, as diffusers and ComfyUI use
    pooled = output.text_embeds.to(pipe.unet.dtype) if family.pooled else None
    dtype = pipe.unet.dtype
    embeddings = {skip: torch.cat([layers[skip] for layers in per_encoder], dim=-1).to(dtype) for skip in skips}
    return Encoding(embeddings, pooled, dropped, length)


def layer_similarity(encoding: Encoding, reference: int) -> dict[int, float]:
    """Cosine similarity of each skip's conditioning with the reference skip's, averaged over the prompt's real
    tokens: its words and the end token, not the start token (which never sees the prompt) nor the padding."""
    real = slice(1, encoding.length)
    target = encoding.embeddings[reference][0, real].float()
    return {
        skip: torch.nn.functional.cosine_similarity(embedding[0, real].float(), target, dim=-1).mean().item()
        for skip, embedding in encoding.embeddings.items()
    }


@torch.no_grad()
def skip_embeddings(pipe, text: str, skips) -> dict[int, torch.Tensor]:
    """The conditioning the UNet receives for each skip value, shape (1, tokens, dim), from one pass per encoder."""
    skips = check_skips(skips, encoder_layers(pipe))
    return encode(pipe, text, skips).embeddings
