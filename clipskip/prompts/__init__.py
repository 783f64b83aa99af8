"""Prompt reading: text -> chunks of 77 token ids and weights, exactly as AUTOMATIC1111 or ComfyUI read it.

Pure Python (no torch): each syntax module turns text into chunks; `encoding.py` encodes every chunk at every skip.
"""

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

SYNTAXES = ("a1111", "a1111-no-norm", "comfyui", "plain")  # a1111 is the default
CHUNK_TOKENS = 75  # prompt tokens per chunk; start and end make the encoder's 77
# The most chunks one prompt may make (1,200 tokens): neither tool has a bound, but the denoiser attends to every
# chunk of every cell, and a 2,000-character prompt of BREAKs made 333 of them (17 GB for one request here)
MAX_CHUNKS = 16


@dataclass(frozen=True)
class Vocabulary:
    """What the parsers need from a tokenizer."""

    tokenize: Callable[[str], list[int]]  # ids of a piece of text, without start/end tokens
    start_id: int
    end_id: int
    pad_id: int  # the id after the first end token: end_id for SD 1.x and SDXL's CLIP-L, 0 for OpenCLIP
    comma_id: int | None
    embeddings: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # TI name -> vectors
    decode: Callable[[Sequence[int]], str] | None = None  # ids -> text, for the words "plain" cuts

    @classmethod
    def from_tokenizer(cls, tokenizer, embeddings: Mapping[str, int] | None = None, lock=None) -> "Vocabulary":
        """A Vocabulary over a transformers CLIP tokenizer; `lock` serialises calls (a fast tokenizer keeps its
        padding settings in shared state)."""
        lock = lock or threading.Lock()

        def tokenize(text: str) -> list[int]:
            with lock:
                return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids

        def decode(ids: Sequence[int]) -> str:
            with lock:
                return tokenizer.decode(list(ids), skip_special_tokens=True)

        return cls(
            tokenize,
            tokenizer.bos_token_id,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
            tokenizer.get_vocab().get(",</w>"),
            MappingProxyType(dict(embeddings or {})),
            decode,
        )


@dataclass(frozen=True)
class Chunk:
    ids: tuple[int, ...]  # 77: start + 75 + end(+padding); TI positions carry end_id as a placeholder
    weights: tuple[float, ...]  # 77; 1.0 at start, end and padding
    embeddings: tuple[tuple[int, str, int], ...]  # (position 0..76, embedding name, vector index)
    real: int  # positions 1..real hold the prompt's own tokens


@dataclass(frozen=True)
class ParsedPrompt:
    chunks: tuple[Chunk, ...]  # at least one
    syntax: str
    notes: tuple[str, ...]  # user-facing warnings
    dropped: str | None = None  # only for "plain": the words cut past the 77-token window
    tokens: int = 0  # the count AUTOMATIC1111 shows under the prompt (see token_count)


def frame(
    tokens: Sequence[int],
    weights: Sequence[float],
    embeddings: Sequence[tuple[int, str, int]],
    vocabulary: Vocabulary,
    pad_from_first_end: bool,
) -> Chunk:
    """start + tokens + end, padded to 77. `embeddings` hold positions within `tokens`. With `pad_from_first_end`
    (AUTOMATIC1111), padding is end tokens up to 75 and only what follows the first end token becomes pad_id;
    otherwise (ComfyUI) everything after the closing end token is pad_id."""
    real = len(tokens)
    if real > CHUNK_TOKENS:
        raise ValueError(f"a chunk of {real} tokens does not fit the encoder's {CHUNK_TOKENS}")
    held = {position for position, _, _ in embeddings}
    ids = [vocabulary.start_id]
    ids += [vocabulary.end_id if i in held else token for i, token in enumerate(tokens)]
    if pad_from_first_end:
        ids += [vocabulary.end_id] * (CHUNK_TOKENS - real + 1)
        first_end = next(i for i, token in enumerate(ids) if token == vocabulary.end_id and i - 1 not in held)
        ids[first_end + 1 :] = [vocabulary.pad_id] * (len(ids) - first_end - 1)
    else:
        ids += [vocabulary.end_id] + [vocabulary.pad_id] * (CHUNK_TOKENS - real)
    return Chunk(
        tuple(ids),
        (1.0, *weights, *[1.0] * (CHUNK_TOKENS - real + 1)),
        tuple((position + 1, name, index) for position, name, index in embeddings),
        real,
    )


def parse_plain(text: str, vocabulary: Vocabulary) -> ParsedPrompt:
    """Today's behaviour: the whole text through the tokenizer, one window, the rest cut."""
    ids = vocabulary.tokenize(text)
    kept = ids[:CHUNK_TOKENS]
    dropped = None
    if len(ids) > CHUNK_TOKENS and vocabulary.decode is not None:
        dropped = vocabulary.decode(ids[CHUNK_TOKENS:])
    chunk = frame(kept, [1.0] * len(kept), (), vocabulary, pad_from_first_end=False)
    return ParsedPrompt((chunk,), "plain", (), dropped, len(ids))


def parse(text: str, syntax: str, vocabulary: Vocabulary, negative: bool = False) -> ParsedPrompt:
    """Read `text` as `syntax` does. `negative`: a negative prompt, which AUTOMATIC1111 does not split at AND.
    Raises ValueError for a prompt that makes more than MAX_CHUNKS chunks (neither tool bounds them)."""
    from . import a1111, comfyui

    if not isinstance(text, str):
        raise ValueError(f"a prompt is text, not {type(text).__name__}")
    if syntax in ("a1111", "a1111-no-norm"):
        parsed = a1111.parse(text, syntax, vocabulary, negative)
    elif syntax == "comfyui":
        parsed = comfyui.parse(text, vocabulary)
    elif syntax == "plain":
        return parse_plain(text, vocabulary)
    else:
        raise ValueError(f"unknown prompt syntax {syntax!r}; choose one of {', '.join(SYNTAXES)}")
    if len(parsed.chunks) > MAX_CHUNKS:
        which = "negative prompt" if negative else "prompt"
        why = " (each BREAK starts one)" if syntax != "comfyui" else ""
        raise ValueError(
            f"the {which} makes {len(parsed.chunks)} chunks of {CHUNK_TOKENS} tokens{why}; at most {MAX_CHUNKS} "
            f"({MAX_CHUNKS * CHUNK_TOKENS:,} tokens): shorten it" + (" or use fewer BREAKs" if why else "")
        )
    return parsed


def token_count(text: str, syntax: str, vocabulary: Vocabulary, negative: bool = False) -> tuple[int, int]:
    """(tokens used, tokens available) as AUTOMATIC1111 shows it under the prompt: (23, 75), (98, 150).

    For ComfyUI: prompt tokens and 75 per chunk; for plain: prompt tokens and the one window (75)."""
    parsed = parse(text, syntax, vocabulary, negative)
    if syntax == "plain":
        return parsed.tokens, CHUNK_TOKENS
    if syntax == "comfyui":
        return parsed.tokens, CHUNK_TOKENS * len(parsed.chunks)
    return parsed.tokens, -(-max(parsed.tokens, 1) // CHUNK_TOKENS) * CHUNK_TOKENS
