"""The chunked encoding, checked against a computation written here from the definition (shared prompt-syntax.md),
not from `encode_chunks`: each chunk's 77 ids built by hand (start, tokens, end, then end tokens on CLIP-L or pad id 0
after the first end token on OpenCLIP), each chunk through the encoder on its own, `hidden_states[-N]` (final norm on
SD 1.x/2.x), AUTOMATIC1111's "Original" emphasis per chunk, chunks concatenated; SDXL's pooled embedding read from the
first chunk of the second encoder by hand (first end token, final norm, projection)."""

import copy
import sys
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from clipskip.embeddings import load_embeddings
from clipskip.encoding import encode
from tests import tiny_models

CPU = torch.device("cpu")
ROUND, SQUARE = 1.1, 1 / 1.1  # ( ) and [ ]
TOLERANCE = {
    "rtol": 1e-6,
    "atol": 1e-6,
}  # float32; the library encodes a prompt's chunks as one batch, here one by one
LAYERS = {
    "sd1": tiny_models.SD1_LAYERS,
    "sd2": tiny_models.SD2_LAYERS,
    "sdxl": min(tiny_models.SDXL_LAYERS, tiny_models.SDXL_LAYERS_2),
}
FAMILIES = list(LAYERS)
LAYERS["embedded"] = 12  # the `pipe` fixture
WORDS = [
    "red",
    "fox",
    "blue",
    "sky",
    "castle",
    "snow",
    "sun",
    "house",
    "green",
    "moon",
    "forest",
    "river",
]  # 1 token each


@pytest.fixture(scope="module")
def pipes():
    """Tiny pipelines whose tokenizers pad as the real ones do: SD 2.x's OpenCLIP tokenizer and SDXL's second one
    pad with "!" (id 0), CLIP-L's with its end token."""
    built = {family: getattr(tiny_models, family)() for family in FAMILIES}
    generator = torch.Generator().manual_seed(0)
    for pipe in built.values():  # learned norms, as in real checkpoints: a freshly made one (weight 1, bias 0) gives
        for encoder, _ in encoders(pipe):  # outputs of mean ~0, and "Original" emphasis divides by that mean
            norm = getattr(pipe, encoder)
            norm = getattr(norm, "text_model", norm).final_layer_norm
            with torch.no_grad():
                norm.weight.copy_(1 + 0.2 * torch.randn(norm.weight.shape, generator=generator))
                norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=generator))
    built["sd2"].tokenizer.pad_token = "!"
    built["sdxl"].tokenizer_2.pad_token = "!"
    assert built["sd2"].tokenizer.pad_token_id == 0 and built["sdxl"].tokenizer_2.pad_token_id == 0
    assert built["sd1"].tokenizer.pad_token_id == built["sd1"].tokenizer.eos_token_id
    return built


# --- the definition, written out ---


def encoders(pipe) -> list[tuple[str, str]]:
    names = [("text_encoder", "tokenizer")]
    if getattr(pipe, "text_encoder_2", None) is not None:
        names.append(("text_encoder_2", "tokenizer_2"))
    return names


def tokens_of(tokenizer, piece) -> list[int]:
    """A piece's ids without start and end tokens; a list is ids already (a textual inversion's vectors)."""
    if isinstance(piece, list):
        return piece
    return tokenizer(piece, add_special_tokens=False).input_ids


def chunk_ids(tokenizer, pieces) -> tuple[list[int], list[float]]:
    """start + the pieces' tokens + end, padded to 77: end tokens, and the pad id after the first end token."""
    tokens, weights = [], []
    for piece, weight in pieces:
        ids = tokens_of(tokenizer, piece)
        tokens += ids
        weights += [weight] * len(ids)
    assert len(tokens) <= 75, len(tokens)
    ids = [tokenizer.bos_token_id, *tokens] + [tokenizer.eos_token_id] * (76 - len(tokens))
    first_end = 1 + len(tokens)
    ids[first_end + 1 :] = [tokenizer.pad_token_id] * (76 - first_end)
    assert len(ids) == 77
    return ids, [1.0, *weights] + [1.0] * (76 - len(tokens))


def layers(encoder, ids: list[int], skips, norm: bool):
    """hidden_states[-skip] of one chunk on its own for each skip, through the final norm when `norm`; and the
    model output."""
    output = encoder(torch.tensor([ids]), output_hidden_states=True)
    final_norm = getattr(encoder, "text_model", encoder).final_layer_norm
    return {
        skip: final_norm(output.hidden_states[-skip][0]) if norm else output.hidden_states[-skip][0] for skip in skips
    }, output


