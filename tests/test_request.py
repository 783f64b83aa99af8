"""Every bad setting is refused up front with a message that names it, says what to use instead and stays short."""

import math
import re

import pytest

from clipskip import comparison
from clipskip.request import (
    MAX_PROMPT_CHARS,
    ComparisonRequest,
    as_int,
    check_max_batch,
    check_skips,
    rows_from_form,
    seed_list,
    short_repr,
)

SAMPLER_NAMES = "Euler a, Euler, DPM++ 2M, DPM++ 2M Karras, DDIM, UniPC"


def request(**changes):
    settings = {"prompt": "a cat", "seed": 1, "max_skip": 12} | changes
    return ComparisonRequest.from_inputs(settings.pop("prompt"), **settings)


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def test_good_request_keeps_every_setting():
    r = request(negative_prompt="blurry", skips=[3, 1], steps=20.0, guidance_scale=7, width=512, height=64)
    assert r == ComparisonRequest(("a cat",), "blurry", (1,), (3, 1), 20, 7.0, 512, 64, None, 1)
    assert r.rows == [("a cat", 1)]
    assert isinstance(r.steps, int) and isinstance(r.guidance_scale, float)


class Noisy:
    def __repr__(self):
        return "<" + "noise " * 1000 + ">"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"skips": []}, "choose at least one CLIP skip value (1 to 12)"),
        ({"skips": [0]}, "CLIP skip 0 is out of range: this text encoder has 12 layers, so use 1 to 12"),
        ({"skips": [1, 13]}, "CLIP skip 13 is out of range: this text encoder has 12 layers, so use 1 to 12"),
        ({"skips": [1e308]}, "CLIP skip 1e+308 is out of range: this text encoder has 12 layers, so use 1 to 12"),
        ({"skips": [2, 1, 2]}, "CLIP skip 2 is listed twice; list each value once"),
        ({"skips": [1] * 60_000}, "give at most 12 CLIP skip values (each of 1 to 12 once), not 60,000"),
        # the count comes first: the bad value at the end is never looked at
        ({"skips": [1] * 13 + [object()]}, "give at most 12 CLIP skip values (each of 1 to 12 once), not 14"),
        ({"skips": "1,2"}, "the CLIP skip values must be a list of whole numbers, not '1,2'"),
        ({"skips": {1, 2}}, "the CLIP skip values must be a list of whole numbers, not {1, 2}"),
        ({"skips": None}, "the CLIP skip values must be a list of whole numbers, not None"),
        ({"skips": [1.555]}, "each CLIP skip 1.555 has more than two decimals; use at most two, like 1.5 or 2.25"),
        ({"skips": [True]}, "each CLIP skip must be a whole number, not True"),
        ({"skips": [Noisy()]}, "each CLIP skip must be a whole number, not <noise noise noise noise noise noise no…"),
        ({"steps": 0}, "steps must be 1 to 150, not 0"),
        ({"steps": 151}, "steps must be 1 to 150, not 151"),
        ({"steps": 1e308}, "steps must be 1 to 150, not 1e+308"),
        ({"steps": 10**5000}, "steps must be 1 to 150, not a number about 5,000 digits long"),
        ({"steps": 2.5}, "steps must be a whole number, not 2.5"),
        ({"steps": math.nan}, "steps must be a whole number, not nan"),
        ({"steps": "x" * 5000}, "steps must be a whole number, not 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…"),
        ({"width": 100}, "width must be a multiple of 8 from 64 to 2048, not 100"),
        ({"height": 56}, "height must be a multiple of 8 from 64 to 2048, not 56"),
        ({"width": 2056}, "width must be a multiple of 8 from 64 to 2048, not 2056"),
        ({"width": True}, "width must be a whole number, not True"),
        ({"seed": -2}, "seed must be -1 (random) or 0 to 4294967295, not -2"),
        ({"seed": 2**32}, "seed must be -1 (random) or 0 to 4294967295, not 4294967296"),
        (
            {"seed": -(10**60)},
            "seed must be -1 (random) or 0 to 4294967295, not a negative number about 60 digits long",
        ),
        ({"seed": True}, "seed must be a whole number, not True"),
        ({"guidance_scale": 31}, "CFG scale must be 0 to 30, not 31"),
        ({"guidance_scale": -0.5}, "CFG scale must be 0 to 30, not -0.5"),
        ({"guidance_scale": 10**400}, "CFG scale must be 0 to 30, not a number about 400 digits long"),
        ({"guidance_scale": math.inf}, "CFG scale must be a finite number, not inf"),
        ({"guidance_scale": False}, "CFG scale must be a finite number, not False"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt is 2,001 characters long; shorten it to at most 2,000"),
        ({"negative_prompt": "x" * 5000}, "negative prompt is 5,000 characters long; shorten it to at most 2,000"),
        ({"prompt": 42}, "prompt must be text, not int"),
        (
            {"prompt": "ab\ud800"},
            "prompt contains a character that is not valid text (a lone surrogate, U+D800, at position 3)",
        ),
        (
            {"negative_prompt": "\udcff"},
            "negative prompt contains a character that is not valid text (a lone surrogate, U+DCFF, at position 1)",
        ),
        ({"scheduler": "Heun"}, f"unknown sampler 'Heun'; choose one of: {SAMPLER_NAMES}"),
        (
            {"scheduler": "H" * 5000},
            f"unknown sampler 'HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH…; choose one of: {SAMPLER_NAMES}",
        ),
        ({"scheduler": ["Euler a"]}, f"sampler must be text, one of: {SAMPLER_NAMES}; not ['Euler a']"),
        (
            {"seed": [1, 2], "prompt": ["a", "b"]},
            "rows are either several seeds or several prompts, not both: got 2 prompts and 2 seeds",
        ),
        ({"seed": list(range(9))}, "at most 8 rows; got 9"),
        ({"prompt": ["a"] * 1_000_000}, "at most 8 rows; got 1,000,000"),
        ({"seed": []}, "give at least one prompt and one seed"),
        ({"seed": [1, -5]}, "seed must be -1 (random) or 0 to 4294967295, not -5"),
        ({"reference": 5, "skips": [1, 2]}, "the reference skip 5 is not among the skips compared ((1, 2))"),
        ({"reference": 1e308, "skips": [1, 2]}, "the reference skip 1e+308 is not among the skips compared ((1, 2))"),
        ({"reference": True, "skips": [1, 2]}, "reference skip must be a whole number, not True"),
        ({"reference": "1.5", "skips": [1, 2]}, "the reference skip 1.5 is not among the skips compared ((1, 2))"),
    ],
)
def test_bad_values_raise_clear_value_errors(changes, message):
    with pytest.raises(ValueError, match=exactly(message)):
        request(**changes)


