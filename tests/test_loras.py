"""LoRAs: tiny ones made here with PEFT for the tiny SD 1.x and SDXL pipelines, saved in diffusers' layout and in
Kohya's (renamed here from the definition of that layout), loaded, applied at 0, 0.5 and 1, in rows, concurrently."""

import copy
import hashlib
import struct
import threading

import numpy as np
import pytest
import torch
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from clipskip import loras
from clipskip.comparison import Stopped, compare
from clipskip.encoding import encode
from clipskip.families import SD1
from clipskip.formats import read_settings
from clipskip.loras import MAX_TAGS, LoraError, load_loras
from clipskip.outputs import cell_parameters
from tests import tiny_models

TINY = {"steps": 2, "width": 64, "height": 64, "skips": [1], "seed": 7}
RANK = 4
ALPHA = 2.0  # not the rank: a scale of 0.5, which Kohya files carry as `.alpha`
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
TEXT_ENCODERS = {"text_encoder": "lora_te", "text_encoder_2": "lora_te2"}


def peft_weights(family: str) -> dict[str, dict[str, torch.Tensor]]:
    """{component: PEFT state dict (module.lora_A.weight, module.lora_B.weight)} of random LoRAs made with PEFT on a
    throwaway copy of the family's tiny pipeline."""
    scratch = getattr(tiny_models, family)()
    torch.manual_seed(1)
    weights = {}
    for component in ("unet", *TEXT_ENCODERS):
        module = getattr(scratch, component, None)
        if module is None:
            continue
        targets = UNET_TARGETS if component == "unet" else TEXT_TARGETS
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets, init_lora_weights=False)
        inject_adapter_in_model(config, module, "made")
        weights[component] = {k: v * 4 for k, v in get_peft_model_state_dict(module, adapter_name="made").items()}
    return weights


def kohya_layout(weights, sdxl: bool) -> dict[str, torch.Tensor]:
    """Kohya's layout, from its definition: `lora_unet_` / `lora_te_` (SDXL: `lora_te1_`, `lora_te2_`) + the module
    path with dots as underscores (text encoders under `text_model`), then `.lora_down.weight` (A), `.lora_up.weight`
    (B) and `.alpha`."""
    prefixes = {
        "unet": "lora_unet_",
        "text_encoder": "lora_te1_" if sdxl else "lora_te_",
        "text_encoder_2": "lora_te2_",
    }
    tensors = {}
    for component, part in weights.items():
        for key, value in part.items():
            module, kind = key.rsplit(".lora_", 1)
            unflattened = component == "unet" or module.startswith("text_model.")  # CLIPTextModelWithProjection
            path = module if unflattened else f"text_model.{module}"
            name = prefixes[component] + path.replace(".", "_")
            tensors[f"{name}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = value.contiguous()
            tensors[f"{name}.alpha"] = torch.tensor(ALPHA)
    return tensors


def save(path, tensors, metadata=None):
    save_file(tensors, str(path), metadata=metadata)
    return path


def diffusers_file(family: str, folder, weights):
    """diffusers' own writer (`save_lora_weights`, as its training scripts call it), with each module's LoraConfig."""
    targets = {"unet": UNET_TARGETS, "text_encoder": TEXT_TARGETS, "text_encoder_2": TEXT_TARGETS}
    layers, configs = {}, {}
    for component, part in weights.items():
        layers[f"{component}_lora_layers"] = convert_state_dict_to_diffusers(part)
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets[component]).to_dict()
        configs[f"{component}_lora_adapter_metadata"] = config
    getattr(tiny_models, family)().save_lora_weights(folder, **layers, **configs, weight_name="detail.safetensors")
    return folder / "detail.safetensors"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("loras")
    made = {}
    for family in ("sd1", "sdxl"):
        weights = peft_weights(family)
        made[family] = weights
        (root / family).mkdir()
        made[f"{family}.diffusers"] = diffusers_file(family, root / family, weights)
        made[f"{family}.kohya"] = save(root / family / "kohya.safetensors", kohya_layout(weights, family == "sdxl"))
    return made


def loaded(family: str, *paths):
    pipe = getattr(tiny_models, family)()
    pipe.clipskip_loras = load_loras(paths, pipe)
    return pipe