def weighted(z, weights, rule, empty):
    if rule == "original":  # AUTOMATIC1111: remember the mean, multiply, restore the mean
        mean = z.mean()
        z = z * torch.tensor(weights)[:, None]
        return z * (mean / z.mean())
    if rule == "no-norm":
        return z * torch.tensor(weights)[:, None]
    assert rule == "comfyui"  # each token of weight w != 1: empty + (z - empty) * w
    z = z.clone()
    for position, weight in enumerate(weights):
        if weight != 1.0:
            z[position] = empty[position] + (z[position] - empty[position]) * weight
    return z


@torch.no_grad()
def reference(pipe, chunks, skips, rule: str = "original", replaced: dict | None = None):
    """The conditioning (1, 77·k, dim) for each skip and SDXL's pooled embedding for `chunks`, each a list of
    (piece, weight). `replaced`: encoder name -> an encoder to use instead (one knowing a textual inversion's ids)."""
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    per_encoder, pooled = [], None
    for encoder_name, tokenizer_name in encoders(pipe):
        encoder = (replaced or {}).get(encoder_name, getattr(pipe, encoder_name))
        tokenizer = getattr(pipe, tokenizer_name)
        empty = layers(encoder, chunk_ids(tokenizer, [])[0], skips, not sdxl)[0] if rule == "comfyui" else {}
        outputs = {skip: [] for skip in skips}
        for c, pieces in enumerate(chunks):
            ids, weights = chunk_ids(tokenizer, pieces)
            z, output = layers(encoder, ids, skips, not sdxl)
            for skip in skips:
                outputs[skip].append(weighted(z[skip], weights, rule, empty.get(skip)))
            if c == 0 and encoder_name == "text_encoder_2":  # the first end token of chunk 0, normed, projected
                last = encoder.text_model.final_layer_norm(output.hidden_states[-1][0])
                pooled = encoder.text_projection(last[ids.index(tokenizer.eos_token_id)])[None]
        per_encoder.append({skip: torch.cat(outputs[skip]) for skip in skips})
    return {skip: torch.cat([z[skip] for z in per_encoder], dim=-1)[None] for skip in skips}, pooled


def ours(pipe, text, skips, syntax="a1111", embeddings=None):
    with torch.no_grad():
        return encode(pipe, text, skips, CPU, syntax=syntax, embeddings=embeddings)


def check(pipe, text, chunks, family, syntax="a1111", rule="original", embeddings=None, replaced=None):
    skips = range(1, LAYERS[family] + 1)
    encoding = ours(pipe, text, skips, syntax, embeddings)
    assert encoding.chunks == len(chunks)
    expected_by_skip, pooled = reference(pipe, chunks, skips, rule, replaced)
    for skip, expected in expected_by_skip.items():
        assert encoding.embeddings[skip].shape == expected.shape == (1, 77 * len(chunks), expected.shape[-1])
        torch.testing.assert_close(
            encoding.embeddings[skip], expected, **TOLERANCE, msg=lambda m, skip=skip: f"skip {skip}: {m}"
        )
    if family == "sdxl":
        torch.testing.assert_close(encoding.pooled, pooled, **TOLERANCE)
    else:
        assert encoding.pooled is None
    return encoding


# --- 1. no syntax used: a1111 is plain, bit for bit ---

SIMPLE = ["", "a red fox in the snow", "blurry, lowres, bad anatomy", " ".join(WORDS[i % 12] for i in range(75))]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("text", SIMPLE, ids=["empty", "short", "commas", "75-tokens"])
def test_a1111_is_plain_bit_for_bit_without_weights_break_or_overflow(pipes, family, text):
    pipe = pipes[family]
    skips = range(1, LAYERS[family] + 1)
    plain, a1111 = ours(pipe, text, skips, "plain"), ours(pipe, text, skips, "a1111")
    assert a1111.chunks == plain.chunks == 1
    for skip in skips:
        assert torch.equal(a1111.embeddings[skip], plain.embeddings[skip]), skip
    assert (a1111.pooled is None) == (family != "sdxl")
    if family == "sdxl":
        assert torch.equal(a1111.pooled, plain.pooled)
    check(pipe, text, [[(text, 1.0)]], family)


def test_a1111_is_plain_on_the_embedded_model(pipe):
    for text in SIMPLE:
        plain, a1111 = ours(pipe, text, range(1, 13), "plain"), ours(pipe, text, range(1, 13), "a1111")
        assert all(torch.equal(a1111.embeddings[k], plain.embeddings[k]) for k in range(1, 13)), text
        check(pipe, text, [[(text, 1.0)]], "embedded")


