"""Prompt reading: AUTOMATIC1111's and ComfyUI's rules, checked against their published examples and definitions."""

import dataclasses
import math
import re

import pytest

from clipskip.embedded import build_tokenizer
from clipskip.prompts import CHUNK_TOKENS, MAX_CHUNKS, SYNTAXES, Vocabulary, parse, token_count
from clipskip.prompts.a1111 import find_scheduling, lora_tags, parse_prompt_attention
from clipskip.prompts.comfyui import token_weights
from tests import tiny_models

START, END, COMMA = 1, 2, 3


class WordVocabulary:
    """One id per word (and per comma): chunk boundaries can be written down by counting words."""

    def __init__(self):
        self.ids = {}

    def tokenize(self, text: str) -> list[int]:
        special = {",": COMMA, "<eot>": END}  # a CLIP tokenizer reads a typed <|endoftext|> as the end token
        return [special.get(word) or self.ids.setdefault(word, 10 + len(self.ids)) for word in self.words(text)]

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[^\s,]+|,", text.lower())


def word_vocabulary(pad_id: int = END, **embeddings) -> Vocabulary:
    words = WordVocabulary()
    return Vocabulary(words.tokenize, START, END, pad_id, COMMA, embeddings, lambda ids: f"{len(ids)} ids")


def numbered(count: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + count))


def pieces(text: str) -> list[tuple[str, float]]:
    return [(piece, weight) for piece, weight in parse_prompt_attention(text)]


# --- AUTOMATIC1111: parse_prompt_attention ---


def test_a1111_published_examples():
    assert pieces("normal text") == [("normal text", 1.0)]
    assert pieces("an (important) word") == [("an ", 1.0), ("important", 1.1), (" word", 1.0)]
    assert pieces("(unbalanced") == [("unbalanced", 1.1)]
    assert pieces("\\(literal\\]") == [("(literal]", 1.0)]
    assert pieces("(unnecessary)(parens)") == [("unnecessaryparens", 1.1)]
    assert pieces("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ("a ", 1.0),
        ("house", 1.5730000000000004),  # AUTOMATIC1111's doctest, to the last bit: 1.3 x 1.1 x 1.1 in that order
        (" ", 1.1),
        ("on", 1.0),
        (" a ", 1.1),
        ("hill", 0.55),
        (", sun, ", 1.1),
        ("sky", 1.4641000000000006),
        (".", 1.1),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("", 1.0)]),
        ("a\\\\b", [("a\\b", 1.0)]),  # \\ is one backslash
        ("a\\b", [("ab", 1.0)]),  # a lone backslash is dropped (the regex's last escape alternative keeps nothing)
        ("a\\[b\\)", [("a[b)", 1.0)]),
        ("a) b]", [("a) b]", 1.0)]),  # closers without an opener are text
        ("[a", [("a", 1 / 1.1)]),  # an opener left open weights to the end
        ("(a [b", [("a ", 1.1), ("b", 1.1 / 1.1)]),
        ("((a:2))", [("a", 2 * 1.1)]),
        ("(a:1.2:3)", [("a:1.2", 3.0)]),  # only ':number)' weights; the first colon is text
        ("(a: 1.5 )", [("a", 1.5)]),  # whitespace around the number, as the current regex allows
        ("(a:b)", [("a:b", 1.1)]),
        ("a:1.5)", [("a:1.5)", 1.0)]),  # a weight without an open '(' is text
        ("(a:-1)", [("a", -1.0)]),
    ],
)
def test_a1111_attention_edge_cases(text, expected):
    assert pieces(text) == expected


