"""Batched cells equal cells rendered alone; the same seed gives the same images; metadata says what was done."""

import json

import numpy as np
import pytest
import torch

from clipskip import Comparison, compare, comparison
from clipskip.comparison import BLOCKED, OutOfMemory, Stopped, cell_bytes, cells_that_fit
from clipskip.encoding import encode
from clipskip.loading import LoadOptions, free_device_bytes, load_pipeline
from clipskip.request import MAX_SEED
from tests import tiny_models
from tests.conftest import TINY, spy_on_calls


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
    assert [column["skip"] for column in result.metadata["columns"]] == [3, 1, 2]
    assert [cell["skip"] for cell in result.metadata["rows"][0]["cells"]] == [3, 1, 2]


def test_native_size_is_the_default(pipe):
    result = compare(pipe, "an owl", seed=1, skips=[1], steps=1)
    assert result.images[1].size == (64, 64)
    assert (result.metadata["width"], result.metadata["height"]) == (64, 64)


@pytest.mark.parametrize("seed", [-1, [-1, -1, -1]], ids=["one-random-seed", "three-random-rows"])
def test_each_rows_recorded_random_seed_renders_that_rows_images_alone(pipe, seed):
    settings = {"negative_prompt": "blurry", "skips": [1, 2], **TINY}
    drawn = compare(pipe, "a lake", seed=seed, **settings)
    rows = drawn.metadata["rows"]
    recorded = [row["seed"] for row in rows]
    assert len(rows) == (len(seed) if isinstance(seed, list) else 1)
    assert [row["seed_requested"] for row in rows] == [-1] * len(rows)
    assert len(set(recorded)) == len(rows)  # each row draws its own (a repeat has odds of about 1 in 10⁹)
    assert all(0 <= used <= MAX_SEED for used in recorded)
    assert drawn.metadata["seed"] == recorded[0] and [row.seed for row in drawn.rows] == recorded
    for row, used in zip(drawn.rows, recorded, strict=True):
        alone = compare(pipe, "a lake", seed=used, **settings)
        for skip in (1, 2):
            assert np.abs(pixels(row.images[skip]) - pixels(alone.images[skip])).max() <= 2  # batched vs alone


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
    assert metadata["columns"][1] == {
        "skip": 2,
        "native": False,
        "hidden_states": -2,
        "encoders": [{"encoder": "text_encoder", "layer": 11, "layers": 12}],
        "final_norm": True,
        "equivalents": {
            "AUTOMATIC1111": "2",
            "Forge": "2",
            "ComfyUI": "-2",
            "diffusers": "clip_skip=1",
            "InvokeAI": "1",
            "SD.Next": "2",
        },
    }
    assert (metadata["family"], metadata["negative_conditioning"]) == ("SD 1.x", "the same layer as the prompt")
    assert set(metadata["versions"]) == {"torch", "diffusers", "transformers", "gradio"}
    assert len(metadata["weights_sha256"]) == 64


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


def test_a_long_prompt_is_cut_with_a_warning_in_plain_and_chunked_in_a1111(pipe):
    result = compare(pipe, "castle " * 100, seed=1, skips=[1], prompt_syntax="plain", **TINY)
    assert len(result.warnings) == 1 and "77-token window" in result.warnings[0]
    assert result.metadata["warnings"] == result.warnings
    chunked = compare(pipe, "castle " * 100, seed=1, skips=[1], **TINY)
    assert chunked.warnings == [] and chunked.metadata["conditioning_chunks"]["prompts"] == [2]


def test_bad_input_raises_before_any_work(pipe, monkeypatch):
    encoded = []
    handle = pipe.text_encoder.register_forward_hook(lambda module, args, output: encoded.append(1))
    seen = spy_on_calls(monkeypatch, type(pipe))
    try:
        with pytest.raises(ValueError, match="width must be a multiple of 8"):
            compare(pipe, "a lake", seed=1, width=100)
    finally:
        handle.remove()
    assert encoded == [] and seen == {}  # neither the text encoder nor the denoiser ran


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_every_family_renders_a_grid_and_batched_equals_alone(saved, family):
    model = load_pipeline(str(saved[family]), device="cpu")
    settings = {"negative_prompt": "blurry", "seed": 3, "scheduler": "Euler a", **TINY}
    together = compare(model, "a red fox", skips=[3, 1, 2], **settings)
    assert together.grid.width > 3 * 64 and list(together.images) == [3, 1, 2]
    assert together.metadata["family"] == {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}[family]
    for skip in (3, 1, 2):
        alone = compare(model, "a red fox", skips=[skip], **settings).images[skip]
        assert np.abs(pixels(together.images[skip]) - pixels(alone)).max() <= 2
    assert not np.array_equal(pixels(together.images[1]), pixels(together.images[2]))