def test_limits_themselves_are_accepted():
    r = request(seed=2**32 - 1, steps=150, guidance_scale=30, width=2048, height=64, skips=range(1, 13))
    assert r.skips == tuple(range(1, 13))
    assert request(seed=-1, guidance_scale=0).seeds == (-1,)
    assert request(prompt=["p"] * 8).prompts == ("p",) * 8
    assert request(prompt="x" * MAX_PROMPT_CHARS, skips=(2, 1), reference=2.0).reference == 2


def test_none_prompts_become_empty_and_sizes_default_to_none():
    r = request(prompt=None, negative_prompt=None)
    assert (r.prompts, r.negative_prompt, r.width, r.height) == (("",), "", None, None)


def test_valid_text_of_every_kind_is_kept():
    text = "🦊 renard, лиса, 狐, ثعلب, e\u0301, \u200d, \x00"  # emoji, scripts, combining and zero-width, NUL
    assert request(prompt=text).prompts == (text,)


def test_as_int_accepts_integral_floats_only():
    assert as_int("steps", 20.0) == 20
    assert type(as_int("steps", 20.0)) is int
    with pytest.raises(ValueError, match=exactly("steps must be a whole number, not '20'")):
        as_int("steps", "20")
    with pytest.raises(ValueError, match=exactly("steps must be a whole number, not inf")):
        as_int("steps", math.inf)