def test_a1111_weight_that_is_not_a_number_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^the weight '1\.2\.3' in '\(…:1\.2\.3\)' is not a number$"):
        parse_prompt_attention("(a:1.2.3)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BREAK a", [("", 1.0), ("BREAK", -1.0), ("a", 1.0)]),
        ("a BREAK", [("a", 1.0), ("BREAK", -1.0), ("", 1.0)]),
        ("a BREAK BREAK b", [("a", 1.0), ("BREAK", -1.0), ("", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
        ("a  BREAK\n b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),  # the whitespace around it goes too
        ("(a BREAK b)", [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]),  # weighted: no longer a marker
        ("a BREAKfast, Break, xBREAK", [("a BREAKfast, Break, xBREAK", 1.0)]),  # only the whole upper-case word
    ],
)
def test_a1111_break_markers(text, expected):
    assert pieces(text) == expected


def test_a1111_deep_nesting_is_refused_rather_than_taking_quadratic_time():
    with pytest.raises(ValueError, match=r"^brackets nested deeper than 100 around 'a'; unnest them$"):
        parse_prompt_attention("(" * 50_000 + "a" + ")" * 50_000)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("(" * 50_000 + ")" * 50_000, 0),
        ("[" * 50_000 + "]" * 50_000, 0),
        (")]" * 50_000, 1),  # closers without openers: one word of text
        ("(a:" * 33_333, ValueError),  # nested 33,333 deep
    ],
)
def test_a1111_long_bracket_texts_complete(text, tokens):
    if tokens is ValueError:
        with pytest.raises(ValueError, match="nested deeper than 100"):
            parse(text, "a1111", word_vocabulary())
        return
    result = parse(text, "a1111", word_vocabulary())
    assert result.tokens == tokens and len(result.chunks) == 1


def test_a1111_long_colon_run_keeps_every_colon_as_text():
    result = parse(":" * 100_000, "a1111", word_vocabulary())
    assert result.tokens == 1  # one word of 100,000 colons
    assert result.chunks[0].weights[1] == 1.0


def test_a1111_long_whitespace_does_not_hang_break_or_trailing_weight_search():
    text = "a" + " " * 100_000 + "b:" + " " * 50_000 + "c"
    assert parse(text, "a1111", word_vocabulary()).tokens == 3


# --- AUTOMATIC1111: chunks ---


def test_a1111_150_words_without_commas_make_two_full_chunks():
    vocabulary = word_vocabulary()
    result = parse(numbered(150), "a1111", vocabulary)
    assert [chunk.real for chunk in result.chunks] == [75, 75]
    assert all(chunk.ids[0] == START and chunk.ids[76] == END for chunk in result.chunks)
    assert result.chunks[1].ids[1] == vocabulary.tokenize("w75")[0]
    assert token_count(numbered(150), "a1111", vocabulary) == (150, 150)


@pytest.mark.parametrize(
    ("comma_after", "first_chunk"),
    [
        (60, 61),  # comma is the chunk's 61st token (index 60 >= 75 - 20): the 14 words after it move
        (55, 56),  # index 55: exactly 20 from the end, still inside the backtrack window
        (54, 75),  # index 54: 21 from the end, outside: no backtrack
        (74, 75),  # the comma is the chunk's last token: the next word starts chunk 2 anyway
    ],
)
def test_a1111_comma_backtrack_window(comma_after, first_chunk):
    text = numbered(comma_after) + " , " + numbered(150, start=comma_after)
    vocabulary = word_vocabulary()
    chunks = parse(text, "a1111", vocabulary).chunks
    assert chunks[0].real == first_chunk
    assert chunks[0].ids[first_chunk + 1 :] == (END,) * (76 - first_chunk)
    next_word = comma_after if comma_after >= 55 else 74  # the words after the comma, or the 76th token
    assert chunks[1].ids[1] == vocabulary.tokenize(f"w{next_word}")[0]


def test_a1111_no_backtrack_when_the_token_that_overflows_is_a_comma():
    # the chunk is full and the next token is a comma: the chunk closes full although a comma (index 65) sits
    # within the last 20 tokens; the second comma opens the next chunk
    text = numbered(65) + " , " + numbered(9, 65) + " , " + numbered(80, 74)
    chunks = parse(text, "a1111", word_vocabulary()).chunks
    assert chunks[0].real == 75 and chunks[1].ids[1] == COMMA
    text = numbered(75) + " , " + numbered(90, 75)
    chunks = parse(text, "a1111", word_vocabulary()).chunks
    assert [chunk.real for chunk in chunks] == [75, 75, 16]
    assert chunks[1].ids[1] == COMMA