def test_sdxl_negative_prompt_uses_the_same_layer_and_pooled_stays(saved, monkeypatch):
    sdxl = load_pipeline(str(saved["sdxl"]), device="cpu")
    seen = spy_on_calls(monkeypatch, type(sdxl))
    result = compare(sdxl, "a red fox", negative_prompt="blurry", seed=1, skips=[1, 3], **TINY)
    with torch.no_grad():
        negative, positive = encode(sdxl, "blurry", [1, 3]), encode(sdxl, "a red fox", [1, 3])
    torch.testing.assert_close(
        seen["negative_prompt_embeds"], torch.cat([negative.embeddings[1], negative.embeddings[3]])
    )
    torch.testing.assert_close(seen["pooled_prompt_embeds"], torch.cat([positive.pooled] * 2))
    torch.testing.assert_close(seen["negative_pooled_prompt_embeds"], torch.cat([negative.pooled] * 2))
    assert result.metadata["negative_conditioning"] == "the same layer as the prompt"


def test_sdxl_empty_negative_prompt_is_zeros_as_the_checkpoint_asks(saved, monkeypatch):
    sdxl = load_pipeline(str(saved["sdxl"]), device="cpu")
    assert sdxl.config.force_zeros_for_empty_prompt
    seen = spy_on_calls(monkeypatch, type(sdxl))
    result = compare(sdxl, "a red fox", seed=1, skips=[2], **TINY)
    assert not seen["negative_prompt_embeds"].any() and not seen["negative_pooled_prompt_embeds"].any()
    assert result.metadata["negative_conditioning"].startswith("zeros")


def test_flagged_cells_are_shown_as_blocked_with_the_reason(tmp_path):
    tiny_models.sd1_with_safety_checker().save_pretrained(tmp_path / "safe")
    guarded = load_pipeline(str(tmp_path / "safe"), device="cpu")
    result = compare(guarded, "a red fox", seed=1, skips=[1, 2], **TINY)
    assert [cell["blocked"] for cell in result.metadata["rows"][0]["cells"]] == [BLOCKED, BLOCKED]
    for image in result.images.values():
        assert pixels(image).max() > 0 and pixels(image).std() > 0  # a labelled stand-in, not a black square
    unguarded = load_pipeline(str(tmp_path / "safe"), device="cpu", options=LoadOptions(safety_checker=False))
    assert "blocked" not in compare(unguarded, "a red fox", seed=1, skips=[1], **TINY).metadata["rows"][0]["cells"][0]


def test_tiled_vae_decoding_is_recorded_past_the_native_size(pipe):
    assert compare(pipe, "a lake", seed=1, skips=[1], steps=1, width=64, height=64).metadata["vae_decode"] == "whole"
    assert compare(pipe, "a lake", seed=1, skips=[1], steps=1, width=72, height=64).metadata["vae_decode"] == "tiled"


def test_rows_of_seeds_equal_rows_rendered_one_by_one(pipe):
    settings = {"negative_prompt": "blurry", "skips": [1, 3], "scheduler": "Euler a", **TINY}
    rows = compare(pipe, "a red fox", seed=[21, 22], **settings)
    assert [row.seed for row in rows.rows] == [21, 22] and rows.images is rows.rows[0].images
    for row in rows.rows:
        alone = compare(pipe, "a red fox", seed=row.seed, **settings)
        for skip in (1, 3):
            assert np.abs(pixels(row.images[skip]) - pixels(alone.images[skip])).max() <= 2
    assert not np.array_equal(pixels(rows.rows[0].images[1]), pixels(rows.rows[1].images[1]))
    assert rows.grid.height > compare(pipe, "a red fox", seed=21, **settings).grid.height  # two rows of cells


