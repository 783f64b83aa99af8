"""The cell cache: bounded by bytes, least recently used first; a re-run renders only the new cells."""

import numpy as np
from PIL import Image

from clipskip import compare
from clipskip.cache import CellCache, cell_bytes
from tests.conftest import TINY, spy_on_calls


def image(value: int, size=(8, 8)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def test_the_byte_bound_holds_and_the_least_recently_used_go_first():
    one = cell_bytes(image(0))  # 8 x 8 x 3
    cache = CellCache(max_bytes=2 * one)
    cache.put(("a",), image(1), False)
    cache.put(("b",), image(2), True)
    assert cache.get(("a",))[0].getpixel((0, 0)) == (1, 1, 1)  # a is now the most recent
    cache.put(("c",), image(3), False)
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None and cache.get(("c",)) is not None
    assert cache.bytes == 2 * one and len(cache) == 2
    cache.put(("huge",), image(4, (64, 64)), False)  # larger than the whole bound: not kept, nothing evicted
    assert cache.get(("huge",)) is None and len(cache) == 2
    cache.put(("a",), image(5), False)  # replacing a cell does not count it twice
    assert cache.bytes == 2 * one and cache.get(("a",))[0].getpixel((0, 0)) == (5, 5, 5)


def test_one_more_skip_renders_only_the_new_cell_and_cached_cells_are_identical(pipe, monkeypatch):
    cache = CellCache()
    settings = {"negative_prompt": "blurry", "seed": 7, **TINY}
    first = compare(pipe, "a red fox", skips=[1, 2, 3], cache=cache, **settings)
    seen = spy_on_calls(monkeypatch, type(pipe))
    second = compare(pipe, "a red fox", skips=[1, 2, 3, 4], cache=cache, **settings)
    assert seen["prompt_embeds"].shape[0] == 1  # only skip 4 went through the denoiser
    for skip in (1, 2, 3):
        assert np.array_equal(np.asarray(second.images[skip]), np.asarray(first.images[skip]))
    assert [cell.get("cached", False) for cell in second.metadata["rows"][0]["cells"]] == [True, True, True, False]
    monkeypatch.undo()
    fresh = compare(pipe, "a red fox", skips=[1, 2, 3, 4], **settings)
    assert np.abs(np.asarray(second.images[4]).astype(int) - np.asarray(fresh.images[4]).astype(int)).max() <= 2


def test_one_more_seed_row_renders_only_that_row_and_other_settings_miss(pipe, monkeypatch):
    cache = CellCache()
    compare(pipe, "a red fox", seed=7, skips=[1, 2], cache=cache, **TINY)
    seen = spy_on_calls(monkeypatch, type(pipe))
    compare(pipe, "a red fox", seed=[7, 8], skips=[1, 2], cache=cache, **TINY)
    assert seen["prompt_embeds"].shape[0] == 2  # the new row's two cells
    result = compare(pipe, "a red fox", seed=7, skips=[1, 2], cache=cache, **TINY | {"steps": 3})
    assert seen["prompt_embeds"].shape[0] == 2 and "cached" not in result.metadata["rows"][0]["cells"][0]