# --- 2. weights: emphasis, nesting, de-emphasis ---

WEIGHTED = {
    "a (red:1.3) fox, [blurry]": [("a ", 1.0), ("red", 1.3), (" fox, ", 1.0), ("blurry", SQUARE)],
    "a ((fox:1.3)) [[snow]] (sky) (castle:0.5)": [
        ("a ", 1.0),
        ("fox", 1.0 * 1.3 * ROUND),
        ("snow", 1.0 * SQUARE * SQUARE),
        ("sky", ROUND),
        ("castle", 0.5),
    ],
    "[a blue sky], [[moon]]": [("a blue sky", SQUARE), (", ", 1.0), ("moon", SQUARE * SQUARE)],
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("text", list(WEIGHTED))
def test_weights_are_automatic1111s_original_emphasis(pipes, family, text):
    encoding = check(pipes[family], text, [WEIGHTED[text]], family)
    unweighted = "".join(piece for piece, _ in WEIGHTED[text])
    assert not torch.allclose(encoding.embeddings[1], ours(pipes[family], unweighted, [1]).embeddings[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_no_norm_multiplies_without_rescaling(pipes, family):
    text = "a (red:1.3) fox, [blurry]"
    check(pipes[family], text, [WEIGHTED[text]], family, syntax="a1111-no-norm", rule="no-norm")
    with_norm, without = ours(pipes[family], text, [2], "a1111"), ours(pipes[family], text, [2], "a1111-no-norm")
    assert not torch.allclose(with_norm.embeddings[2], without.embeddings[2])


# --- 3. long prompts: chunks of 75, the comma backtrack ---


def long_prompt(comma_at: int, total: int) -> tuple[str, list[tuple[str, float]]]:
    """`total` one-token words (a comma at index `comma_at`), the 11th weighted 1.2 and the 101st [de-emphasised]:
    the text and its tokens as (word, weight)."""
    tokens = [("," if i == comma_at else WORDS[i % len(WORDS)], 1.0) for i in range(total)]
    tokens[10], tokens[100] = (tokens[10][0], 1.2), (tokens[100][0], SQUARE)
    shown = {1.2: "({}:1.2)", SQUARE: "[{}]", 1.0: "{}"}
    return " ".join(shown[weight].format(word) for word, weight in tokens), tokens


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("comma_at", "boundary"),
    [(70, 71), (55, 56), (54, 75), (30, 75)],
    ids=["backtrack-5", "backtrack-20", "no-backtrack-21", "no-backtrack-45"],
)
def test_a_long_prompt_is_chunked_where_automatic1111_cuts_it(pipes, family, comma_at, boundary):
    """The 76th token is not a comma; a comma among the full chunk's last 20 tokens moves what follows it to the
    next chunk: the first chunk ends after the comma (71 tokens for a comma at 70). A comma further back: 75."""
    text, tokens = long_prompt(comma_at, boundary + 70)
    for word, _ in tokens:
        assert len(tokens_of(pipes[family].tokenizer, word)) == 1, word
    chunks = [tokens[:boundary], tokens[boundary:]]
    encoding = check(pipes[family], text, chunks, family)
    assert encoding.embeddings[1].shape[:2] == (1, 154)
    assert encoding.real == (*range(1, boundary + 2), *range(78, 78 + len(tokens) - boundary + 1))


@pytest.mark.parametrize("family", FAMILIES)
def test_break_closes_the_chunk(pipes, family):
    encoding = check(
        pipes[family], "a red fox BREAK a blue sky", [[("a red fox", 1.0)], [("a blue sky", 1.0)]], family
    )
    assert encoding.embeddings[1].shape[:2] == (1, 154)
    assert encoding.real == (1, 2, 3, 4, 78, 79, 80, 81)


# --- 6. ComfyUI: along the line from the empty prompt ---


@pytest.mark.parametrize("family", FAMILIES)
def test_comfyui_weights_move_a_token_along_the_line_from_the_empty_prompt(pipes, family):
    pipe = pipes[family]
    text = "a (red:1.3) fox ((blue)) sky"
    pieces = [("a ", 1.0), ("red", 1.3), (" fox ", 1.0), ("blue", 1.1 * 1.1), (" sky", 1.0)]
    weighted_, plain = (
        check(pipe, text, [pieces], family, "comfyui", "comfyui"),
        ours(pipe, "a red fox blue sky", range(1, LAYERS[family] + 1), "comfyui"),
    )
    empty = ours(pipe, "", range(1, LAYERS[family] + 1), "comfyui")
    for skip in range(1, LAYERS[family] + 1):
        z_w, z_1, e = weighted_.embeddings[skip][0], plain.embeddings[skip][0], empty.embeddings[skip][0]
        for position, weight in ((2, 1.3), (4, 1.1 * 1.1)):  # start, a, red, fox, blue
            torch.testing.assert_close(
                z_w[position] - e[position], weight * (z_1[position] - e[position]), **TOLERANCE
            )
        unweighted = [p for p in range(77) if p not in (2, 4)]
        assert torch.equal(z_w[unweighted], z_1[unweighted]), skip


# --- 7. textual inversion ---


def write_ti(folder, pipe, name: str, count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    widths = {encoder: getattr(pipe, encoder).config.hidden_size for encoder, _ in encoders(pipe)}
    if "text_encoder_2" in widths:
        tensors = {
            "clip_l": torch.randn(count, widths["text_encoder"], generator=generator),
            "clip_g": torch.randn(count, widths["text_encoder_2"], generator=generator),
        }
    else:
        tensors = {"emb_params": torch.randn(count, widths["text_encoder"], generator=generator)}
    path = folder / f"{name}.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def with_new_tokens(pipe, tensors) -> tuple[dict, list[int]]:
    """Copies of the text encoders whose token embedding has the TI's vectors as new rows (as diffusers' loader adds
    tokens), and those rows' ids: the encoder input with the TI rows, computed without the library's hook."""
    replaced, ids = {}, None
    keys = ["clip_l", "clip_g"] if "clip_l" in tensors else ["emb_params"]
    for (encoder_name, _), key in zip(encoders(pipe), keys, strict=True):
        encoder = copy.deepcopy(getattr(pipe, encoder_name))
        old = encoder.get_input_embeddings()
        new = torch.nn.Embedding(old.num_embeddings + len(tensors[key]), old.embedding_dim)
        with torch.no_grad():
            new.weight[: old.num_embeddings] = old.weight
            new.weight[old.num_embeddings :] = tensors[key]
        encoder.set_input_embeddings(new)
        replaced[encoder_name] = encoder
        ids = list(range(old.num_embeddings, new.num_embeddings))
    return replaced, ids


@pytest.mark.parametrize("family", FAMILIES)
def test_a_textual_inversion_takes_its_rows_and_never_straddles_chunks(pipes, family, tmp_path):
    pipe = pipes[family]
    path, tensors = write_ti(tmp_path, pipe, "zqstyle", 3)
    embeddings = load_embeddings([path], pipe)
    replaced, ids = with_new_tokens(pipe, tensors)
    # in one chunk, weighted: the vectors are multiplied like any token
    check(
        pipe,
        "a (zqstyle:1.2) red fox",
        [[("a ", 1.0), (ids, 1.2), (" red fox", 1.0)]],
        family,
        embeddings=embeddings,
        replaced=replaced,
    )
    # 73 words: the 3 vectors do not fit in the first chunk's 2 remaining places and move whole to the second
    words = " ".join(WORDS[i % len(WORDS)] for i in range(73))
    encoding = check(
        pipe,
        f"{words} zqstyle snow",
        [[(words, 1.0)], [(ids, 1.0), (" snow", 1.0)]],
        family,
        embeddings=embeddings,
        replaced=replaced,
    )
    assert encoding.real == (*range(1, 75), 78, 79, 80, 81, 82)
    # afterwards, the same text without the embedding: the name is ordinary text again (the hook kept nothing)
    check(pipe, "a (zqstyle:1.2) red fox", [[("a ", 1.0), ("zqstyle", 1.2), (" red fox", 1.0)]], family)


def test_textual_inversion_on_the_embedded_model_and_comfyui(pipe, tmp_path):
    path, tensors = write_ti(tmp_path, pipe, "zqstyle", 2, seed=1)
    embeddings = load_embeddings([path], pipe)
    replaced, ids = with_new_tokens(pipe, tensors)
    pieces = [("a fox ", 1.0), (ids, 1.0), (" on a hill", 1.0)]
    check(pipe, "a fox zqstyle on a hill", [pieces], "embedded", embeddings=embeddings, replaced=replaced)
    check(pipe, "a fox embedding:zqstyle on a hill", [pieces], "embedded", "comfyui", "comfyui", embeddings, replaced)
    check(pipe, "a fox zqstyle on a hill", [[("a fox zqstyle on a hill", 1.0)]], "embedded")


# --- 9. threads ---


def encodings_equal(got, expected) -> bool:
    return all(torch.equal(got.embeddings[k], expected.embeddings[k]) for k in expected.embeddings)


def test_a_textual_inversion_on_one_thread_does_not_reach_another(pipes, tmp_path):
    """Thread A encodes with the TI, thread B without, in the worst order: A is held at the token embedding (its rows
    chosen, not yet read) until B has chosen its own (none) and reached the same point; then A reads, then B. Rows kept
    anywhere but in each thread's own context would give A B's choice."""
    pipe = pipes["sd2"]
    path, _ = write_ti(tmp_path, pipe, "zqstyle", 2)
    embeddings = load_embeddings([path], pipe)
    text, skips = "a zqstyle fox in the snow", [1, 3]
    with_ti, without = ours(pipe, text, skips, embeddings=embeddings), ours(pipe, text, skips)  # hook installed
    assert not torch.allclose(with_ti.embeddings[1], without.embeddings[1])
    a_waiting, b_arrived, a_read = threading.Event(), threading.Event(), threading.Event()
    results, timeout = {}, 30

    def hold(_module, _args):
        if threading.current_thread().name == "A":
            a_waiting.set()
            assert b_arrived.wait(timeout)
        elif threading.current_thread().name == "B":
            b_arrived.set()
            assert a_read.wait(timeout)

    def read(_module, _args, _output):
        if threading.current_thread().name == "A":
            a_read.set()

    def run(name, use):
        if name == "B":
            assert a_waiting.wait(timeout)
        results[name] = ours(pipe, text, skips, embeddings=use)

    embedding = pipe.text_encoder.get_input_embeddings()
    handles = [embedding.register_forward_pre_hook(hold), embedding.register_forward_hook(read)]  # after the TI hook
    try:
        threads = [
            threading.Thread(target=run, args=(name, use), name=name) for name, use in [("A", embeddings), ("B", None)]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(2 * timeout)
    finally:
        for handle in handles:
            handle.remove()
    assert encodings_equal(results["A"], with_ti) and encodings_equal(results["B"], without)

    # and at random: many encodes on two threads switching as often as the interpreter can
    failures, barrier = [], threading.Barrier(2)

    def repeat(use, expected):
        barrier.wait()
        for _ in range(20):
            if not encodings_equal(ours(pipe, text, skips, embeddings=use), expected):
                failures.append("with" if use else "without")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=repeat, args=args) for args in [(embeddings, with_ti), (None, without)]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


@pytest.mark.parametrize("syntax", ["a1111", "a1111-no-norm", "comfyui"])
def test_a_weight_that_overflows_the_conditioning_is_refused_not_rendered_black(pipe, syntax):
    from clipskip import compare

    with pytest.raises(ValueError, match=r"the prompt's weights overflow its conditioning \(the largest is 1e\+40\)"):
        compare(pipe, "(a:1" + "0" * 40 + ") red star", seed=1, skips=[1], steps=1, prompt_syntax=syntax)
    heavy = compare(pipe, "(a:100) red star", seed=1, skips=[1], steps=1, prompt_syntax=syntax).images[1]
    assert np.asarray(heavy).max() > 0  # a large but finite weight still renders


@pytest.mark.parametrize("syntax", ["a1111-no-norm", "comfyui"])
def test_a_weight_that_overflows_the_denoiser_is_refused_not_rendered_black(pipe, syntax):
    """(a:1e21) keeps the conditioning finite, and the UNet's latents became NaN: black cells, no warning, and a
    difference view that called them identical."""
    from clipskip import compare

    huge = "(red star:1" + "0" * 21 + ")"
    with pytest.raises(ValueError, match=r"^the cell at CLIP skip 1 overflowed in the denoiser at step 1 of 2 "
                       r"\(float32\): its image would be black\. Weights far above 1"):  # fmt: skip
        compare(pipe, huge, seed=1, skips=[1, 2], steps=2, prompt_syntax=syntax)
    with pytest.raises(ValueError, match=r"^row 2's cell at CLIP skip 1 overflowed"):
        compare(pipe, ["red star", huge], seed=1, skips=[1], steps=1, prompt_syntax=syntax)
    with pytest.raises(ValueError, match=r"^the cell at CLIP skip 1 overflowed in the denoiser"):
        compare(pipe, "red star", negative_prompt=huge, seed=1, skips=[1], steps=1, prompt_syntax=syntax)