def test_rows_of_prompts_equal_prompts_rendered_one_by_one(pipe):
    settings = {"seed": 8, "skips": [2, 1], **TINY}
    rows = compare(pipe, ["a red fox", "a castle at dusk"], **settings)
    assert [row.prompt for row in rows.rows] == ["a red fox", "a castle at dusk"]
    assert rows.metadata["rows_by"] == "prompt" and len(rows.metadata["embedding_similarity"]) == 2
    for row in rows.rows:
        alone = compare(pipe, row.prompt, **settings)
        for skip in (2, 1):
            assert np.abs(pixels(row.images[skip]) - pixels(alone.images[skip])).max() <= 2


def test_every_cell_is_measured_against_its_rows_reference(pipe):
    result = compare(pipe, "a red fox", seed=[1, 2], skips=[1, 2, 3], reference=2, **TINY)
    assert result.metadata["reference_skip"] == 2
    for row in result.metadata["rows"]:
        cells = {cell["skip"]: cell for cell in row["cells"]}
        assert (cells[2]["mean_abs_diff"], cells[2]["ssim"]) == (0.0, 1.0)
        assert cells[1]["mean_abs_diff"] > 0 and cells[1]["ssim"] < 1
    assert result.difference_grid.size[0] == result.grid.size[0]


def test_the_metadata_keeps_each_metric_to_its_digits_as_its_definition_gives_it(pipe):
    """SSIM as scikit-image computes it in float64 (the app calls it in float32: within a unit of the 6th digit), and
    the mean absolute difference in exact integers."""
    from skimage.metrics import structural_similarity

    result = compare(pipe, "a red fox", seed=[1, 2], skips=[1, 2, 3], reference=2, **TINY)
    for row, meta in zip(result.rows, result.metadata["rows"], strict=True):
        reference = pixels(row.images[2])
        for cell in meta["cells"]:
            image = pixels(row.images[cell["skip"]])
            ssim = structural_similarity(image.astype(float), reference.astype(float), channel_axis=2, data_range=255)
            assert abs(cell["ssim"] - ssim) <= 1.5e-6
            assert cell["mean_abs_diff"] == round(int(np.abs(image - reference).sum()) / image.size, 4)


def test_grids_are_drawn_once_and_only_when_read(pipe, monkeypatch):
    drawn = []
    render = comparison.render_grid
    monkeypatch.setattr(comparison, "render_grid", lambda *a, **k: drawn.append(a[2][0]) or render(*a, **k))
    result = compare(pipe, "a red fox", seed=1, skips=[1, 2], **TINY)
    assert drawn == [] and result.images[2].size == (64, 64)  # the images alone cost no drawing
    grid, heat = result.grid, result.difference_grid
    assert result.grid is grid and result.difference_grid is heat and len(drawn) == 2
    assert drawn[1].startswith("Difference from CLIP skip 1") and grid.size[0] == heat.size[0]


def identity_layer(model, index: int):
    """Make one transformer layer pass its input through unchanged: its two residual branches output zero."""
    layer = model.text_encoder.encoder.layers[index]
    with torch.no_grad():
        for linear in (layer.self_attn.out_proj, layer.mlp.fc2):
            linear.weight.zero_()
            linear.bias.zero_()
    return model


def test_identical_conditioning_is_denoised_once_and_labelled(monkeypatch):
    model = identity_layer(tiny_models.sd1(), 4)  # 6 layers: the 5th copies the 4th, so skips 2 and 3 agree
    seen = spy_on_calls(monkeypatch, type(model))
    result = compare(model, "a red fox", negative_prompt="blurry", seed=[1, 2], skips=[1, 2, 3], **TINY)
    assert seen["prompt_embeds"].shape[0] == 4  # 2 rows x 2 distinct skips, not 6
    for row, meta in zip(result.rows, result.metadata["rows"], strict=True):
        assert row.images[3] is row.images[2]
        assert [cell.get("same_as") for cell in meta["cells"]] == [None, None, 2]
    cosine = result.metadata["embedding_similarity"][0]["cosine"]
    assert cosine[1] == cosine[2] and cosine[0] == pytest.approx(1.0)


