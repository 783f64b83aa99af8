"""ComfyUI's prompt reading (CLIPTextEncode: `comfy/sd1_clip.py`), written out without recursion.

`(text)` x1.1 nested, `(text:w)` sets w, `\\(` `\\)` escape, no `[ ]` weighting, no BREAK. Each weighted segment is
tokenized whole, except that ` embedding:name` starts a textual inversion; chunks of 75 where a group of fewer than
8 tokens that does not fit moves whole to the next chunk.
"""

import re

from . import CHUNK_TOKENS, Chunk, ParsedPrompt, Vocabulary, frame

ROUND = 1.1
MAX_WORD_LENGTH = 8  # ComfyUI's `max_word_length`: shorter groups are never split across chunks
EMBEDDING = "embedding:"
EMBEDDING_SPLIT = re.compile(r" embedding:|\nembedding:")
EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin")


def escape_important(text: str) -> str:
    return text.replace("\\)", "\0\1").replace("\\(", "\0\2")


def unescape_important(text: str) -> str:
    return text.replace("\0\1", ")").replace("\0\2", "(")


def token_weights(text: str) -> list[tuple[str, float]]:
    """ComfyUI's `token_weights(text, 1.0)` on escaped text, in one pass plus an explicit stack.

    ComfyUI recurses and re-reads the inside of every group; here the brackets are matched once and each region of
    the text is read at its own level only, so the work is linear in the length whatever the nesting."""
    n = len(text)
    # ComfyUI's `parse_parentheses` counts nesting from 0 at the top level and lets a stray ')' take it below 0;
    # a '(' opens a group only at a count >= 0. Inside groups this is ordinary bracket matching.
    match = [-1] * n
    opener = [False] * n
    open_stack: list[int] = []
    count = 0
    for i, char in enumerate(text):
        if char == "(":
            if count >= 0:
                opener[i] = True
                open_stack.append(i)
            count += 1
        elif char == ")":
            if count > 0:
                match[open_stack.pop()] = i
            count -= 1
    # the last ':' and the last bracket before each index, for `rfind(":")` and whether float() can succeed
    last_colon, last_bracket = [-1] * (n + 1), [-1] * (n + 1)
    for i, char in enumerate(text):
        last_colon[i + 1] = i if char == ":" else last_colon[i]
        last_bracket[i + 1] = i if char in "()" else last_bracket[i]

    def group(start: int, end: int, weight: float) -> tuple[int, int, float]:
        """The inside [start, end) of a group under `weight`: its weight and its text without ':w'."""
        weight *= ROUND
        colon = last_colon[end]
        if colon > start and last_bracket[end] < colon:  # a ')' after the colon would make float() fail
            try:
                weight = float(text[colon + 1 : end])
                end = colon
            except ValueError:
                pass
        return start, end, weight

    out: list[tuple[str, float]] = []
    tasks = [(0, n, 1.0)]  # regions still to read: [position, end), weight; the top of the stack comes first
    while tasks:
        position, end, weight = tasks.pop()
        run = position  # start of the text run being collected
        while position < end:
            if text[position] == "(" and opener[position]:
                if position > run:
                    out.append((text[run:position], weight))
                close = match[position]
                if close != -1 and close < end:  # a closed group; read it, then the rest of this region
                    tasks.append((close + 1, end, weight))
                    tasks.append(group(position + 1, close, weight))
                elif text[end - 1] == ")" and end - position >= 2:  # unclosed, but ends in ')': ComfyUI's rule
                    tasks.append(group(position + 1, end - 1, weight))
                else:
                    out.append((text[position:end], weight))
                run = position = end
                break
            position += 1
        if run < end:
            out.append((text[run:end], weight))
    return out


def find_embedding(name: str, vocabulary: Vocabulary) -> str | None:
    """The vocabulary's name for a file name ComfyUI would load: the name itself or with its extension."""
    if name in vocabulary.embeddings:
        return name
    for extension in EMBEDDING_EXTENSIONS:
        if name.endswith(extension) and name[: -len(extension)] in vocabulary.embeddings:
            return name[: -len(extension)]
    return None


def try_get_embedding(name: str, vocabulary: Vocabulary) -> tuple[str | None, str]:
    """ComfyUI's `_try_get_embedding`: (embedding, leftover text); the first word is the name, commas may trail."""
    words = name.split()
    if not words:
        raise ValueError("'embedding:' without a name (ComfyUI stops on it)")
    first, leftover = words[0], " ".join(words[1:])
    found = find_embedding(first, vocabulary)
    if found is None:
        stripped = first.strip(",")
        if len(stripped) < len(first):
            return find_embedding(stripped, vocabulary), f"{first[len(stripped) :]} {leftover}"
    return found, leftover


def token_groups(text: str, vocabulary: Vocabulary) -> tuple[list[list[tuple[int, float, tuple | None]]], list[str]]:
    """Groups of (id, weight, (embedding name, vector index) or None), one per segment or embedding, and notes."""
    groups, notes = [], []
    for segment, weight in token_weights(escape_important(text)):
        parts = EMBEDDING_SPLIT.split(unescape_important(segment))
        words = [parts[0]] + [EMBEDDING + part for part in parts[1:]]
        for word in (word for word in words if word != ""):
            if word.startswith(EMBEDDING):
                name = word[len(EMBEDDING) :].strip("\n")
                found, leftover = try_get_embedding(name, vocabulary)
                if found is None:
                    notes.append(f"embedding:{name.split()[0]} not found: ComfyUI leaves it out")
                else:
                    vectors = vocabulary.embeddings[found]
                    groups.append([(vocabulary.end_id, weight, (found, k)) for k in range(vectors)])
                if leftover == "":
                    continue
                word = leftover
            groups.append([(token, weight, None) for token in vocabulary.tokenize(word)])
    return groups, notes


def chunk_groups(groups, vocabulary: Vocabulary) -> list[Chunk]:
    """`tokenize_with_weights`' batching: a group that does not fit closes the chunk (end, padding) and moves whole,
    unless it has 8 or more tokens, which fill the chunk and go on in the next."""
    chunks = []
    batch: list[tuple[int, float, tuple | None]] = []

    def close() -> None:
        tokens = [token for token, _, _ in batch]
        weights = [weight for _, weight, _ in batch]
        embeddings = [(i, held[0], held[1]) for i, (_, _, held) in enumerate(batch) if held is not None]
        chunks.append(frame(tokens, weights, embeddings, vocabulary, pad_from_first_end=False))

    for group in groups:
        large = len(group) >= MAX_WORD_LENGTH
        while group:
            if len(group) + len(batch) > CHUNK_TOKENS:
                remaining = CHUNK_TOKENS - len(batch)
                if large:
                    batch += group[:remaining]
                    group = group[remaining:]
                close()
                batch = []
            else:
                batch += group
                group = []
    close()
    return chunks


def parse(text: str, vocabulary: Vocabulary) -> ParsedPrompt:
    groups, notes = token_groups(text, vocabulary)
    chunks = chunk_groups(groups, vocabulary)
    return ParsedPrompt(tuple(chunks), "comfyui", tuple(notes), None, sum(chunk.real for chunk in chunks))
