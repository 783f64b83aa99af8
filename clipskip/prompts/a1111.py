"""AUTOMATIC1111's prompt reading (`modules/prompt_parser.py`, `modules/sd_hijack_clip.py`), written out linearly.

The steps, in AUTOMATIC1111's order: `#` comments out, extra networks (`<lora:name:w>`) out (`comparison.compare`
applies LoRA tags), AND and a trailing `:weight` (composable diffusion) refused, prompt editing and alternation
refused, `parse_prompt_attention` into (text, weight) pieces, each piece tokenized on its own, chunks of 75 with the
comma backtrack and whole embeddings.
"""

import re

from . import CHUNK_TOKENS, Chunk, ParsedPrompt, Vocabulary, frame

COMMA_BACKTRACK = 20  # AUTOMATIC1111's "comma padding backtrack" setting, default 20
MAX_NESTING = 100  # brackets open around one piece of text; AUTOMATIC1111's weight there is 1.1 ** 100 already
ROUND, SQUARE = 1.1, 1 / 1.1
BREAK = "BREAK"
SHOWN = 60  # characters of a construct quoted in a message

NUMBER = re.compile(r"[+-]?[.\d]+")  # the weight in (text:w), as AUTOMATIC1111's regex reads it
# lark's SIGNED_NUMBER, which prompt editing's "when" must be (optionally surrounded by whitespace)
WHEN = re.compile(r"\s*[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+)\s*")
EXTRA_NETWORK_NAME = re.compile(r"\w+:")
LORA_KINDS = ("lora", "lyco")  # AUTOMATIC1111 reads <lyco:…> as <lora:…>
TRAILING_WEIGHT = re.compile(r"\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+))\s*")


def quoted(text: str) -> str:
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


# 1. Comments: AUTOMATIC1111 >= 1.8 (setting "Enable comments", on by default) drops `#` to the end of the line.
def strip_comments(text: str) -> tuple[str, list[str]]:
    if "#" not in text:
        return text, []
    # both of AUTOMATIC1111's substitutions are single passes of a greedy [^\n]*, so linear
    text = re.sub(r"(^|\n)#[^\n]*(\n|$)", "\n", text)
    text = re.sub(r"#[^\n]*(\n|$)", "\n", text)
    return text, ["removed the text after #: AUTOMATIC1111 reads # to the end of the line as a comment"]


# 2. Extra networks: `<name:args>` (re `<(\w+):([^>]+)>`) is cut out of the text, whatever the name.
def extra_networks(text: str) -> list[tuple[int, int, str]]:
    """Each `<kind:args>` tag's (start, end, kind), in order; one linear scan."""
    found = []
    search = 0
    next_close = -1  # the first '>' at or after some index, found once per stretch (keeps this linear)
    while (start := text.find("<", search)) != -1:
        name = EXTRA_NETWORK_NAME.match(text, start + 1)  # \w+ stops at the first non-word character: linear
        if name is None:
            search = start + 1
            continue
        colon = name.end() - 1
        if next_close <= colon:
            next_close = text.find(">", colon + 1)
            if next_close == -1:
                break  # no '>' after here: no tag can close
        if next_close == colon + 1:  # [^>]+ needs at least one character
            search = start + 1
            continue
        found.append((start, next_close + 1, text[start + 1 : colon]))
        search = next_close + 1
    return found


def remove_extra_networks(text: str, negative: bool = False) -> tuple[str, list[str]]:
    """The text without its tags, and a note for each tag that is not applied: every one but a positive prompt's
    LoRA tags, which `comparison.compare` applies (`lora_tags`)."""
    kept, notes = [], []
    position = 0  # where the text not yet copied begins
    for start, end, kind in extra_networks(text):
        kept.append(text[position:start])
        if negative or kind not in LORA_KINDS:
            notes.append(extra_network_note(kind, text[start:end]))
        position = end
    kept.append(text[position:])
    return "".join(kept), notes


def lora_tags(text: str) -> list[str]:
    """The `args` of each `<lora:args>` (or `<lyco:args>`) tag outside `#` comments, in order, as AUTOMATIC1111's
    `extra_networks.parse_prompt` finds them."""
    text, _ = strip_comments(text)
    return [text[start + len(kind) + 2 : end - 1] for start, end, kind in extra_networks(text) if kind in LORA_KINDS]