@pytest.fixture(scope="module")
def pipes(files) -> dict:
    """Per family: a tiny pipeline holding both files' LoRAs ("detail", diffusers' layout, and "kohya"), and one
    without any ("sd1.plain")."""
    made = {
        family: loaded(family, files[f"{family}.diffusers"], files[f"{family}.kohya"]) for family in ("sd1", "sdxl")
    }
    return made | {f"{family}.plain": getattr(tiny_models, family)() for family in ("sd1", "sdxl")}


@pytest.fixture(scope="module")
def sd1(pipes):
    return pipes["sd1"]


@pytest.fixture(scope="module")
def plain_sd1(pipes):
    return pipes["sd1.plain"]


@pytest.fixture(scope="module")
def solo(sd1, plain_sd1):
    """ "a cat" without the LoRA (on a pipeline that has none) and with it at 1, each rendered alone."""
    return {"off": compare(plain_sd1, "a cat", **TINY), "on": compare(sd1, "a cat <lora:detail:1>", **TINY)}


def pixels(result, row: int = 0) -> list[np.ndarray]:
    return [np.asarray(image, dtype=np.int16) for image in result.rows[row].images.values()]


def same(a, b) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(pixels(a) if not isinstance(a, list) else a, pixels(b), strict=True)
    )


def adapters_off(pipe) -> bool:
    return all(m.disable_adapters for m in pipe.unet.modules() if isinstance(m, BaseTunerLayer))


def test_a_pipeline_without_loras_has_no_peft_layers_and_no_lock(pipe):
    assert not any(isinstance(m, BaseTunerLayer) for m in pipe.unet.modules())
    assert not hasattr(pipe, "clipskip_lora_lock") and pipe.clipskip_loras == {}


def test_weight_0_is_no_lora_and_0_5_and_1_change_the_images(sd1, solo):
    assert same(compare(sd1, "a cat <lora:detail:0>", loras={"detail": 1}, **TINY), solo["off"])  # the tag wins
    full = compare(sd1, "a cat", loras={"detail": 1}, **TINY)
    half = compare(sd1, "a cat <lora:detail:0.5>", **TINY)
    assert same(full, solo["on"]) and not same(full, solo["off"])
    assert not same(half, solo["off"]) and not same(half, full)
    assert half.metadata["rows"][0]["loras"] == {"detail": 0.5} and "lora_prompt" not in half.metadata["rows"][0]
    assert full.metadata["rows"][0]["lora_prompt"] == "a cat <lora:detail:1>"
    assert adapters_off(sd1)