def test_check_skips_keeps_the_order_asked():
    assert check_skips((4, 1, 3), 12) == (4, 1, 3)
    assert check_skips([4.0, 1], 12) == (4, 1)
    message = "the CLIP skip values must be a list of whole numbers, not <generator object test_check_skips_keep…"
    with pytest.raises(ValueError, match=exactly(message)):
        check_skips((s for s in (1, 2)), 12)


def test_rows_are_seeds_or_prompts():
    assert request(seed=[3, 4]).rows == [("a cat", 3), ("a cat", 4)]
    assert request(prompt=["a cat", "a dog"], seed=9).rows == [("a cat", 9), ("a dog", 9)]


def test_reference_defaults_to_the_native_skip_when_compared_else_the_first():
    assert request(skips=[3, 1, 2]).reference == 1
    assert request(skips=[3, 2], native_skip=1).reference == 3
    assert request(skips=[1, 2, 3], native_skip=2).reference == 2
    assert request(skips=[1, 2, 3], reference=3).reference == 3


def test_seed_lists():
    assert seed_list("42, 43,44") == [42, 43, 44]
    assert seed_list("random:3") == seed_list("3 random") == [-1, -1, -1]
    assert seed_list(" -1, 4294967295, 0000000000007 ,") == [-1, 4294967295, 7]
    assert seed_list("") == seed_list(" , ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("42 43", "seeds must be whole numbers separated by commas, like 42, 43, 44, or random:3; got '42 43'"),
        ("1_000", "seeds must be whole numbers separated by commas, like 42, 43, 44, or random:3; got '1_000'"),
        ("٤٢", "seeds must be whole numbers separated by commas, like 42, 43, 44, or random:3; got '٤٢'"),
        ("random:9", "random seeds: ask for 1 to 8, not 9"),
        ("random:0", "random seeds: ask for 1 to 8, not 0"),
        ("random:" + "9" * 150, "random seeds: ask for 1 to 8, not " + "9" * 39 + "…"),
        (
            "random:" + "9" * 5000,
            "seeds is 5,007 characters long; at most 200 (up to 8 seeds, like 42, 43, 44, or random:3)",
        ),
        ("9" * 5000, "seeds is 5,000 characters long; at most 200 (up to 8 seeds, like 42, 43, 44, or random:3)"),
        ("9" * 199, "seed must be -1 (random) or 0 to 4294967295, not " + "9" * 39 + "…"),
        ("4294967296", "seed must be -1 (random) or 0 to 4294967295, not 4294967296"),
        ("-2", "seed must be -1 (random) or 0 to 4294967295, not -2"),
        ("1," * 9, "at most 8 rows; got 9 seeds"),
        (["1", "2"], "seeds must be text, like \"42, 43, 44\" or \"random:3\", not ['1', '2']"),
    ],
)
def test_bad_seed_lists_are_refused_before_any_number_is_converted(text, message):
    with pytest.raises(ValueError, match=exactly(message)):
        seed_list(text)


def test_short_repr_cuts_long_values_and_never_writes_out_huge_numbers():
    assert short_repr("abc") == "'abc'"
    assert short_repr("x" * 5000) == "'" + "x" * 38 + "…"
    assert short_repr([1] * 60_000) == "[1, 1, 1, 1, 1, 1, ...]"
    assert short_repr(1e308) == "1e+308"
    assert short_repr(10**5000) == "a number about 5,000 digits long"
    assert short_repr(2**40) == "1099511627776"
    assert short_repr("\ud800") == "'\\ud800'"
    assert len(short_repr(Noisy())) == 40


