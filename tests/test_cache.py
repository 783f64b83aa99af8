"""The cell cache: bounded by bytes, least recently used first; a re-run renders only the new cells."""

import copy
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from clipskip import compare
from clipskip.cache import CellCache, cell_bytes
from clipskip.loading import LoadOptions, load_pipeline
from tests import tiny_models
from tests.conftest import TINY, spy_on_calls
from tests.single_file import save_single_file


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


def test_one_more_seed_row_renders_only_that_row(pipe, monkeypatch):
    cache = CellCache()
    compare(pipe, "a red fox", seed=7, skips=[1, 2], cache=cache, **TINY)
    seen = spy_on_calls(monkeypatch, type(pipe))
    result = compare(pipe, "a red fox", seed=[7, 8], skips=[1, 2], cache=cache, **TINY)
    assert seen["prompt_embeds"].shape[0] == 2  # the new row's two cells
    assert [[cell.get("cached", False) for cell in row["cells"]] for row in result.metadata["rows"]] == [
        [True, True],
        [False, False],
    ]


# Everything in the cell cache's key, as the metadata names it: a request that differs in any one of them is another
# image. The model's name and weights, its device and dtype come from the pipeline; the rest from the request.
KEY_FIELDS = (
    "model",
    "weights_sha256",
    "device",
    "dtype",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "sampler",
    "width",
    "height",
    "skips",
)
REQUEST = {
    "prompt": "a red fox",
    "negative_prompt": "blurry",
    "seed": 7,
    "skips": [2],
    "guidance_scale": 7.5,
    "scheduler": "Euler a",
    **TINY,
}
OTHER_REQUEST = {
    "prompt": {"prompt": "a castle at dusk"},
    "negative_prompt": {"negative_prompt": "sharp"},
    "seed": {"seed": 8},
    "steps": {"steps": 3},
    "guidance_scale": {"guidance_scale": 4.0},
    "sampler": {"scheduler": "DDIM"},
    "width": {"width": 72},
    "height": {"height": 72},
    "skips": {"skips": [3]},
}


class Elsewhere:
    """Mixed into a copy of a pipeline: it reports another device (cpu:0, which still runs on the CPU), as the same
    weights loaded on a second GPU would, without needing one."""

    _execution_device = torch.device("cpu", 0)


def on_another_device(pipe):
    other = copy.copy(pipe)
    other.__class__ = type("Elsewhere" + type(pipe).__name__, (Elsewhere, type(pipe)), {})
    return other


@pytest.fixture(scope="module")
def pipelines(saved, tmp_path_factory):
    """Pairs of pipelines that differ in one of the pipeline's key fields only."""
    root = tmp_path_factory.mktemp("cache-key")
    shutil.copytree(saved["sd1"], root / "same-weights")  # other name, same weights
    changed = tiny_models.sd1()
    with torch.no_grad():
        changed.unet.conv_out.bias.add_(0.5)
    (root / "changed").mkdir()
    changed_file = root / "changed" / saved["sd1.safetensors"].name  # the same name: single files are named by it
    save_single_file(changed, changed_file)
    single = LoadOptions(config=str(saved["sd1"]))  # their hash is the file's
    file = load_pipeline(str(saved["sd1.safetensors"]), device="cpu", options=single)
    folder = load_pipeline(str(saved["sd1"]), device="cpu")
    return {
        "model": (folder, load_pipeline(str(root / "same-weights"), device="cpu")),
        "weights_sha256": (file, load_pipeline(str(changed_file), device="cpu", options=single)),
        "device": (folder, on_another_device(folder)),
        "dtype": (file, load_pipeline(str(saved["sd1.safetensors"]), device="cpu", dtype="bf16", options=single)),
    }


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


@pytest.mark.parametrize("field", KEY_FIELDS)
def test_a_request_differing_in_any_one_key_field_is_rendered_and_an_identical_one_is_cached(pipe, pipelines, field):
    first_pipe, second_pipe = pipelines.get(field, (pipe, pipe))
    second_request = REQUEST | OTHER_REQUEST.get(field, {})
    cache = CellCache()
    first = compare(first_pipe, cache=cache, **REQUEST)
    second = compare(second_pipe, cache=cache, **second_request)
    differing = {name for name in KEY_FIELDS if first.metadata[name] != second.metadata[name]}
    assert differing == {field}  # the two requests differ in this field only
    assert "cached" not in second.metadata["rows"][0]["cells"][0]
    fresh = compare(second_pipe, **second_request)  # no cache
    (skip,) = second_request["skips"]
    assert np.array_equal(pixels(second.images[skip]), pixels(fresh.images[skip]))
    again = compare(second_pipe, cache=cache, **second_request)
    assert again.metadata["rows"][0]["cells"][0].get("cached") is True
    assert np.array_equal(pixels(again.images[skip]), pixels(fresh.images[skip]))