def test_a1111_break_closes_chunks_and_counts_a_full_chunk():
    vocabulary = word_vocabulary()
    assert [c.real for c in parse("a BREAK b", "a1111", vocabulary).chunks] == [1, 1]
    assert [c.real for c in parse("BREAK a", "a1111", vocabulary).chunks] == [0, 1]  # an empty first chunk
    assert [c.real for c in parse("a BREAK", "a1111", vocabulary).chunks] == [1]  # nothing after: no chunk
    assert [c.real for c in parse("a BREAK BREAK b", "a1111", vocabulary).chunks] == [1, 0, 1]
    assert token_count("a BREAK b", "a1111", vocabulary) == (76, 150)
    inside = parse("(a BREAK b)", "a1111", vocabulary).chunks
    assert len(inside) == 1 and inside[0].weights[1:4] == (1.1, -1.1, 1.1)  # "break" is a word there


def test_a_prompt_of_more_than_sixteen_chunks_is_refused_naming_it():
    """A 2,000-character prompt of BREAKs made 333 chunks: one request took 17 GB. 16 chunks is 1,200 tokens."""
    vocabulary = word_vocabulary()
    assert len(parse(" BREAK ".join(["a"] * MAX_CHUNKS), "a1111", vocabulary).chunks) == MAX_CHUNKS == 16
    with pytest.raises(ValueError, match=r"^the prompt makes 17 chunks of 75 tokens \(each BREAK starts one\); at "
                       r"most 16 \(1,200 tokens\): shorten it or use fewer BREAKs$"):  # fmt: skip
        parse(" BREAK ".join(["a"] * 17), "a1111", vocabulary)
    with pytest.raises(ValueError, match="^the negative prompt makes 333 chunks"):
        parse(("BREAK " * 333).strip(), "a1111-no-norm", vocabulary, negative=True)
    assert len(parse(numbered(75 * 16), "comfyui", vocabulary).chunks) == 16
    with pytest.raises(ValueError, match=r"^the prompt makes 17 chunks of 75 tokens; at most 16 \(1,200 tokens\): "
                       r"shorten it$"):  # fmt: skip
        parse(numbered(75 * 16 + 1), "comfyui", vocabulary)
    with pytest.raises(ValueError, match="makes 17 chunks"):  # the count under the prompt box says it as typed
        token_count(" BREAK ".join(["a"] * 17), "a1111", vocabulary)
    assert len(parse(numbered(5000), "plain", vocabulary).chunks) == 1  # plain cuts past its one window


def test_a1111_empty_prompt_is_one_chunk_of_end_tokens():
    (chunk,) = parse("", "a1111", word_vocabulary()).chunks
    assert chunk.ids == (START,) + (END,) * 76 and chunk.weights == (1.0,) * 77 and chunk.real == 0
    assert token_count("", "a1111", word_vocabulary()) == (0, 75)


def test_a1111_sd2_pads_after_the_first_end_token():
    (chunk,) = parse("a b", "a1111", word_vocabulary(pad_id=0)).chunks
    assert chunk.ids[:4] == (START, 10, 11, END) and chunk.ids[4:] == (0,) * 73


def test_pad_rules_differ_when_the_text_itself_holds_an_end_token():
    vocabulary = word_vocabulary(pad_id=0)
    # AUTOMATIC1111 pads everything after the chunk's first end token, even the words after a typed one
    (chunk,) = parse("a <eot> b", "a1111", vocabulary).chunks
    assert chunk.ids == (START, 10, END) + (0,) * 74
    # ComfyUI pads only after the end token it appends
    (chunk,) = parse("a <eot> b", "comfyui", vocabulary).chunks
    assert chunk.ids == (START, 10, END, 11, END) + (0,) * 72