def test_rows_from_form_turns_the_boxes_into_rows():
    assert rows_from_form("a fox", 7, "", False) == ("a fox", 7)
    assert rows_from_form("a fox", 7, None, False) == ("a fox", 7)
    assert rows_from_form("a fox", 7, "  ", False) == ("a fox", 7)
    assert rows_from_form("a fox", 7, "1, 2", False) == ("a fox", [1, 2])
    assert rows_from_form("a fox", 7, "random:2", False) == ("a fox", [-1, -1])
    assert rows_from_form(" a fox \n\n a cat\r\n", 7, "", True) == (["a fox", "a cat"], 7)
    box = "\n".join(["x" * MAX_PROMPT_CHARS] * 8)  # the most the box holds
    assert rows_from_form(box, 7, None, True)[0] == ["x" * MAX_PROMPT_CHARS] * 8


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (("a", 1, [7, 8, 9], False), 'seeds must be text, like "42, 43, 44" or "random:3", not [7, 8, 9]'),
        (("a", 1, 42, False), 'seeds must be text, like "42, 43, 44" or "random:3", not 42'),
        (
            ("a", 1, "42 43", False),
            "seeds must be whole numbers separated by commas, like 42, 43, 44, or random:3; got '42 43'",
        ),
        (("a", 1, "", "false"), "prompt_rows must be true or false, not 'false'"),
        (("a", 1, "", 1), "prompt_rows must be true or false, not 1"),
        (("a", 1, "", None), "prompt_rows must be true or false, not None"),
        (("x" * 16_009, 1, "", True), "prompt (one per line) is 16,009 characters long; shorten it to at most 16,008"),
        (("\n \n", 1, "", True), "prompt (one per line) is blank: write one prompt per line, one row each"),
        ((["a", "b"], 1, "", True), "prompt (one per line) must be text, not list"),
        (
            ("a\nb\ud800", 1, "", True),
            "prompt (one per line) contains a character that is not valid text (a lone surrogate, U+D800, at "
            "position 4)",
        ),
    ],
)
def test_rows_from_form_refuses_what_the_form_cannot_mean(form, message):
    with pytest.raises(ValueError, match=exactly(message)):
        rows_from_form(*form)


def test_rows_from_form_rows_are_then_checked_like_any_rows():
    prompts, seed = rows_from_form("\n".join("abcdefghi"), 1, "", True)
    with pytest.raises(ValueError, match=exactly("at most 8 rows; got 9")):
        request(prompt=prompts, seed=seed)
    prompts, seeds = rows_from_form("a\nb", 1, "1, 2", True)
    with pytest.raises(ValueError, match="^rows are either several seeds or several prompts, not both"):
        request(prompt=prompts, seed=seeds)


@pytest.mark.parametrize("bad", [-1, 0, 2.5, 2.0, "2", True, [4]])
def test_max_batch_is_none_or_a_whole_number_from_one(bad):
    assert check_max_batch(None) is None and check_max_batch(1) == 1 and check_max_batch(64) == 64
    message = f"max_batch must be a whole number, 1 or more, or None (no bound), not {short_repr(bad)}"
    with pytest.raises(ValueError, match=exactly(message)):
        check_max_batch(bad)


def test_compare_checks_max_batch_before_any_model_work(pipe, monkeypatch):
    def no_model_work(*args, **kwargs):
        raise AssertionError("the model ran before max_batch was checked")

    monkeypatch.setattr(comparison, "detect_family", no_model_work)
    monkeypatch.setattr(comparison, "encode", no_model_work)
    message = "max_batch must be a whole number, 1 or more, or None (no bound), not -1"
    with pytest.raises(ValueError, match=exactly(message)):
        comparison.compare(pipe, "a cat", seed=1, max_batch=-1)
