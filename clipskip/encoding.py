"""Layer-skip text encoding: every requested CLIP skip from ONE pass of each text encoder per text.

Skip N is `hidden_states[-N]`. On SD 1.x and 2.x it goes through the encoder's final layer norm, so skip 1 is
`last_hidden_state` (AUTOMATIC1111 and ComfyUI agree). On SDXL both encoders give `hidden_states[-N]` without the norm,
concatenated as the UNet expects, and the pooled embedding stays the second encoder's usual one (ComfyUI's way).
On SD 3 / 3.5 CLIP-L and CLIP-G give `hidden_states[-N]` without the norm as on SDXL, zero-padded to T5's width and
followed by T5's sequence (diffusers' `pipeline_stable_diffusion_3.py`); T5 and both pooled outputs are encoded once
and are the same at every skip.
A fractional skip N + f blends `(1 − f)·hidden_states[-N] + f·hidden_states[-(N+1)]` before the norm (SD.Next's
definition); a per-encoder skip (`L1/G2`, `clipskip.skips`) takes each encoder's layer from its own value.
diffusers' own `clip_skip` is not used: it crashes with transformers >= 5.6 and never skips the negative prompt.
"""

import contextvars
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .families import denoiser, detect_family
from .formats.numbering import equivalents
from .request import check_skips, check_syntax
from .skips import Skip, number_text, parse_skip

if TYPE_CHECKING:
    from .embeddings import TextualInversion


@dataclass(frozen=True)
class EncoderLayer:
    encoder: str  # the pipeline's attribute name
    layer: int  # counted 1..layers from the first transformer layer
    layers: int

    def as_dict(self) -> dict:
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class EncoderSkip(EncoderLayer):
    """An encoder's layer in a fractional or per-encoder column: which value it takes and the layers it blends."""

    skip: str | None = None  # this encoder's own skip, where the column gives each encoder its own ("L1/G2")
    next_layer: int | None = None  # a fractional skip: the layer below `layer`, blended in ...
    weight: float | None = None  # ... with this weight (`layer` gets 1 − weight)


@dataclass(frozen=True)
class LayerChoice:
    """Which layer one skip value selects in each text encoder, and what other tools call the same setting."""

    skip: Skip | int
    native: bool  # the skip the model family was trained with
    hidden_states: int | list[int] | None  # the index into each encoder's hidden_states: [-N, -(N+1)] blended for a
    # fractional skip; None where each encoder has its own (`encoders[i].skip`)
    encoders: tuple[EncoderLayer, ...]
    final_norm: bool
    equivalents: dict[str, str | None]  # each tool's setting for it (`formats.numbering`), None where it has none
    t5: str | None = None  # SD 3: what its T5 encoder gives ("unchanged", or "absent: zeros"); None without one

    def as_dict(self) -> dict:
        return {
            "skip": self.skip.json if isinstance(self.skip, Skip) else self.skip,
            "native": self.native,
            "hidden_states": self.hidden_states,
            "encoders": [e.as_dict() for e in self.encoders],
            "final_norm": self.final_norm,
            "equivalents": dict(self.equivalents),
        } | ({"t5": self.t5} if self.t5 is not None else {})


@dataclass
class Encoding:
    embeddings: dict  # skip (as given to encode) -> the CLIP encoders' layers, concatenated, (1, 77·chunks, dim)
    pooled: torch.Tensor | None  # SDXL's and SD 3's pooled embedding (of the first chunk), the same for every skip
    dropped: str | None  # "plain" only: the words past the token window, None when the text fits
    real: tuple[int, ...]  # positions of the prompt's own tokens and each chunk's end token (no start, no padding)
    notes: tuple[str, ...] = ()  # what the prompt's syntax did that the user should know (a LoRA tag removed)
    used: tuple[str, ...] = ()  # the textual inversions the text names
    t5: torch.Tensor | None = None  # SD 3: T5's sequence (1, 256, width), the same for every skip

    @property
    def chunks(self) -> int:
        return next(iter(self.embeddings.values())).shape[1] // CHUNK_LENGTH

    def conditioning(self, skip: int) -> torch.Tensor:
        """What the denoiser receives at `skip`: the CLIP layers, (1, 77·chunks, dim); on SD 3 zero-padded to T5's
        width and followed by T5's sequence, (1, 77 + 256, T5 width), as diffusers' SD 3 `encode_prompt` builds it."""
        clip = self.embeddings[skip]
        if self.t5 is None:
            return clip
        return torch.cat([torch.nn.functional.pad(clip, (0, self.t5.shape[-1] - clip.shape[-1])), self.t5], dim=-2)


