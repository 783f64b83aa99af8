"""Batched cells equal cells rendered alone; the same seed gives the same images; metadata says what was done."""

import json

import numpy as np
import pytest

from clipskip import Comparison, compare
from clipskip.request import MAX_SEED
from tests.conftest import TINY


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


@pytest.mark.parametrize("scheduler", [None, "Euler a", "DDIM"])
def test_each_batched_cell_equals_the_cell_rendered_alone(pipe, scheduler):
    settings = {"negative_prompt": "blurry", "seed": 42, "scheduler": scheduler, **TINY, "steps": 3}
    together = compare(pipe, "a red fox in the snow", skips=[1, 2, 3, 4], **settings)
    for skip, image in together.images.items():
        alone = compare(pipe, "a red fox in the snow", skips=[skip], **settings).images[skip]
        assert np.abs(pixels(image) - pixels(alone)).max() <= 2  # 2/255 per pixel


def test_same_seed_same_images_and_different_skips_different_images(pipe):
    first = compare(pipe, "a castle at sunset", seed=7, skips=[1, 2, 3], **TINY)
    again = compare(pipe, "a castle at sunset", seed=7, skips=[1, 2, 3], **TINY)
    for skip in (1, 2, 3):
        assert np.array_equal(pixels(first.images[skip]), pixels(again.images[skip]))
    assert not np.array_equal(pixels(first.images[1]), pixels(first.images[2]))
    assert not np.array_equal(pixels(first.images[2]), pixels(first.images[3]))
    other_seed = compare(pipe, "a castle at sunset", seed=8, skips=[1], **TINY)
    assert not np.array_equal(pixels(first.images[1]), pixels(other_seed.images[1]))


def test_result_keeps_the_order_asked_and_sizes(pipe):
    result = compare(pipe, "an owl", seed=1, skips=[3, 1, 2], steps=1, width=64, height=128)
    assert isinstance(result, Comparison)
    assert list(result.images) == [3, 1, 2]
    assert {image.size for image in result.images.values()} == {(64, 128)}
    assert [cell["skip"] for cell in result.metadata["cells"]] == [3, 1, 2]


def test_native_size_is_the_default(pipe):
    result = compare(pipe, "an owl", seed=1, skips=[1], steps=1)
    assert result.images[1].size == (256, 256)
    assert (result.metadata["width"], result.metadata["height"]) == (256, 256)


def test_random_seed_is_drawn_recorded_and_reproduces(pipe):
    drawn = compare(pipe, "a lake", seed=-1, skips=[2], **TINY)
    seed = drawn.metadata["seed"]
    assert 0 <= seed <= MAX_SEED and drawn.metadata["seed_requested"] == -1
    again = compare(pipe, "a lake", seed=seed, skips=[2], **TINY)
    assert np.array_equal(pixels(drawn.images[2]), pixels(again.images[2]))


def test_metadata_has_every_setting_and_survives_json(pipe):
    result = compare(
        pipe, "a lake", negative_prompt="fog", seed=5, skips=[1, 2], guidance_scale=5, scheduler="Euler", **TINY
    )
    metadata = result.metadata
    assert json.loads(json.dumps(metadata)) == metadata
    assert {k: metadata[k] for k in ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "sampler")} == {
        "prompt": "a lake",
        "negative_prompt": "fog",
        "seed": 5,
        "steps": 2,
        "guidance_scale": 5.0,
        "sampler": "Euler",
    }
    assert (metadata["model"], metadata["width"], metadata["height"], metadata["skips"]) == (
        "embedded",
        64,
        64,
        [1, 2],
    )
    assert metadata["cells"][1] == {
        "skip": 2,
        "layer": 11,
        "layers": 12,
        "final_norm": True,
        "comfyui": -2,
        "diffusers_clip_skip": 1,
    }
    assert set(metadata["versions"]) == {"torch", "diffusers", "transformers"}


def test_progress_is_reported_every_step(pipe):
    steps = []
    compare(
        pipe, "a lake", seed=5, skips=[1, 2], steps=4, width=64, height=64, progress=lambda i, n: steps.append((i, n))
    )
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_the_shared_pipeline_keeps_its_scheduler(pipe):
    before = pipe.scheduler
    config = dict(before.config)
    compare(pipe, "a lake", seed=5, skips=[1], scheduler="Euler a", **TINY)
    assert pipe.scheduler is before and dict(pipe.scheduler.config) == config
    assert before.num_inference_steps is None  # never set_timesteps on the shared one


def test_long_prompt_warns_and_the_warning_reaches_metadata(pipe):
    result = compare(pipe, "castle " * 100, seed=1, skips=[1], **TINY)
    assert len(result.warnings) == 1 and "77-token window" in result.warnings[0]
    assert result.metadata["warnings"] == result.warnings


def test_bad_input_raises_before_any_work(pipe):
    with pytest.raises(ValueError, match="width must be a multiple of 8"):
        compare(pipe, "a lake", seed=1, width=100)