def merged_encoder(plain, component: str, weights, scale: float):
    """The text encoder with W + scale·(alpha/r)·B·A written into its weights: LoRA's definition, without PEFT."""
    encoder = copy.deepcopy(getattr(plain, component))
    modules = dict(encoder.named_modules())
    with torch.no_grad():
        for key, a in weights[component].items():
            if ".lora_A." in key:
                module = key.split(".lora_A.")[0]
                b = weights[component][key.replace("lora_A", "lora_B")]
                modules[module].weight += scale * (ALPHA / RANK) * b @ a
    return encoder


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
@pytest.mark.parametrize("layout", ["diffusers", "kohya"])
def test_text_encoder_conditioning_is_the_merged_weights(files, pipes, family, layout):
    pipe, plain_pipe = pipes[family], pipes[f"{family}.plain"]
    name = files[f"{family}.{layout}"].stem
    with loras.held(pipe):
        loras.use(pipe, ((name, 0.5, 0.5),))
        with_lora = encode(pipe, "a cat", [1], torch.device("cpu"), "a1111", {})
    reference = copy.copy(plain_pipe)
    for component in TEXT_ENCODERS:
        if hasattr(reference, component):
            setattr(reference, component, merged_encoder(plain_pipe, component, files[family], 0.5))
    expected = encode(reference, "a cat", [1], torch.device("cpu"), "a1111", {})
    plain = encode(plain_pipe, "a cat", [1], torch.device("cpu"), "a1111", {})
    torch.testing.assert_close(with_lora.embeddings[1], expected.embeddings[1], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(with_lora.embeddings[1], plain.embeddings[1], atol=1e-3)
    assert adapters_off(pipe)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_the_unets_adapters_are_the_same_from_either_layout(files, pipes, family):
    """Kohya's file, converted by diffusers, gives the UNet the LoRA that diffusers' own file gives it."""
    layers = [m for m in pipes[family].unet.modules() if isinstance(m, BaseTunerLayer)]
    assert len(layers) == len(files[family]["unet"]) // 2  # every lora_A/lora_B pair, in both
    with loras.held(pipes[family]):
        loras.use(pipes[family], (("detail", 1.0, 1.0), ("kohya", 1.0, 1.0)))
        for m in layers:
            torch.testing.assert_close(m.lora_A["kohya"].weight, m.lora_A["detail"].weight)
            torch.testing.assert_close(m.lora_B["kohya"].weight, m.lora_B["detail"].weight)
            assert m.scaling["kohya"] == m.scaling["detail"] == ALPHA / RANK


def test_rows_with_and_without_a_lora_are_each_their_solo_render(sd1, files, solo):
    both = compare(sd1, ["a cat", "a cat <lora:detail:1>", "a dog"], **TINY)
    assert same(pixels(both, 0), solo["off"]) and same(pixels(both, 1), solo["on"])
    similarity = [entry["prompt"] for entry in both.metadata["embedding_similarity"]]
    assert similarity == ["a cat", "a cat <lora:detail:1>", "a dog"]  # the rows' order, whatever the batches'
    assert both.metadata["denoise_chunks"]["batch_sizes"] == [2, 1]  # the rows without the LoRA together
    assert both.metadata["denoise_chunks"]["loras"] == ["", "<lora:detail:1>"]  # in that order
    # AUTOMATIC1111's Lora hashes: sha256 of the file after its 8-byte header length and JSON header
    data = files["sd1.diffusers"].read_bytes()
    digest = hashlib.sha256(data[8 + struct.unpack("<Q", data[:8])[0] :]).hexdigest()[:12]
    assert both.metadata["loras"] == {"detail": digest}
    row = both.metadata["rows"][1]
    assert f'Lora hashes: "detail: {digest}"' in cell_parameters(both.metadata, row, 1)
    assert cell_parameters(both.metadata, row, 1).startswith("a cat <lora:detail:1>\n")
    assert "Lora hashes" not in cell_parameters(both.metadata, both.metadata["rows"][0], 1)


def test_concurrent_requests_with_and_without_the_lora_each_get_their_own(sd1, solo):
    alone = {True: solo["on"], False: solo["off"]}
    results, errors = {}, []

    def render(with_lora: bool):
        try:
            results[with_lora] = compare(sd1, "a cat <lora:detail:1>" if with_lora else "a cat", **TINY)
        except Exception as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=render, args=(flag,)) for flag in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert same(results[True], alone[True]) and same(results[False], alone[False])


def test_a_stopped_render_leaves_the_adapters_off(sd1):
    with pytest.raises(Stopped):
        compare(sd1, "a cat <lora:detail:1>", should_stop=lambda: True, **TINY | {"steps": 1})
    assert adapters_off(sd1) and not sd1.clipskip_lora_lock.locked()


def test_unknown_names_are_a_note_naming_the_loaded_ones(sd1):
    result = compare(sd1, "a cat <lora:nope:1>", steps=1, skips=[1], width=64, height=64, seed=1)
    assert any("no LoRA 'nope'; its LoRAs are detail, kohya" in warning for warning in result.warnings)
    with pytest.raises(ValueError, match="loras names 'nope'.*its LoRAs are detail, kohya"):
        compare(sd1, "a cat", loras={"nope": 1}, **TINY)


@pytest.mark.parametrize(
    ("prompt", "weights", "message"),
    [
        ("a <lora:detail:5>", None, "from -4 to 4"),
        ("a <lora:detail:nan>", None, "from -4 to 4"),
        ("a <lora:detail:x>", None, "'x' is not a weight"),
        ("a <lora:detail:1> <lora:detail:0.5>", None, "tags LoRA 'detail' twice"),
        ("a" + " <lora:detail:1>" * (MAX_TAGS + 1), None, f"at most {MAX_TAGS}"),
        ("a", {"detail": True}, "must be a number"),
        ("a", ["detail"], "loras must be a mapping"),
    ],
)
def test_hostile_weights_and_tags_are_refused(sd1, prompt, weights, message):
    with pytest.raises(ValueError, match=message):
        compare(sd1, prompt, loras=weights, **TINY)
    assert not sd1.clipskip_lora_lock.locked()