def encoder_layers(pipe) -> int:
    """T: the largest skip, the layer count of the checkpoint's smallest text encoder."""
    return min(getattr(pipe, name).config.num_hidden_layers for name, _ in detect_family(pipe).encoders)


def layer_choice(pipe, skip) -> LayerChoice:
    """The layers `skip` (an int, or any `clipskip.skips.parse_skip` notation) selects in each encoder of `pipe`.
    Raises ValueError for a per-encoder skip on a family with one text encoder."""
    family = detect_family(pipe)
    column = parse_skip(skip)
    parts = column.parts(family.labels)
    encoders = []
    for (name, _), letter, part in zip(family.encoders, family.labels, parts, strict=True):
        layers = getattr(pipe, name).config.num_hidden_layers
        whole, fraction = int(part), part - int(part)
        if column.whole:
            encoders.append(EncoderLayer(name, layers - whole + 1, layers))
            continue
        encoders.append(
            EncoderSkip(
                name,
                layers - whole + 1,
                layers,
                None if column.uniform else f"{letter}{number_text(int(part * 100))}",
                layers - whole if fraction else None,
                float(fraction) if fraction else None,
            )
        )
    if column.whole:
        hidden_states = -int(parts[0])
    elif column.uniform:
        hidden_states = [-int(parts[0]), -int(parts[0]) - 1]
    else:
        hidden_states = None
    t5 = None
    if family.t5 is not None:
        t5 = "unchanged" if getattr(pipe, family.t5[0], None) is not None else "absent: zeros, as diffusers"
    return LayerChoice(
        skip if column.whole else column,
        column == family.native_skip,
        hidden_states,
        tuple(encoders),
        family.final_norm,
        equivalents(family, skip if column.whole else column),
        t5,
    )


def layer_output(hidden_states, skip, final_norm=None) -> torch.Tensor:
    """One encoder's conditioning at `skip` (an int or Fraction from 1 to the encoder's layer count) from its
    `hidden_states` (T + 1 tensors, (batch, tokens, dim)): `hidden_states[-N]` for a whole N; for N + f,
    `(1 − f)·hidden_states[-N] + f·hidden_states[-(N+1)]` (SD.Next's fractional clip skip); then `final_norm` where
    the family applies it (None: not)."""
    whole = int(skip)
    z = hidden_states[-whole]
    if skip != whole:
        weight = float(skip - whole)
        z = (1 - weight) * z + weight * hidden_states[-(whole + 1)]
    return final_norm(z) if final_norm is not None else z


def skip_parts(skips, labels: tuple[str, ...]) -> dict:
    """Each skip (as given: an int stays the dict's key) with each encoder's value, in `labels`' order."""
    return {skip: parse_skip(skip).parts(labels) for skip in skips}


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


T5_LENGTH = 256  # diffusers' SD 3 max_sequence_length


def t5_sequence(pipe, text: str, device, dtype: torch.dtype) -> torch.Tensor:
    """SD 3's T5 conditioning for `text`, (1, 256, width), as diffusers' `_get_t5_prompt_embeds` computes it: padded
    and truncated to 256 tokens, no attention mask, the last layer; zeros of the transformer's joint attention width
    when the pipeline was loaded without T5."""
    encoder_name, tokenizer_name = detect_family(pipe).t5
    encoder, tokenizer = getattr(pipe, encoder_name, None), getattr(pipe, tokenizer_name, None)
    if encoder is None:
        return torch.zeros((1, T5_LENGTH, denoiser(pipe).config.joint_attention_dim), device=device, dtype=dtype)
    with _tokenizing:
        ids = tokenizer(text, padding="max_length", max_length=T5_LENGTH, truncation=True, return_tensors="pt")
    return encoder(ids.input_ids.to(device))[0].to(dtype)