def test_a1111_sd2_padding_skips_embedding_placeholders():
    vocabulary = word_vocabulary(pad_id=0, style=2)
    a, b = vocabulary.tokenize("a b")
    (chunk,) = parse("a style b", "a1111", vocabulary).chunks
    assert chunk.ids == (START, a, END, END, b, END) + (0,) * 71


def test_a1111_weights_follow_tokens_and_merge_into_pieces():
    vocabulary = word_vocabulary()
    (chunk,) = parse("a (b c:1.5) [d]", "a1111", vocabulary).chunks
    assert chunk.weights[:6] == (1.0, 1.0, 1.5, 1.5, 1 / 1.1, 1.0)


def test_a1111_token_count_pairs():
    vocabulary = word_vocabulary()
    assert token_count(numbered(23), "a1111", vocabulary) == (23, 75)
    assert token_count(numbered(98), "a1111", vocabulary) == (98, 150)
    assert token_count(numbered(75), "a1111", vocabulary) == (75, 75)
    assert token_count(numbered(76), "a1111", vocabulary) == (76, 150)


# --- AUTOMATIC1111: textual inversion ---


def test_a1111_embedding_is_found_by_its_tokens_longest_name_first():
    vocabulary = word_vocabulary(**{"bad hands": 2, "bad": 1})
    (chunk,) = parse("x bad hands y bad", "a1111", vocabulary).chunks
    assert chunk.embeddings == ((2, "bad hands", 0), (3, "bad hands", 1), (5, "bad", 0))
    assert chunk.ids[2:4] == (END, END) and chunk.real == 5  # placeholders; the vectors replace them


def test_a1111_embedding_is_never_split_across_chunks():
    vocabulary = word_vocabulary(style=4)
    chunks = parse(numbered(73) + " style after", "a1111", vocabulary).chunks
    assert chunks[0].real == 73 and chunks[0].embeddings == ()
    assert chunks[1].embeddings == tuple((1 + k, "style", k) for k in range(4))
    assert chunks[1].real == 5


def test_a1111_embedding_moved_by_the_comma_backtrack_moves_with_its_vectors():
    vocabulary = word_vocabulary(style=2)
    chunks = parse(numbered(60) + " , w60 style " + numbered(20, 61), "a1111", vocabulary).chunks
    assert chunks[0].real == 61 and chunks[0].embeddings == ()
    assert chunks[1].embeddings == ((2, "style", 0), (3, "style", 1))


def test_a1111_embedding_vector_counts_are_checked():
    with pytest.raises(ValueError, match="has 80 vectors; a chunk holds 1 to 75"):
        parse("huge", "a1111", word_vocabulary(huge=80))


# --- AUTOMATIC1111: extra networks, comments, editing, composable diffusion ---


def test_a1111_extra_networks_are_removed_with_a_note_each_but_lora_tags_which_compare_applies():
    result = parse("a <lora:detail:0.6> cat <lyco:x:1> <hypernet:h:1> <foo:bar>", "a1111", word_vocabulary())
    assert result.tokens == 2
    assert result.notes == (
        "removed <hypernet:h:1>: hypernetworks are not applied yet",
        "removed <foo:bar>: AUTOMATIC1111 reads <foo:…> as an extra network, not as words",
    )
    negative = parse("a <lora:detail:0.6> cat", "a1111", word_vocabulary(), negative=True)
    assert negative.notes == (
        "removed <lora:detail:0.6>: AUTOMATIC1111 applies LoRA tags from the prompt, not the negative prompt",
    )


def test_a1111_lora_tags_are_found_outside_comments():
    assert lora_tags("a <lora:detail:0.6> cat <lyco:x> <hypernet:h:1> <lora:>\n# <lora:hidden:1>") == [
        "detail:0.6",
        "x",
    ]
    assert lora_tags("<lora:" * 33_000) == []  # no '>' anywhere: linear, nothing found


