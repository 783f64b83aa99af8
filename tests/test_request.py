"""Every bad setting is refused up front with a message that names it and says what to use instead."""

import math
import re

import pytest

from clipskip.request import MAX_PROMPT_CHARS, ComparisonRequest, as_int, check_skips, seed_list


def request(**changes):
    settings = {"prompt": "a cat", "seed": 1, "max_skip": 12} | changes
    return ComparisonRequest.from_inputs(settings.pop("prompt"), **settings)


def test_good_request_keeps_every_setting():
    r = request(negative_prompt="blurry", skips=[3, 1], steps=20.0, guidance_scale=7, width=512, height=64)
    assert r == ComparisonRequest(("a cat",), "blurry", (1,), (3, 1), 20, 7.0, 512, 64, None, 1)
    assert r.rows == [("a cat", 1)]
    assert isinstance(r.steps, int) and isinstance(r.guidance_scale, float)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"skips": []}, "choose at least one CLIP skip value (1 to 12)"),
        ({"skips": [0]}, "CLIP skip 0 is out of range: this text encoder has 12 layers, so use 1 to 12"),
        ({"skips": [1, 13]}, "CLIP skip 13 is out of range"),
        ({"skips": [2, 1, 2]}, "CLIP skip 2 is listed twice"),
        ({"skips": "1,2"}, "the CLIP skip values must be a list of whole numbers"),
        ({"skips": [1.5]}, "each CLIP skip must be a whole number, not 1.5"),
        ({"steps": 0}, "steps must be 1 to 150, not 0"),
        ({"steps": 151}, "steps must be 1 to 150, not 151"),
        ({"steps": 2.5}, "steps must be a whole number, not 2.5"),
        ({"steps": math.nan}, "steps must be a whole number"),
        ({"width": 100}, "width must be a multiple of 8 from 64 to 2048, not 100"),
        ({"height": 56}, "height must be a multiple of 8 from 64 to 2048, not 56"),
        ({"width": 2056}, "width must be a multiple of 8 from 64 to 2048"),
        ({"seed": -2}, "seed must be -1 (random) or 0 to 4294967295, not -2"),
        ({"seed": 2**32}, "seed must be -1 (random) or 0 to 4294967295"),
        ({"seed": True}, "seed must be a whole number"),
        ({"guidance_scale": 31}, "CFG scale must be 0 to 30, not 31"),
        ({"guidance_scale": -0.5}, "CFG scale must be 0 to 30"),
        ({"guidance_scale": math.inf}, "CFG scale must be a finite number"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt is 2,001 characters long; shorten it to at most 2,000"),
        ({"negative_prompt": "x" * 5000}, "negative prompt is 5,000 characters long"),
        ({"prompt": 42}, "prompt must be text, not int"),
        ({"scheduler": "Heun"}, "unknown sampler 'Heun'; choose one of: Euler a, Euler,"),
        ({"seed": [1, 2], "prompt": ["a", "b"]}, "rows are either several seeds or several prompts, not both"),
        ({"seed": list(range(9))}, "at most 8 rows; got 9"),
        ({"seed": []}, "give at least one prompt and one seed"),
        ({"seed": [1, -5]}, "seed must be -1 (random) or 0 to 4294967295, not -5"),
        ({"reference": 5, "skips": [1, 2]}, "the reference skip 5 is not among the skips compared ((1, 2))"),
    ],
)
def test_bad_values_raise_clear_value_errors(changes, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        request(**changes)


def test_limits_themselves_are_accepted():
    r = request(seed=2**32 - 1, steps=150, guidance_scale=30, width=2048, height=64, skips=range(1, 13))
    assert r.skips == tuple(range(1, 13))
    assert request(seed=-1, guidance_scale=0).seeds == (-1,)


def test_none_prompts_become_empty_and_sizes_default_to_none():
    r = request(prompt=None, negative_prompt=None)
    assert (r.prompts, r.negative_prompt, r.width, r.height) == (("",), "", None, None)


def test_as_int_accepts_integral_floats_only():
    assert as_int("steps", 20.0) == 20
    with pytest.raises(ValueError):
        as_int("steps", "20")


def test_check_skips_keeps_the_order_asked():
    assert check_skips((4, 1, 3), 12) == (4, 1, 3)


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
    with pytest.raises(ValueError, match="seeds must be whole numbers separated by commas"):
        seed_list("42 43")
    with pytest.raises(ValueError, match="random seeds: ask for 1 to 8, not 9"):
        seed_list("random:9")