def check_family_syntax(family, syntax: str) -> None:
    """Refuse a prompt syntax the family cannot read exactly: SD 3 takes "plain" only (ValueError)."""
    if family.t5 is not None and syntax != "plain":
        raise ValueError(
            f"prompt_syntax {syntax!r} is not offered for {family.name} models: clipskip reads their prompts as "
            '"plain" only (as diffusers does), since no weighting of the T5 encoder\'s tokens is defined here; '
            'choose "plain"'
        )


def encode(
    pipe,
    text: str,
    skips,
    device: torch.device | None = None,
    syntax: str = "plain",
    embeddings: Mapping[str, "TextualInversion"] | None = None,
    negative: bool = False,
) -> Encoding:
    """Conditioning for each skip, (1, 77·chunks, dim), from one forward pass of each text encoder over all of the
    text's chunks, on `device` (default: the pipeline's execution device, which takes diffusers a walk over every
    module to find). `syntax` is how the text is read (`clipskip.prompts.SYNTAXES`); `embeddings` are the
    textual inversions a prompt may name; `negative` says the text is a negative prompt (AUTOMATIC1111 reads those a
    little differently). On SD 3 the CLIP layers are `embeddings`, T5's sequence `t5` (`Encoding.conditioning` joins
    them). Raises ValueError for a prompt its syntax refuses, or a syntax other than "plain" on SD 3."""
    family = detect_family(pipe)
    check_family_syntax(family, syntax)
    if syntax != "plain":
        return encode_chunks(pipe, text, skips, device or pipe._execution_device, syntax, embeddings or {}, negative)
    device = device or pipe._execution_device
    parts = skip_parts(skips, family.labels)
    per_encoder, pooled = [], []
    for e, (encoder_name, tokenizer_name) in enumerate(family.encoders):
        encoder, tokenizer = getattr(pipe, encoder_name), getattr(pipe, tokenizer_name)
        ids, length, dropped = tokenize(tokenizer, encoder, text)  # SDXL's two tokenizers split text alike
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):  # as diffusers' encode_prompt does
            mask = (ids != tokenizer.pad_token_id).long().to(device)
        output = encoder(ids.to(device), attention_mask=mask, output_hidden_states=True)
        # transformers >= 5.6: no text_model
        final_norm = getattr(encoder, "text_model", encoder).final_layer_norm if family.final_norm else None
        per_encoder.append({skip: layer_output(output.hidden_states, p[e], final_norm) for skip, p in parts.items()})
        if encoder_name in family.pooled:  # the projected pooled output, whatever the skip, as diffusers and ComfyUI
            pooled.append(output.text_embeds)
    dtype = denoiser(pipe).dtype
    embeddings = {skip: torch.cat([layers[skip] for layers in per_encoder], dim=-1).to(dtype) for skip in skips}
    pooled = torch.cat(pooled, dim=-1).to(dtype) if pooled else None
    t5 = t5_sequence(pipe, text, device, dtype) if family.t5 is not None else None
    return Encoding(embeddings, pooled, dropped, tuple(range(1, length)), t5=t5)


CHUNK_LENGTH = 77  # start token, 75 tokens, end token
_overrides = contextvars.ContextVar("clipskip_token_overrides", default=None)


def vocabulary(tokenizer, embeddings: Mapping[str, "TextualInversion"]):
    """What the prompt parsers need of one encoder's tokenizer (serialised like every other tokenizer call)."""
    from .prompts import Vocabulary

    return Vocabulary.from_tokenizer(tokenizer, {name: ti.count for name, ti in embeddings.items()}, _tokenizing)