def refused(pipe, path) -> str:
    with pytest.raises(LoraError) as caught:
        load_loras([path], pipe)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_files_that_are_not_safetensors_loras_are_refused(plain_sd1, tmp_path):
    pickled = tmp_path / "style.pt"
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1)}, pickled)
    assert "refusing 'style.pt': .pt files are Python pickles" in refused(plain_sd1, pickled)
    embedding = save(tmp_path / "shiny.safetensors", {"emb_params": torch.zeros(2, 32)})
    assert "refusing 'shiny.safetensors': it holds no LoRA weights" in refused(plain_sd1, embedding)
    damaged = tmp_path / "broken.safetensors"
    damaged.write_bytes(b"\xff" * 64)
    assert "could not read LoRA 'broken.safetensors'" in refused(plain_sd1, damaged)
    assert "no such file" in refused(plain_sd1, tmp_path / "missing.safetensors")
    assert not any(isinstance(m, BaseTunerLayer) for m in plain_sd1.unet.modules())


def test_a_refused_load_leaves_the_model_as_it_was_and_broken_weights_are_refused(files, tmp_path, solo):
    from safetensors.torch import load_file

    kohya = load_file(files["sd1.kohya"])
    nan = save(tmp_path / "nan.safetensors", {k: v.fill_(float("nan")) if "up" in k else v for k, v in kohya.items()})
    renamed = {k.replace("lora_te_text_model_encoder", "lora_te_text_model_nope"): v for k, v in kohya.items()}
    misfit = save(tmp_path / "misfit.safetensors", renamed)  # its UNet part fits, its text-encoder part does not
    pipe = tiny_models.sd1()
    assert "tensors hold NaN or infinite values" in refused(pipe, nan)
    with pytest.raises(LoraError):
        load_loras([files["sd1.diffusers"], misfit], pipe)  # the first loads, the second is refused: neither stays
    assert not any(isinstance(m, BaseTunerLayer) for c in (pipe.unet, pipe.text_encoder) for m in c.modules())
    assert same(compare(pipe, "a cat", **TINY), solo["off"])


def test_a_lora_whose_unet_layers_only_partly_match_is_refused_not_half_applied(files, tmp_path):
    from safetensors.torch import load_file

    kohya = load_file(files["sd1.kohya"])
    layer = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    assert f"{layer}.lora_down.weight" in kohya
    extra = {k.replace("down_blocks_0", "down_blocks_7"): v.clone() for k, v in kohya.items() if k.startswith(layer)}
    assert len(extra) == 3  # down, up, alpha: a layer of an 8th down block, which no UNet has
    layers = sum(k.startswith("lora_unet_") and k.endswith("lora_down.weight") for k in kohya)
    partial = save(tmp_path / "partial.safetensors", kohya | extra)
    pipe = tiny_models.sd1()
    message = refused(pipe, partial)
    assert (
        f"refusing 'partial.safetensors': 1 of its {layers + 1} UNet layers match no layer of this model's UNet"
        in message
    )
    assert "(['down_blocks.7." in message  # the layer, named
    assert not any(isinstance(m, BaseTunerLayer) for c in (pipe.unet, pipe.text_encoder) for m in c.modules())
    assert load_loras([files["sd1.kohya"]], pipe)["kohya"].components == ("unet", "text_encoder")  # the whole fits


def test_a_diffusers_file_that_mixes_key_layouts_loads_every_layer(tmp_path):
    """diffusers' `convert_state_dict_to_diffusers` writes attention layers as lora.down/up and the others (proj_in,
    conv1) as lora_A/B; diffusers' loader picks one layout by the first key and dropped the other's layers."""
    scratch = tiny_models.sd1()
    torch.manual_seed(3)
    targets = [*UNET_TARGETS, "proj_in", "conv1"]
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets, init_lora_weights=False)
    inject_adapter_in_model(config, scratch.unet, "made")
    made = {k: v * 4 for k, v in get_peft_model_state_dict(scratch.unet, adapter_name="made").items()}
    layers = {key.removesuffix(".lora_A.weight") for key in made if key.endswith(".lora_A.weight")}
    written = convert_state_dict_to_diffusers(made)
    assert any(".lora.down." in k for k in written) and any(".lora_A." in k for k in written)  # the two layouts
    path = save(tmp_path / "mixed.safetensors", {f"unet.{k}": v.contiguous() for k, v in written.items()})
    pipe = tiny_models.sd1()
    assert load_loras([path], pipe)["mixed"].components == ("unet",)
    tuned = {n for n, m in pipe.unet.named_modules() if isinstance(m, BaseTunerLayer) and "mixed" in m.lora_A}
    assert tuned == layers and len(layers) > 20