def test_embedding_similarity_covers_every_layer_over_real_tokens_only(pipe):
    result = compare(pipe, "a red fox", seed=1, skips=[2], **TINY)
    entry = result.metadata["embedding_similarity"][0]
    assert entry["reference_skip"] == 1 and len(entry["cosine"]) == 12  # all layers, not only the skips asked
    with torch.no_grad():
        encoding = encode(pipe, "a red fox", range(1, 13))
    real = slice(1, 1 + len(pipe.tokenizer("a red fox", add_special_tokens=False).input_ids) + 1)  # words and end
    for skip in (1, 5, 12):
        expected = torch.nn.functional.cosine_similarity(
            encoding.embeddings[skip][0, real], encoding.embeddings[1][0, real], dim=-1
        ).mean()
        assert entry["cosine"][skip - 1] == pytest.approx(expected.item(), abs=1e-6)
    assert entry["cosine"][0] == pytest.approx(1.0) and entry["cosine"][11] < entry["cosine"][1]


def batch_sizes_and_faults(monkeypatch, pipeline_class, fails_above: int) -> list:
    """Record every denoiser call's batch size; calls with more cells than `fails_above` run out of memory."""
    sizes = []
    run = pipeline_class.__call__

    def limited(self, *args, **kwargs):
        sizes.append(kwargs["prompt_embeds"].shape[0])
        if sizes[-1] > fails_above:
            raise MemoryError("injected: out of memory")
        return run(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", limited)
    return sizes


def test_chunked_renders_equal_one_batch(pipe):
    settings = {"negative_prompt": "blurry", "seed": [3, 4], "skips": [1, 2, 3], "scheduler": "Euler a", **TINY}
    whole = compare(pipe, "a red fox", **settings)
    chunked = compare(pipe, "a red fox", max_batch=2, **settings)
    for row, other in zip(whole.rows, chunked.rows, strict=True):
        for skip in (1, 2, 3):
            assert np.abs(pixels(row.images[skip]) - pixels(other.images[skip])).max() <= 2


def test_batch_bound_arithmetic():
    per_cell = cell_bytes(64, 64, 320, 2, guided=True)  # SD 1.5 at 512×512 in float16, with CFG
    assert per_cell == comparison.ACTIVATION_BYTES_FACTOR * 64 * 64 * 320 * 2 * 2
    assert cell_bytes(64, 64, 320, 2, guided=False) * 2 == per_cell
    assert cell_bytes(128, 128, 320, 2, guided=True) == 4 * per_cell  # activations grow with the area
    assert cells_that_fit(10 * per_cell, per_cell, cells=4) == 4  # plenty: one batch
    assert cells_that_fit(4 * per_cell, per_cell, cells=8) == int(4 * comparison.HEADROOM)  # a share of the free
    assert cells_that_fit(per_cell // 2, per_cell, cells=8) == 1  # never less than one cell


def test_free_memory_bounds_the_batch_with_the_same_images_and_says_so(pipe, monkeypatch):
    settings = {"seed": 6, "skips": [1, 2, 3, 4], **TINY}
    whole = compare(pipe, "a red fox", **settings)
    assert "denoise_chunks" not in whole.metadata  # one batch: nothing to record
    latent = TINY["width"] // pipe.vae_scale_factor
    per_cell = cell_bytes(latent, latent, pipe.unet.config.block_out_channels[0], 4, guided=True)
    monkeypatch.setattr(comparison, "free_device_bytes", lambda device: int(2.5 * per_cell / comparison.HEADROOM))
    sizes = batch_sizes_and_faults(monkeypatch, type(pipe), fails_above=4)
    chunked = compare(pipe, "a red fox", **settings)
    assert sizes == [2, 2]
    assert chunked.metadata["denoise_chunks"] == {"batch_sizes": [2, 2], "bound": 2, "bound_by": "free CUDA memory"}
    for skip in (1, 2, 3, 4):
        assert np.abs(pixels(whole.images[skip]) - pixels(chunked.images[skip])).max() <= 2


def test_out_of_memory_releases_memory_then_retries_in_smaller_chunks_with_the_same_images(pipe, monkeypatch):
    settings = {"seed": 5, "skips": [1, 2, 3, 4], **TINY}
    expected = compare(pipe, "a red fox", **settings)
    calls = batch_sizes_and_faults(monkeypatch, type(pipe), fails_above=1)
    monkeypatch.setattr(comparison, "free_memory", lambda: calls.append("free"))
    steps = []
    result = compare(pipe, "a red fox", progress=lambda done, total: steps.append(done), **settings)
    assert calls == [4, "free", 2, "free", 1, 1, 1, 1]  # released after each failure, halved until it fit
    assert result.metadata["denoise_chunks"] == {"batch_sizes": [1, 1, 1, 1], "halved_after_out_of_memory": 2}
    for skip in (1, 2, 3, 4):
        assert np.abs(pixels(result.images[skip]) - pixels(expected.images[skip])).max() <= 2
    assert steps[-1] == pytest.approx(2) and steps == sorted(steps)  # progress still ends at the last step


def test_when_one_cell_does_not_fit_the_error_says_what_to_shrink_and_the_next_render_works(pipe, monkeypatch):
    calls = batch_sizes_and_faults(monkeypatch, type(pipe), fails_above=0)
    monkeypatch.setattr(comparison, "free_memory", lambda: calls.append("free"))
    with pytest.raises(OutOfMemory, match=r"not enough memory for even one 64×64 image on cpu; make the width"):
        compare(pipe, "a red fox", seed=1, skips=[1, 2], **TINY)
    assert calls == [2, "free", 1, "free"]  # released before giving up too, for the next request
    monkeypatch.undo()
    assert len(compare(pipe, "a red fox", seed=1, skips=[1, 2], **TINY).images) == 2


def test_stop_ends_the_render_within_one_step(pipe):
    asked = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) >= 2

    with pytest.raises(Stopped):
        compare(pipe, "a red fox", seed=1, skips=[1, 2], steps=10, width=64, height=64, should_stop=stop_after_two)
    assert len(asked) == 2  # asked after each step; the second answer stopped it


@pytest.fixture(scope="module")
def cuda_pipe():
    """The embedded pipeline on CUDA in float16, as the app runs it there."""
    return load_pipeline("embedded", device="cuda")


def largest_difference(first, second) -> tuple[int, float]:
    differences = [np.abs(pixels(first[skip]) - pixels(second[skip])) for skip in first]
    return max(int(d.max()) for d in differences), max(float(d.mean()) for d in differences)


@pytest.mark.gpu
def test_fp16_cuda_batched_cells_equal_cells_rendered_alone(cuda_pipe):
    assert cuda_pipe.unet.dtype is torch.float16
    assert cuda_pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    settings = {"negative_prompt": "blurry", "seed": 42, "scheduler": "Euler a", "steps": 4, "width": 256}
    together = compare(cuda_pipe, "a red fox in the snow", skips=[1, 2, 3, 4], height=256, **settings)
    alone = {
        skip: compare(cuda_pipe, "a red fox in the snow", skips=[skip], height=256, **settings).images[skip]
        for skip in (1, 2, 3, 4)
    }
    largest, mean = largest_difference(together.images, alone)
    print(f"fp16 CUDA, batched vs alone: max {largest}/255, mean {mean:.4f}")
    assert largest <= 3 and mean <= 0.5  # float16 kernels differ a little with the batch size


@pytest.mark.gpu
def test_cuda_free_memory_sets_the_batch_bound_with_the_same_images(cuda_pipe, monkeypatch):
    free = free_device_bytes(torch.device("cuda"))
    assert 0 < free <= torch.cuda.mem_get_info()[1]
    settings = {"seed": 9, "skips": [1, 2, 3, 4], "steps": 4, "width": 256, "height": 256}
    whole = compare(cuda_pipe, "a red fox", **settings)
    assert "denoise_chunks" not in whole.metadata  # a whole H100 holds four small cells at once
    per_cell = cell_bytes(32, 32, cuda_pipe.unet.config.block_out_channels[0], 2, guided=True)
    monkeypatch.setattr(comparison, "free_device_bytes", lambda device: int(1.5 * per_cell / comparison.HEADROOM))
    sizes = batch_sizes_and_faults(monkeypatch, type(cuda_pipe), fails_above=4)
    chunked = compare(cuda_pipe, "a red fox", **settings)
    assert sizes == [1, 1, 1, 1]
    assert chunked.metadata["denoise_chunks"]["bound_by"] == "free CUDA memory"
    largest, mean = largest_difference(whole.images, chunked.images)
    print(f"fp16 CUDA, one batch vs chunks of one: max {largest}/255, mean {mean:.4f}")
    assert largest <= 3 and mean <= 0.5


SD3_SETTINGS = {"negative_prompt": "blurry", "seed": 3, "prompt_syntax": "plain", "scheduler": "Euler", **TINY}


def test_sd3_each_batched_cell_equals_the_cell_rendered_alone_and_says_what_it_used(sd3):
    together = compare(sd3, "a red circle", skips=[3, 1], **SD3_SETTINGS)
    assert list(together.images) == [3, 1] and together.images[1].size == (64, 64)  # the transformer's native size
    for skip in (3, 1):
        alone = compare(sd3, "a red circle", skips=[skip], **SD3_SETTINGS).images[skip]
        assert np.abs(pixels(together.images[skip]) - pixels(alone)).max() <= 2
    assert not np.array_equal(pixels(together.images[1]), pixels(together.images[3]))
    m = together.metadata
    assert (m["family"], m["sampler"], m["text_encoder_layers"], m["dtype"]) == ("SD 3", "Euler", 5, "float32")
    assert m["columns"][1]["t5"] == "unchanged" and m["columns"][1]["equivalents"]["ComfyUI"] == "-1"
    assert m["weights_sha256"] is None or len(m["weights_sha256"]) == 64
    assert json.loads(json.dumps(m)) == m


def test_sd3_negative_prompt_takes_the_same_clip_layer_with_t5_and_pooled_unchanged(sd3, monkeypatch):
    seen = spy_on_calls(monkeypatch, type(sd3))
    compare(sd3, "a red circle", skips=[1, 3], **SD3_SETTINGS)
    with torch.no_grad():
        negative, positive = encode(sd3, "blurry", [1, 3]), encode(sd3, "a red circle", [1, 3])
    for name, encoding in (("prompt_embeds", positive), ("negative_prompt_embeds", negative)):
        torch.testing.assert_close(seen[name], torch.cat([encoding.conditioning(1), encoding.conditioning(3)]))
        assert torch.equal(seen[name][0, 77:], seen[name][1, 77:])  # T5's part: the same at every skip
        assert not seen[name][:, :77, 32 + 48 :].any()  # the CLIP part zero-padded to T5's width
    torch.testing.assert_close(seen["pooled_prompt_embeds"], torch.cat([positive.pooled] * 2))
    torch.testing.assert_close(seen["negative_pooled_prompt_embeds"], torch.cat([negative.pooled] * 2))


def test_sd3_without_t5_renders_with_zeros_in_its_place_and_says_so(sd3, monkeypatch):
    import copy

    without_t5 = copy.copy(sd3)
    without_t5.text_encoder_3 = without_t5.tokenizer_3 = None
    seen = spy_on_calls(monkeypatch, type(sd3))
    result = compare(without_t5, "a red circle", skips=[2], **SD3_SETTINGS)
    assert seen["prompt_embeds"].shape == (1, 77 + 256, 96) and not seen["prompt_embeds"][:, 77:].any()
    assert result.metadata["columns"][0]["t5"] == "absent: zeros, as diffusers"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"scheduler": "DDIM"}, "sampler 'DDIM' does not work with this model's flow-matching"),
        ({"prompt_syntax": "a1111"}, "prompt_syntax 'a1111' is not offered for SD 3 models"),
    ],
)
def test_sd3_refuses_samplers_and_syntaxes_it_cannot_use_before_any_work(sd3, monkeypatch, setting, message):
    seen = spy_on_calls(monkeypatch, type(sd3))
    with pytest.raises(ValueError, match=message):
        compare(sd3, "a red circle", skips=[2], **SD3_SETTINGS | setting)
    assert seen == {}


def test_sd3_sizes_must_fit_its_transformers_patches_before_any_work(sd3, monkeypatch):
    import copy

    as_large = copy.copy(sd3)
    as_large.vae_scale_factor = 8  # a real SD 3's VAE: 8 × its patch size 2 = 16 pixels a patch
    seen = spy_on_calls(monkeypatch, type(sd3))
    with pytest.raises(ValueError, match="width and height must be multiples of 16 for this SD 3 model .*not 72×64"):
        compare(as_large, "a red circle", skips=[2], **SD3_SETTINGS | {"width": 72})
    assert seen == {}


def test_sd3_memory_bound_counts_the_transformers_width_per_latent_pixel(sd3, pipe):
    # 4 heads of 8 over 2×2-pixel patches: 32 / 4 = 8 channels per latent pixel
    assert comparison.denoiser_channels(sd3.transformer) == 8
    assert comparison.denoiser_channels(pipe.unet) == pipe.unet.config.block_out_channels[0]  # a UNet: unchanged