def with_overrides(module, _args, output):
    """A forward hook on a text encoder's token embedding: the rows a textual inversion takes, for this thread's
    encoding only (a context variable, so the shared encoder is never changed per request)."""
    rows = _overrides.get()
    if rows is None:
        return output
    output = output.clone()
    for (batch, position), vector in rows.items():
        output[batch, position] = vector.to(output.dtype)
    return output


def overridable(encoder) -> None:
    """Installs `with_overrides` on the encoder's token embedding, once per encoder (it does nothing unless asked)."""
    embedding = encoder.get_input_embeddings()
    if not getattr(embedding, "_clipskip_overrides", False):
        embedding.register_forward_hook(with_overrides)
        embedding._clipskip_overrides = True


def emphasise(z: torch.Tensor, weights: torch.Tensor, rule: str, empty: torch.Tensor | None) -> torch.Tensor:
    """One encoder's chunk outputs (chunks, 77, dim) with each token's weight (chunks, 77) applied by `rule`:
    "original" — multiply, then restore each chunk's mean (AUTOMATIC1111's sd_emphasis.EmphasisOriginal);
    "no-norm" — multiply only (EmphasisOriginalNoNorm);
    "comfyui" — move each token along the line from the empty prompt's vector at its position, `empty + (z - empty)·w`
    (ComfyUI's sd1_clip.ClipTokenWeightEncoder.encode_token_weights); no rescaling."""
    if rule == "comfyui":
        return torch.where(weights[..., None] == 1.0, z, empty + (z - empty) * weights[..., None])
    if torch.all(weights == 1.0):
        return z
    scaled = z * weights[..., None]
    if rule == "no-norm":
        return scaled
    before, after = z.mean(dim=(1, 2), keepdim=True), scaled.mean(dim=(1, 2), keepdim=True)
    return scaled * (before / after)


EMPHASIS = {"a1111": "original", "a1111-no-norm": "no-norm", "comfyui": "comfyui"}


def encode_chunks(
    pipe, text: str, skips, device, syntax: str, embeddings: Mapping, negative: bool = False
) -> Encoding:
    """`encode` for the chunked syntaxes: the text read as AUTOMATIC1111 or ComfyUI reads it (clipskip.prompts), its
    chunks through each encoder as one batch, each chunk's layer taken at every skip, the emphasis applied per chunk
    and encoder, the chunks concatenated; SDXL's pooled embedding from the first chunk."""
    from .prompts import parse

    family = detect_family(pipe)
    rule = EMPHASIS[syntax]
    parts = skip_parts(skips, family.labels)
    per_encoder, notes, real, pooled = [], (), (), []
    for e, (encoder_name, tokenizer_name) in enumerate(family.encoders):
        encoder, tokenizer = getattr(pipe, encoder_name), getattr(pipe, tokenizer_name)
        parsed = parse(text, syntax, vocabulary(tokenizer, embeddings), negative)
        notes = parsed.notes
        chunks = list(parsed.chunks)
        if rule == "comfyui":  # the empty prompt, encoded with the chunks, for the weighting
            chunks.append(parse("", syntax, vocabulary(tokenizer, {})).chunks[0])
        ids = torch.tensor([chunk.ids for chunk in chunks], device=device)
        weights = torch.tensor([chunk.weights for chunk in chunks], device=device)
        rows = {
            (c, position): embeddings[name].vectors[encoder_name][index].to(device)
            for c, chunk in enumerate(chunks)
            for position, name, index in chunk.embeddings
        }
        for c, position in rows:
            ids[c, position] = 0  # AUTOMATIC1111's placeholder: never the end token, where the pooled output is read
        if rows:
            overridable(encoder)
        token = _overrides.set(rows or None)
        try:
            mask = None
            if getattr(encoder.config, "use_attention_mask", False):  # as diffusers' encode_prompt does
                mask = (ids != tokenizer.pad_token_id).long()
            output = encoder(ids, attention_mask=mask, output_hidden_states=True)
        finally:
            _overrides.reset(token)
        final_norm = getattr(encoder, "text_model", encoder).final_layer_norm if family.final_norm else None
        layers = {}
        for skip, p in parts.items():
            z = layer_output(output.hidden_states, p[e], final_norm)
            empty = z[-1:] if rule == "comfyui" else None
            z = z[:-1] if rule == "comfyui" else z
            layers[skip] = emphasise(z, weights[: len(z)], rule, empty).reshape(1, -1, z.shape[-1])
            if not torch.isfinite(layers[skip]).all():  # the denoiser would turn it into black cells, silently
                largest = max(abs(w) for chunk in parsed.chunks for w in chunk.weights)
                raise ValueError(
                    f"the prompt's weights overflow its conditioning (the largest is {largest:.3g}) at CLIP skip "
                    f"{skip}; use smaller weights"
                )
        per_encoder.append(layers)
        if encoder_name in family.pooled:
            pooled.append(output.text_embeds[:1])  # the first chunk's, as AUTOMATIC1111 and ComfyUI
        real = tuple(c * CHUNK_LENGTH + i for c, chunk in enumerate(parsed.chunks) for i in range(1, chunk.real + 2))
    dtype = denoiser(pipe).dtype
    pooled = torch.cat(pooled, dim=-1).to(dtype) if pooled else None
    embeddings_by_skip = {
        skip: torch.cat([layers[skip] for layers in per_encoder], dim=-1).to(dtype) for skip in skips
    }
    used = tuple(sorted({name for chunk in parsed.chunks for _, name, _ in chunk.embeddings}))
    return Encoding(embeddings_by_skip, pooled, None, real, notes, used)