def extra_network_note(kind: str, tag: str) -> str:
    if kind in LORA_KINDS:  # only in a negative prompt
        return f"removed {quoted(tag)}: AUTOMATIC1111 applies LoRA tags from the prompt, not the negative prompt"
    if kind == "hypernet":
        return f"removed {quoted(tag)}: hypernetworks are not applied yet"
    return f"removed {quoted(tag)}: AUTOMATIC1111 reads <{kind}:…> as an extra network, not as words"


# 3. Composable diffusion: a positive prompt is split at AND, and each part may end in ":weight".
def check_composable(text: str) -> str:
    """The text AUTOMATIC1111 encodes (trailing whitespace dropped), or ValueError for what changes guidance."""
    if re.search(r"\bAND\b", text):
        raise ValueError(
            "AND (composable diffusion) is not supported: it mixes several prompts' guidance; "
            "write one prompt, or lowercase 'and'"
        )
    body = text.rstrip()  # AUTOMATIC1111's lazy match leaves trailing whitespace out of the text
    colon = body.rfind(":")
    if colon != -1 and (match := TRAILING_WEIGHT.fullmatch(body, colon)) is not None:
        weight = match.group(1)
        body = body[:colon].rstrip()
        if float(weight) != 1.0:
            raise ValueError(
                f"the ':{weight}' at the end of the prompt scales its guidance in AUTOMATIC1111 "
                "(composable diffusion), which clipskip does not do; remove it or put it in brackets"
            )
    return body


# 4. Prompt editing and alternation, as AUTOMATIC1111's lark grammar finds them (see `find_scheduling`).
class _Group:
    __slots__ = ("open", "kind", "colons", "pipes", "last_colon", "valid", "child_after_colon")

    def __init__(self, open_at: int, kind: str):
        self.open, self.kind = open_at, kind
        self.colons = self.pipes = 0
        self.last_colon = -1
        self.valid = True
        self.child_after_colon = False


def find_scheduling(text: str) -> tuple[str, str] | None:
    """The first prompt-editing or alternation construct of AUTOMATIC1111's schedule grammar, as (kind, text).

    The grammar: top level, any bracket or ':' may stand alone; inside a bracket everything is well formed:
    `(p)`, `(p:p)`, `[p]`, `[p:when]`, `[p:p:when]`, `[p|p|…]`, where `when` is a number. A `|` outside a valid
    alternation, or a backslash before a line end or at the very end, makes the grammar fail, and then
    AUTOMATIC1111 uses the text as it is (no editing at all). One scan, one explicit stack.

    This finds every construct some parse of the grammar contains. lark's Earley parser, choosing among ambiguous
    parses, sometimes reads a construct directly followed by a lone bracket or ':' (`[a:1]]`) as plain text; those
    are refused here too (fuzzed against lark 1.1.5: no construct it reads was missed; about 2% of random bracket
    soups were refused that it would read as text)."""
    stack: list[_Group] = []
    found: list[tuple[int, int, str]] = []
    stray_pipe = False
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            if i + 1 >= n or text[i + 1] == "\n":
                return None  # the grammar's plain text needs `\\.`: no parse, no editing
            i += 2
            continue
        if char in "([":
            stack.append(_Group(i, char))
        elif char in ")]":
            if not stack or stack[-1].kind != ("(" if char == ")" else "["):
                stray_pipe = stray_pipe or any(group.pipes for group in stack)
                stack.clear()  # a mismatched close: no open group can be well formed any more
            else:
                group = stack.pop()
                kind = close_group(group, text, i)
                if kind is not None:
                    found.append((group.open, i, kind))
                if not group.valid:
                    stray_pipe = stray_pipe or group.pipes > 0
                if stack:
                    parent = stack[-1]
                    parent.valid = parent.valid and group.valid
                    parent.child_after_colon = parent.child_after_colon or parent.colons > 0
        elif char == ":":
            if stack:
                group = stack[-1]
                group.colons += 1
                group.last_colon = i
                group.child_after_colon = False
        elif char == "|":
            if stack:
                stack[-1].pipes += 1
            else:
                stray_pipe = True
        i += 1
    if stray_pipe or any(group.pipes for group in stack):
        return None  # a '|' outside every valid alternation: no parse
    if not found:
        return None
    start, end, kind = min(found)
    return kind, text[start : end + 1]


def close_group(group: _Group, text: str, close: int) -> str | None:
    """Decide whether a closed group is well formed; return "editing"/"alternation" when it is one."""
    if group.kind == "(":
        group.valid = group.valid and group.pipes == 0 and group.colons <= 1
        return None
    if group.pipes and group.colons:
        group.valid = False
    if not group.valid:
        return None
    if group.pipes:
        return "alternation"
    if group.colons == 0:
        return None
    group.valid = (
        group.colons <= 2
        and not group.child_after_colon
        and WHEN.fullmatch(text, group.last_colon + 1, close) is not None
    )
    return "editing" if group.valid else None


