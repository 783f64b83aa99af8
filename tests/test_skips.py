"""Fractional and per-encoder skips: the notation, and the conditioning against the definition computed here by hand
(SD.Next's blend `(1 − f)·hidden_states[-N] + f·hidden_states[-(N+1)]`, then the final norm where the family has it;
each SDXL encoder at its own layer)."""

import json
from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from clipskip import compare, skip_embeddings
from clipskip.encoding import layer_choice
from clipskip.families import SD1, SDXL
from clipskip.formats import read_settings
from clipskip.formats.numbering import equivalents
from clipskip.metadata import cell_header
from clipskip.outputs import write_outputs
from clipskip.request import check_skips
from clipskip.skips import MAX_SKIP_CHARS, Skip, a1111_sdxl, parse_skip, skip_texts
from tests import tiny_models
from tests.conftest import TINY

TEXT = "a red circle on the left"


@pytest.mark.parametrize(
    ("given", "text", "json_value"),
    [
        (2, "2", 2),
        ("2", "2", 2),
        (2.0, "2", 2),
        ("1.5", "1.5", "1.5"),
        (1.5, "1.5", "1.5"),
        ("2.25", "2.25", "2.25"),
        (2.1, "2.1", "2.1"),  # read from its decimal form: never 2.09999…
        ("1.50", "1.5", "1.5"),
        ("L1/G2", "L1/G2", "L1/G2"),
        (" g2 / l1.5 ", "L1.5/G2", "L1.5/G2"),
        ("L2/G2", "2", 2),  # the same layer for both encoders is the plain skip
        ({"L": 3, "G": 2}, "L3/G2", "L3/G2"),
        ({"text_encoder": 4, "text_encoder_2": "2"}, "L4/G2", "L4/G2"),
    ],
)
def test_every_notation_reads_as_one_value(given, text, json_value):
    skip = parse_skip(given)
    assert (str(skip), skip.json) == (text, json_value)
    assert type(skip.json) is type(json_value)


def test_whole_skips_are_their_ints_and_columns_sort_by_each_encoders_layer():
    assert parse_skip("2") == 2 and hash(parse_skip("2")) == hash(2) and parse_skip("1.5") != 1
    assert {parse_skip("L2/G2"): "x"}[2] == "x"
    columns = sorted(map(parse_skip, ["L3/G2", 2, "L1/G2", 1, "1.5"]))
    assert columns == [1, Skip((100, 200)), Skip((150,)), 2, Skip((300, 200))]
    assert [str(s) for s in a1111_sdxl()] == ["L1/G2", "2", "L3/G2", "L4/G2"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("1.555", "each CLIP skip must be a whole number, not '1.555' (or a fraction with up to two decimals"),
        (1.234, "each CLIP skip 1.234 has more than two decimals; use at most two, like 1.5 or 2.25"),
        ("L1/L2", "each CLIP skip 'L1/L2' names CLIP-L twice; give L and G one each"),
        ("L1", "each CLIP skip must be a whole number, not 'L1'"),
        ("x" * 10_000, "each CLIP skip must be a whole number (or a fraction"),
        ({"L": 1}, "each CLIP skip as a mapping gives L and G one value each"),
        ({"L": 1, "X": 2}, "each CLIP skip: unknown text encoder 'X'"),
        ({"L": "L1/G2", "G": 2}, "each CLIP skip for CLIP-L must be one number, not L1/G2"),
        (True, "each CLIP skip must be a whole number, not True"),
    ],
)
def test_bad_notations_are_refused_naming_what_is_accepted(given, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace("?", r"\?")):
        parse_skip(given)