def extended(encoding: Encoding, chunks: int, empty: Encoding) -> Encoding:
    """`encoding` lengthened to `chunks` chunks with the empty prompt's chunk (encoded at the same skips), as
    AUTOMATIC1111's "pad prompt/negative prompt to be same length" does; the same object when already that long."""
    missing = chunks - encoding.chunks
    if missing <= 0:
        return encoding
    padded = {
        skip: torch.cat([tensor, empty.embeddings[skip][:, :CHUNK_LENGTH].repeat(1, missing, 1)], dim=1)
        for skip, tensor in encoding.embeddings.items()
    }
    e = encoding
    return Encoding(padded, e.pooled, e.dropped, e.real, e.notes, e.used, e.t5)


def layer_similarity(encoding: Encoding, reference: int) -> dict[int, float]:
    """Cosine similarity of each skip's conditioning with the reference skip's, averaged over the prompt's real
    tokens in every chunk: its words and each chunk's end token, not the start tokens (which never see the prompt)
    nor the padding."""
    real = list(encoding.real)
    target = encoding.embeddings[reference][0, real].float()
    return {
        skip: torch.nn.functional.cosine_similarity(embedding[0, real].float(), target, dim=-1).mean().item()
        for skip, embedding in encoding.embeddings.items()
    }


@torch.no_grad()
def skip_embeddings(pipe, text: str, skips, prompt_syntax: str = "a1111") -> dict[int | Skip, torch.Tensor]:
    """The conditioning the denoiser receives for each skip value, shape (1, 77·chunks, dim) (SD 3: (1, 77 + 256, T5
    width), see `Encoding.conditioning`), from one pass per encoder over the text's chunks; `skips` in any notation of
    `clipskip.skips.parse_skip` (2, 1.5, "L1/G2", {"L": 1, "G": 2}), keyed by the int for a whole skip and by `Skip`
    for the others (`Skip.key`), the text read as `prompt_syntax` says (`clipskip.prompts.SYNTAXES`; SD 3 takes
    "plain" only) with the textual inversions loaded with the pipeline. Raises ValueError for a bad skip, syntax or
    prompt."""
    skips = [skip.key for skip in check_skips(skips, encoder_layers(pipe), detect_family(pipe))]
    syntax = check_syntax(prompt_syntax)
    encoding = encode(pipe, text, skips, syntax=syntax, embeddings=getattr(pipe, "clipskip_embeddings", {}))
    return {skip: encoding.conditioning(skip) for skip in skips}