def refuse_scheduling(text: str) -> None:
    found = find_scheduling(text)
    if found is None:
        return
    kind, construct = found
    what = "prompt editing" if kind == "editing" else "alternation"
    raise ValueError(
        f"{what} {quoted(construct)} is not supported yet: clipskip renders one prompt for every step; "
        "remove it or write the prompt you want"
    )


# 5. Attention: (text) x1.1, [text] /1.1, (text:w) x w, escapes, BREAK.
def split_break(text: str) -> list[str]:
    """`re.split(r"\\s*\\bBREAK\\b\\s*", text)`, without the regex's quadratic backtracking over long spaces."""
    parts = []
    cut = 0  # where the current part begins
    search = 0
    while (at := text.find(BREAK, search)) != -1:
        end = at + len(BREAK)
        before_ok = at == 0 or not is_word(text[at - 1])
        after_ok = end == len(text) or not is_word(text[end])
        if not (before_ok and after_ok):
            search = at + 1
            continue
        start = at
        while start > cut and text[start - 1].isspace():
            start -= 1
        while end < len(text) and text[end].isspace():
            end += 1
        parts.append(text[cut:start])
        cut = search = end
    parts.append(text[cut:])
    return parts


def is_word(char: str) -> bool:
    return char.isalnum() or char == "_"  # Python's \w


def parse_prompt_attention(text: str) -> list[list]:
    """AUTOMATIC1111's (text, weight) pieces, BREAK as ["BREAK", -1]; its published examples:

    'an (important) word' -> [['an ', 1.0], ['important', 1.1], [' word', 1.0]]
    '(unbalanced' -> [['unbalanced', 1.1]];  '\\(literal\\]' -> [['(literal]', 1.0]]
    """
    pieces: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, multiplier: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= multiplier

    def add(piece: list) -> None:
        if len(round_open) + len(square_open) > MAX_NESTING:
            raise ValueError(f"brackets nested deeper than {MAX_NESTING} around {quoted(piece[0])!r}; unnest them")
        pieces.append(piece)

    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            following = text[i + 1 : i + 2]
            if following and following in "()[]\\":
                add([following, 1.0])
                i += 2
            else:
                add(["", 1.0])  # a lone backslash is dropped, not kept
                i += 1
        elif char == "(":
            round_open.append(len(pieces))
            i += 1
        elif char == "[":
            square_open.append(len(pieces))
            i += 1
        elif char == ":" and round_open and (weight := closing_weight(text, i)) is not None:
            number, i = weight
            try:
                multiply(round_open.pop(), float(number))
            except ValueError:
                raise ValueError(f"the weight {number!r} in '(…:{number})' is not a number") from None
        elif char == ")" and round_open:
            multiply(round_open.pop(), ROUND)
            i += 1
        elif char == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
            i += 1
        else:
            end = i + 1
            if char not in ":)]":  # plain text runs to the next special character
                while end < n and text[end] not in "\\()[]:":
                    end += 1
            for index, part in enumerate(split_break(text[i:end])):
                if index:
                    add([BREAK, -1.0])
                add([part, 1.0])
            i = end

    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    if not pieces:
        return [["", 1.0]]

    merged = [pieces[0]]
    for piece in pieces[1:]:
        if merged[-1][1] == piece[1]:
            merged[-1] = [merged[-1][0] + piece[0], merged[-1][1]]
        else:
            merged.append(piece)
    return merged


def closing_weight(text: str, colon: int) -> tuple[str, int] | None:
    """`:\\s*([+-]?[.\\d]+)\\s*\\)` at `colon`: the number and the index after the `)`, or None."""
    i = colon + 1
    while i < len(text) and text[i].isspace():
        i += 1
    number = NUMBER.match(text, i)
    if number is None:
        return None
    i = number.end()
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == ")":
        return number.group(), i + 1
    return None