def test_the_range_the_count_and_twins_are_checked_per_model():
    assert check_skips(["L1/G2", 2, "1.5"], 12, SDXL) == (Skip((100, 200)), 2, Skip((150,)))
    with pytest.raises(ValueError, match="^CLIP skip L1/G2 gives each CLIP text encoder its own layer, but this"):
        check_skips(["L1/G2"], 12, SD1)
    with pytest.raises(ValueError, match="^CLIP skip 12.5 is out of range: this text encoder has 12 layers"):
        check_skips(["12.5"], 12)
    with pytest.raises(ValueError, match="^CLIP skip L13/G2 is out of range"):
        check_skips(["L13/G2"], 12, SDXL)
    with pytest.raises(ValueError, match="^CLIP skip 2 is listed twice"):
        check_skips([2, "L2/G2"], 12, SDXL)
    with pytest.raises(ValueError, match="^skips is 401 characters long; at most 400"):
        skip_texts("1," * 200 + "1")
    assert skip_texts(" 1, 1.5,,L1/G2 ") == ["1", "1.5", "L1/G2"]


@given(st.text(max_size=MAX_SKIP_CHARS + 5))
def test_any_text_is_a_skip_or_a_value_error(text):
    try:
        skip = parse_skip(text)
    except ValueError:
        return
    assert parse_skip(str(skip)) == skip  # the canonical text reads back as the same value


@given(st.integers(100, 1299), st.integers(100, 1299))
def test_hundredths_round_trip_through_text_and_json(clip_l, clip_g):
    skip = Skip((clip_l, clip_g))
    assert parse_skip(str(skip)) == skip == parse_skip(json.loads(json.dumps(skip.json)))
    assert skip.parts(("L", "G")) == (Fraction(clip_l, 100), Fraction(clip_g, 100))


def hidden_states(encoder, tokenizer, text: str):
    ids = tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids, output_hidden_states=True).hidden_states


def blend(states, skip: float):
    """SD.Next's definition, written out: N = whole part, f = the rest."""
    n = int(skip)
    f = skip - n
    return states[-n] if f == 0 else (1 - f) * states[-n] + f * states[-(n + 1)]


def test_fractional_skips_blend_neighbouring_layers_then_the_final_norm_on_sd1(pipe):
    states = hidden_states(pipe.text_encoder, pipe.tokenizer, TEXT)
    norm = pipe.text_encoder.text_model.final_layer_norm if hasattr(pipe.text_encoder, "text_model") else None
    norm = norm or pipe.text_encoder.final_layer_norm
    ours = skip_embeddings(pipe, TEXT, [1, "1.5", 2.25, "11.75"], prompt_syntax="plain")
    assert list(ours) == [1, Skip((150,)), Skip((225,)), Skip((1175,))]
    for skip, value in zip(ours, [1, 1.5, 2.25, 11.75], strict=True):
        with torch.no_grad():
            expected = norm(blend(states, value))
        torch.testing.assert_close(ours[skip], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours[Skip((150,))], ours[1])


@pytest.fixture(scope="module")
def sdxl():
    return tiny_models.sdxl()


def test_per_encoder_and_fractional_skips_on_sdxl_take_each_encoders_layer_without_a_norm(sdxl):
    clip_l = hidden_states(sdxl.text_encoder, sdxl.tokenizer, TEXT)
    clip_g = hidden_states(sdxl.text_encoder_2, sdxl.tokenizer_2, TEXT)
    ours = skip_embeddings(sdxl, TEXT, ["L1/G2", {"L": 3, "G": 1.5}, "2.5", 2], prompt_syntax="plain")
    for skip, (l_skip, g_skip) in zip(ours, [(1, 2), (3, 1.5), (2.5, 2.5), (2, 2)], strict=True):
        expected = torch.cat([blend(clip_l, l_skip), blend(clip_g, g_skip)], dim=-1)
        torch.testing.assert_close(ours[skip], expected, rtol=1e-5, atol=1e-5)
    chunked = skip_embeddings(sdxl, TEXT, ["L1/G2", "2.5"])  # AUTOMATIC1111's reading: the same for this prompt
    assert all(torch.equal(chunked[skip], ours[skip]) for skip in chunked)