@pytest.mark.parametrize("text", ["a <b> c", "<:x>", "<lora:>", "<lo ra:x>", "a < b : c"])
def test_a1111_angle_brackets_that_are_not_extra_networks_stay(text):
    assert parse(text, "a1111", word_vocabulary()).notes == ()


def test_a1111_extra_network_scan_is_linear():
    result = parse("<a:" * 33_000 + " x", "a1111", word_vocabulary())  # no '>' anywhere
    assert result.notes == ()


def test_a1111_comments_are_removed_with_a_note():
    result = parse("a cat # not this\nb dog", "a1111", word_vocabulary())
    assert result.tokens == 4
    assert result.notes == ("removed the text after #: AUTOMATIC1111 reads # to the end of the line as a comment",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a [cat:dog:0.5] b", "prompt editing [cat:dog:0.5] is not supported yet"),
        ("[dog:10]", "prompt editing [dog:10] is not supported yet"),
        ("[cat::0.5]", "prompt editing [cat::0.5] is not supported yet"),
        ("[cat: dog : 2 ]", "prompt editing [cat: dog : 2 ] is not supported yet"),
        ("(x [a|b] y)", "alternation [a|b] is not supported yet"),
        ("[fe|]male", "alternation [fe|] is not supported yet"),
        ("[(a:2):3]", "prompt editing [(a:2):3] is not supported yet"),
    ],
)
def test_a1111_editing_and_alternation_are_refused_naming_the_construct(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse(text, "a1111", word_vocabulary())
    assert str(caught.value).endswith(
        "clipskip renders one prompt for every step; remove it or write the prompt you want"
    )
    with pytest.raises(ValueError):  # negative prompts are scheduled too
        parse(text, "a1111", word_vocabulary(), negative=True)


@pytest.mark.parametrize(
    "text",
    [
        "[word]",
        "\\[cat:dog:0.5\\]",  # escaped brackets
        "[cat:dog:x]",  # 'when' is not a number
        "[a:b:c:1]",  # three colons: no construct of the grammar
        "[(a:b:c):1]",  # an ill-formed group inside
        "a | b [cat:dog:0.5]",  # a '|' outside any alternation: the grammar fails, AUTOMATIC1111 edits nothing
        "[cat:dog:0.5] \\",  # a trailing backslash fails the grammar too
        "(a:1.2) [b] (c:d)",
    ],
)
def test_a1111_what_the_schedule_grammar_does_not_read_as_editing_is_accepted(text):
    assert find_scheduling(text) is None
    parse(text, "a1111", word_vocabulary())


def test_a1111_and_and_trailing_weights_are_refused_in_positive_prompts_only():
    with pytest.raises(ValueError, match=r"^AND \(composable diffusion\) is not supported"):
        parse("a cat AND a dog", "a1111", word_vocabulary())
    assert parse("a cat AND a dog", "a1111", word_vocabulary(), negative=True).tokens == 5
    with pytest.raises(ValueError, match=r"the ':1\.5' at the end of the prompt scales its guidance"):
        parse("a cat :1.5 ", "a1111", word_vocabulary())
    assert parse("a cat:1", "a1111", word_vocabulary()).tokens == 2  # weight 1 changes nothing: it just goes
    assert parse("a cat:1.5", "a1111", word_vocabulary(), negative=True).tokens == 2  # "cat:1.5" is one word


def test_a1111_no_norm_reads_alike_and_keeps_its_name():
    vocabulary = word_vocabulary()
    plain, no_norm = parse("a (b)", "a1111", vocabulary), parse("a (b)", "a1111-no-norm", vocabulary)
    assert no_norm.chunks == plain.chunks and no_norm.syntax == "a1111-no-norm"


# --- AUTOMATIC1111 == plain on simple prompts, with the project's real tokenizers ---

SIMPLE = [
    "",
    "a red circle on the left",
    "a small red circle on the left and a blue square on the right, on a yellow background",
    "masterpiece, best quality, highly detailed, cinematic lighting, 8k, hdr",
    " ".join(["red"] * 75),  # exactly 75 tokens
]


def tokenizers():
    yield "embedded", build_tokenizer()
    for family in ("sd1", "sd2", "sdxl"):
        pipe = getattr(tiny_models, family)()
        yield family, pipe.tokenizer
        if family == "sdxl":
            yield "sdxl-2", pipe.tokenizer_2
    openclip_style = build_tokenizer()
    openclip_style.pad_token = "!"  # SD 2.x's tokenizer pads with '!' (id 0)
    yield "pad-0", openclip_style


@pytest.mark.parametrize(("name", "tokenizer"), list(tokenizers()))
def test_a1111_equals_plain_and_today_on_simple_prompts(name, tokenizer):
    vocabulary = Vocabulary.from_tokenizer(tokenizer)
    assert vocabulary.comma_id == tokenizer.get_vocab()[",</w>"]
    for text in SIMPLE:
        today = tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids
        a1111, plain = parse(text, "a1111", vocabulary), parse(text, "plain", vocabulary)
        assert list(a1111.chunks[0].ids) == today, (name, text)
        assert list(plain.chunks[0].ids) == today, (name, text)
        assert len(a1111.chunks) == 1 and a1111.chunks == plain.chunks


def test_plain_cuts_at_the_window_and_names_what_it_cut():
    tokenizer = build_tokenizer()
    vocabulary = Vocabulary.from_tokenizer(tokenizer)
    text = " ".join(["red"] * 75 + ["blue", "square"])
    result = parse(text, "plain", vocabulary)
    assert result.dropped == "blue square" and len(result.chunks) == 1
    assert set(result.chunks[0].weights) == {1.0}
    assert token_count(text, "plain", vocabulary) == (77, 75)
    assert parse("(red:2) [blue]", "plain", vocabulary).chunks[0].weights == (1.0,) * 77


def test_embedded_pipeline_tokenizer_reads_alike(pipe):
    vocabulary = Vocabulary.from_tokenizer(pipe.tokenizer)
    text = SIMPLE[2]
    assert (
        list(parse(text, "a1111", vocabulary).chunks[0].ids)
        == pipe.tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids
    )


# --- ComfyUI ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a (b) c", [("a ", 1.0), ("b", 1.1), (" c", 1.0)]),
        ("((a:1.5))", [("a", 1.5)]),  # sets: AUTOMATIC1111 would give 1.5 x 1.1
        ("(a (b:0.5) c:1.2)", [("a ", 1.2), ("b", 0.5), (" c", 1.2)]),
        ("((a))", [("a", 1.1 * 1.1)]),
        ("(a:1.2:3)", [("a:1.2", 3.0)]),  # the last colon
        ("(a:b)", [("a:b", 1.1)]),
        ("[a]", [("[a]", 1.0)]),  # no square-bracket weighting
        ("\0\2a\0\1", [("\0\2a\0\1", 1.0)]),  # escaped parens (after escape_important) are text
        ("(a", [("(a", 1.0)]),  # unclosed and not ending in ')': text
        ("((a)", [("(a", 1.1)]),  # unclosed but ending in ')': ComfyUI's rule strips both ends
        ("((b:1.5)", [("(b", 1.5)]),
        ("a) (b) c", [("a) (b) c", 1.0)]),  # a stray ')' makes the next '(' text
        ("(a:1e400)", [("a", math.inf)]),
    ],
)
def test_comfyui_token_weights(text, expected):
    assert token_weights(text) == expected