# 6. Chunks of 75 tokens.
def embedding_lookup(vocabulary: Vocabulary) -> dict[int, list[tuple[list[int], str, int]]]:
    """first token id -> (name's token ids, name, vectors), longest name first, as AUTOMATIC1111's ids_lookup."""
    lookup: dict[int, list[tuple[list[int], str, int]]] = {}
    for name, vectors in vocabulary.embeddings.items():
        ids = vocabulary.tokenize(name)
        if not ids:
            raise ValueError(f"the embedding name {name!r} has no tokens")
        if not 1 <= vectors <= CHUNK_TOKENS:
            raise ValueError(f"the embedding {name!r} has {vectors} vectors; a chunk holds 1 to {CHUNK_TOKENS}")
        lookup.setdefault(ids[0], []).append((ids, name, vectors))
    for candidates in lookup.values():
        candidates.sort(key=lambda candidate: len(candidate[0]), reverse=True)
    return lookup


class _Chunker:
    """`tokenize_line`'s loop: tokens, weights and embedding fixes of the chunk being filled."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self.chunks: list[Chunk] = []
        self.tokens: list[int] = []
        self.weights: list[float] = []
        self.fixes: list[tuple[int, str, int]] = []  # (offset in the chunk, name, vectors)
        self.last_comma = -1
        self.count = 0

    def close(self, last: bool = False) -> None:
        self.count += len(self.tokens) if last else CHUNK_TOKENS
        embeddings = [(offset + k, name, k) for offset, name, vectors in self.fixes for k in range(vectors)]
        self.chunks.append(frame(self.tokens, self.weights, embeddings, self.vocabulary, pad_from_first_end=True))
        self.tokens, self.weights, self.fixes = [], [], []
        self.last_comma = -1

    def backtrack_to_comma(self) -> None:
        """Move what follows the last comma to a new chunk. AUTOMATIC1111 leaves the embedding fixes of the moved
        tokens behind (its vectors land on the old chunk's padding); here they move with their tokens."""
        cut = self.last_comma + 1
        tokens, weights = self.tokens[cut:], self.weights[cut:]
        moved = [(offset - cut, name, vectors) for offset, name, vectors in self.fixes if offset >= cut]
        self.tokens, self.weights = self.tokens[:cut], self.weights[:cut]
        self.fixes = [fix for fix in self.fixes if fix[0] < cut]
        self.close()
        self.tokens, self.weights, self.fixes = tokens, weights, moved

    def add_piece(self, tokens: list[int], weight: float, lookup) -> None:
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == self.vocabulary.comma_id:
                self.last_comma = len(self.tokens)
            elif (
                COMMA_BACKTRACK
                and len(self.tokens) == CHUNK_TOKENS
                and self.last_comma != -1
                and len(self.tokens) - self.last_comma <= COMMA_BACKTRACK
            ):
                self.backtrack_to_comma()
            if len(self.tokens) == CHUNK_TOKENS:
                self.close()
            found = match_embedding(tokens, position, lookup)
            if found is None:
                self.tokens.append(token)
                self.weights.append(weight)
                position += 1
                continue
            length, name, vectors = found
            if len(self.tokens) + vectors > CHUNK_TOKENS:
                self.close()
            self.fixes.append((len(self.tokens), name, vectors))
            self.tokens += [self.vocabulary.end_id] * vectors  # placeholders; the vectors replace them
            self.weights += [weight] * vectors
            position += length


def match_embedding(tokens: list[int], position: int, lookup) -> tuple[int, str, int] | None:
    for ids, name, vectors in lookup.get(tokens[position], ()):
        if tokens[position : position + len(ids)] == ids:
            return len(ids), name, vectors
    return None


def chunk_pieces(pieces: list[list], vocabulary: Vocabulary) -> tuple[list[Chunk], int]:
    """The chunks of `tokenize_line` and the token count AUTOMATIC1111 shows."""
    lookup = embedding_lookup(vocabulary)
    chunker = _Chunker(vocabulary)
    for text, weight in pieces:
        if text == BREAK and weight == -1:
            chunker.close()
            continue
        chunker.add_piece(vocabulary.tokenize(text), weight, lookup)
    if chunker.tokens or not chunker.chunks:
        chunker.close(last=True)
    return chunker.chunks, chunker.count


def parse(text: str, syntax: str, vocabulary: Vocabulary, negative: bool = False) -> ParsedPrompt:
    # 1. comments and extra networks out, as AUTOMATIC1111 does before anything reads the prompt
    text, notes = strip_comments(text)
    text, network_notes = remove_extra_networks(text, negative)
    notes += network_notes
    # 2. what changes the guidance or the prompt during sampling is refused
    if not negative:
        text = check_composable(text)
    refuse_scheduling(text)
    # 3. weights, then chunks
    chunks, count = chunk_pieces(parse_prompt_attention(text), vocabulary)
    return ParsedPrompt(tuple(chunks), syntax, tuple(notes), None, count)