def test_per_encoder_and_fractional_skips_on_sd3_take_each_clip_encoders_layer_and_leave_t5_alone(sd3):
    clip_l = hidden_states(sd3.text_encoder, sd3.tokenizer, TEXT)
    clip_g = hidden_states(sd3.text_encoder_2, sd3.tokenizer_2, TEXT)
    ours = skip_embeddings(sd3, TEXT, ["L1/G2", "1.5", 2], prompt_syntax="plain")
    width = clip_l[0].shape[-1] + clip_g[0].shape[-1]
    for skip, (l_skip, g_skip) in zip(ours, [(1, 2), (1.5, 1.5), (2, 2)], strict=True):
        clip = torch.cat([blend(clip_l, l_skip), blend(clip_g, g_skip)], dim=-1)
        torch.testing.assert_close(ours[skip][:, :77, :width], clip, rtol=1e-5, atol=1e-5)
        assert not ours[skip][:, :77, width:].any()  # zero-padded to T5's width, as diffusers pads
        assert torch.equal(ours[skip][:, 77:], ours[2][:, 77:])  # T5's sequence: the same in every column


def test_labels_and_numbering_say_each_encoders_layer(sdxl, pipe):
    column = layer_choice(sdxl, "L1/G2").as_dict()
    assert column["skip"] == "L1/G2" and column["hidden_states"] is None
    assert [(e["skip"], e["layer"], e["layers"]) for e in column["encoders"]] == [("L1", 5, 5), ("G2", 6, 7)]
    assert column["equivalents"]["AUTOMATIC1111"] == "1 (CLIP-L too: on)"
    assert set(column["equivalents"].values()) == {"1 (CLIP-L too: on)", None}
    header = ["CLIP skip L1/G2", "layers L 5/5 + G 6/7 · no final norm", "A1111 1, CLIP-L too"]
    assert cell_header(column) == header
    fractional = layer_choice(pipe, "1.25").as_dict()
    assert fractional["hidden_states"] == [-1, -2]
    assert fractional["encoders"] == [
        {"encoder": "text_encoder", "layer": 12, "layers": 12, "next_layer": 11, "weight": 0.25}
    ]
    assert cell_header(fractional) == ["CLIP skip 1.25", "between layers 12 and 11 of 12 · final norm", "SD.Next 1.25"]
    assert equivalents(SDXL, parse_skip("2.5"))["SD.Next"] == "1.5"  # SD.Next counts one less on SDXL
    assert equivalents(SDXL, parse_skip("L1/G3"))["AUTOMATIC1111"] is None


def test_a_comparison_of_new_columns_writes_files_that_read_back_as_the_same_columns(pipe, tmp_path):
    result = compare(pipe, TEXT, seed=5, skips=[1, "1.5"], reference="1.5", **TINY)
    assert result.metadata["skips"] == [1, "1.5"] and result.metadata["reference_skip"] == "1.5"
    assert len(result.metadata["embedding_similarity"][0]["cosine"]) == 12  # every whole layer, as before
    assert list(result.images) == [1, Skip((150,))]
    paths = write_outputs(result, tmp_path)
    assert [p.name for p in paths][2:4] == ["skip-1.png", "skip-1.5.png"]
    cell = Image.open(tmp_path / "skip-1.5.png")
    assert "Clip skip: 1.5, Clipskip skip: 1.5" in cell.info["parameters"]  # SD.Next's number, and ours
    assert "prompt" not in cell.info  # ComfyUI has no fractional skip: no graph that would render something else
    assert read_settings(tmp_path / "skip-1.5.png", SD1)[0]["skips"] == ["1.5"]
    form, _ = read_settings(tmp_path / "grid.png", SD1)
    assert (form["skips"], form["reference"]) == ([1, "1.5"], "1.5")


def test_the_preset_counts_as_its_four_columns():
    from clipskip.families import SDXL
    from clipskip.request import check_skips

    with pytest.raises(ValueError, match="at most 12 CLIP skip values, not 15 \\(the a1111-sdxl preset is four"):
        check_skips(["a1111-sdxl", 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 12, SDXL)