def test_comfyui_deep_nesting_completes_linearly():
    assert token_weights("(" * 50_000 + "a" + ")" * 50_000) == [("a", math.inf)]  # 1.1 ** 50000
    assert token_weights("(a:" * 33_000) == [("(a:" * 33_000, 1.0)]
    result = parse("(" * 50_000 + "a:2" + ")" * 50_000, "comfyui", word_vocabulary())
    assert result.chunks[0].weights[1] == 2.0


def test_comfyui_escapes_and_weights_in_chunks():
    vocabulary = word_vocabulary()
    (chunk,) = parse("\\(a\\) (b:0.5) [c]", "comfyui", vocabulary).chunks
    assert chunk.real == 3
    assert chunk.weights[1:4] == (1.0, 0.5, 1.0)
    assert chunk.ids[1] == vocabulary.tokenize("(a)")[0]


def test_comfyui_break_is_a_word():
    assert parse("a BREAK b", "comfyui", word_vocabulary()).chunks[0].real == 3


def test_comfyui_a_short_segment_that_does_not_fit_moves_whole():
    text = numbered(70) + " (" + numbered(7, 70) + ":1.2)"  # 70 + 7 > 75, and 7 < 8: all 7 move
    chunks = parse(text, "comfyui", word_vocabulary(pad_id=0)).chunks
    assert [chunk.real for chunk in chunks] == [70, 7]
    assert chunks[0].ids[71] == END and chunks[0].ids[72:] == (0,) * 5  # ComfyUI pads with 0 where pad_id is 0
    assert chunks[1].weights[1:8] == (1.2,) * 7