def test_a_tag_in_a_syntax_without_loras_is_a_warning_saying_it_stays_words(sd1):
    result = compare(sd1, "a cat <lora:detail:1>", **TINY | {"prompt_syntax": "comfyui"})
    assert "<lora:…> tags are words in the comfyui syntax, not LoRAs" in " ".join(result.warnings)


def test_an_sd3_model_refuses_loras_saying_which_families_take_them(sd3, files):
    message = refused(sd3, files["sd1.diffusers"])
    assert message.endswith("LoRAs are applied to SD 1.x, 2.x and SDXL models here, not SD 3")
    assert not any(isinstance(m, BaseTunerLayer) for m in sd3.transformer.modules())


def test_the_command_line_applies_a_lora_and_writes_its_hash(saved, files, tmp_path, capsys):
    from PIL import Image

    from clipskip.__main__ import main

    flags = ["--model", str(saved["sd1"]), "--prompt", "a cat", "--skips", "1", "--steps", "1", "--seed", "3"]
    flags += ["--width", "64", "--height", "64", "--device", "cpu", "--out", str(tmp_path / "out")]
    assert main([*flags, "--lora", f"{files['sd1.diffusers']}:0.5"]) == 0
    parameters = Image.open(tmp_path / "out" / "skip-1.png").text["parameters"]
    assert parameters.startswith("a cat <lora:detail:0.5>\n") and 'Lora hashes: "detail: ' in parameters
    for written in ("grid.png", "skip-1.png"):  # read back, the LoRA is in the prompt as the tag that applies it
        assert read_settings(tmp_path / "out" / written, SD1)[0]["prompt"] == "a cat <lora:detail:0.5>"
    assert any("set the LoRA sliders to 0" in note for note in read_settings(tmp_path / "out" / "grid.png", SD1)[1])
    pickled = tmp_path / "detail.pt"
    pickled.write_bytes(b"")
    with pytest.raises(SystemExit):
        main([*flags, "--lora", str(pickled)])
    assert "is not a .safetensors file" in capsys.readouterr().err


def test_tags_read_as_automatic1111_reads_them(sd1, pipes):
    known = {"detail": None, "style": None}
    weights, notes = loras.row_weights(["detail", "style:0.5:-1", "gone:1"], {"detail": 0.3, "style": 2.0}, known)
    assert weights == (("detail", 1.0, 1.0), ("style", 0.5, -1.0)) and len(notes) == 1  # <lora:name> is 1
    assert loras.row_weights(["detail:0"], {"detail": 0.3}, known)[0] == ()  # 0 is off: no adapter set
    assert loras.tag_text(weights) == "<lora:detail:1> <lora:style:0.5:-1>"
    with pytest.raises(ValueError, match="'<lora:detail:1:1:1>' has 4 parts"):
        loras.row_weights(["detail:1:1:1"], {}, known)
    # te 0, UNet 1: the conditioning is the plain model's
    with loras.held(sd1):
        loras.use(sd1, (("detail", 0.0, 1.0),))
        unet_only = encode(sd1, "a cat", [1], torch.device("cpu"), "a1111", {})
    plain = encode(pipes["sd1.plain"], "a cat", [1], torch.device("cpu"), "a1111", {})
    assert torch.equal(unet_only.embeddings[1], plain.embeddings[1])


def test_the_cell_cache_tells_loras_and_weights_apart(sd1, solo):
    from clipskip.cache import CellCache

    cache = CellCache(64 * 2**20)
    compare(sd1, "a cat", cache=cache, **TINY)
    on = compare(sd1, "a cat", loras={"detail": 1}, cache=cache, **TINY)  # the same prompt, with the LoRA
    assert "cached" not in on.metadata["rows"][0]["cells"][0] and same(on, solo["on"])
    repeat = compare(sd1, "a cat", loras={"detail": 1}, cache=cache, **TINY)
    assert repeat.metadata["rows"][0]["cells"][0]["cached"] is True and same(repeat, solo["on"])