def test_comfyui_a_long_segment_is_split_at_the_chunk_end():
    text = numbered(70) + " (" + numbered(8, 70) + ":1.2)"  # 8 tokens: large, split 5 + 3
    chunks = parse(text, "comfyui", word_vocabulary()).chunks
    assert [chunk.real for chunk in chunks] == [75, 3]
    assert chunks[0].weights[71:76] == (1.2,) * 5
    assert token_count(text, "comfyui", word_vocabulary()) == (78, 150)


def test_comfyui_unweighted_text_is_one_segment_split_at_75():
    chunks = parse(numbered(150) + " , x", "comfyui", word_vocabulary()).chunks  # no comma backtrack either
    assert [chunk.real for chunk in chunks] == [75, 75, 2]


def test_comfyui_embeddings():
    vocabulary = word_vocabulary(style=2, big=9)
    (chunk,) = parse("a embedding:style b", "comfyui", vocabulary).chunks
    assert chunk.embeddings == ((2, "style", 0), (3, "style", 1)) and chunk.real == 4
    assert parse("a embedding:style.pt", "comfyui", vocabulary).chunks[0].embeddings[0] == (2, "style", 0)
    (chunk,) = parse("(embedding:style, b:1.3)", "comfyui", vocabulary).chunks  # trailing comma stripped
    assert chunk.embeddings[0] == (1, "style", 0) and chunk.weights[1:5] == (1.3,) * 4
    result = parse("a embedding:missing b", "comfyui", vocabulary)
    assert result.chunks[0].real == 2 and result.notes == ("embedding:missing not found: ComfyUI leaves it out",)
    chunks = parse(numbered(70) + " embedding:big", "comfyui", vocabulary).chunks  # 9 vectors: split like words
    assert [chunk.real for chunk in chunks] == [75, 4]
    assert chunks[1].embeddings[0] == (1, "big", 5)
    assert parse("a,embedding:style", "comfyui", vocabulary).chunks[0].embeddings == ()  # needs a space before


def test_comfyui_embedding_without_a_name_is_refused():
    with pytest.raises(ValueError, match=r"^'embedding:' without a name"):
        parse("a embedding:", "comfyui", word_vocabulary())


# --- every syntax ---


def test_unknown_syntax_is_refused():
    with pytest.raises(ValueError, match="unknown prompt syntax 'compel'; choose one of a1111, a1111-no-norm"):
        parse("a", "compel", word_vocabulary())


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_every_chunk_is_77_ids_and_weights(syntax):
    vocabulary = dataclasses.replace(word_vocabulary(), embeddings={"style": 3})
    text = numbered(100) + " (x:1.3) style" if syntax.startswith("a1111") else numbered(100) + " (x:1.3)"
    for chunk in parse(text, syntax, vocabulary).chunks:
        assert len(chunk.ids) == len(chunk.weights) == 2 + CHUNK_TOKENS
        assert chunk.weights[0] == chunk.weights[chunk.real + 1] == 1.0
