"""Fooocus's JSON scheme, InvokeAI's and NovelAI's metadata: samples built on each tool's real scheme fill the form,
and hostile texts get None, settings or one ValueError, quickly."""

import contextlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from clipskip.families import SD1, SD2, SDXL
from clipskip.formats import fooocus, form_for, invokeai, novelai, read_image

# As Fooocus 2.5 writes it (modules/async_worker.py save_and_log, meta_parser.FooocusMetadataParser.parse_string)
FOOOCUS = {
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e689",
    "clip_skip": 2,
    "full_negative_prompt": ["blurry, lowres"],
    "full_prompt": ["a lighthouse at dusk", "a lighthouse at dusk, dramatic light, highly detailed"],
    "guidance_scale": 4,
    "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"]],
    "metadata_scheme": "fooocus",
    "negative_prompt": "blurry, lowres",
    "performance": "Speed",
    "prompt": "a lighthouse at dusk",
    "prompt_expansion": "a lighthouse at dusk, dramatic light, highly detailed",
    "refiner_model": "None",
    "refiner_switch": 0.5,
    "resolution": "(1152, 896)",
    "sampler": "dpmpp_2m",
    "scheduler": "karras",
    "seed": "1234567890",
    "sharpness": 2,
    "steps": 30,
    "styles": "['Fooocus V2', 'Fooocus Enhance']",
    "vae": "Default (model)",
    "version": "Fooocus v2.5.5",
}
# As InvokeAI 5 writes it (invokeai/app/invocations/metadata.py CoreMetadataInvocation, model a ModelIdentifierField)
INVOKEAI = {
    "generation_mode": "txt2img",
    "positive_prompt": "a red fox in the snow",
    "negative_prompt": "cartoon",
    "width": 512,
    "height": 768,
    "seed": 42,
    "rand_device": "cpu",
    "cfg_scale": 7.5,
    "cfg_rescale_multiplier": 0,
    "steps": 30,
    "scheduler": "dpmpp_2m_k",
    "clip_skip": 1,
    "model": {"key": "0d6c", "hash": "blake3:9f1e", "name": "Deliberate v2", "base": "sd-1", "type": "main"},
    "loras": [
        {
            "model": {"key": "1a", "hash": "blake3:2b", "name": "add_detail", "base": "sd-1", "type": "lora"},
            "weight": 0.75,
        }
    ],
    "hrf_enabled": True,
    "hrf_method": "ESRGAN",
    "hrf_strength": 0.45,
    "app_version": "5.6.0",
}
# As NovelAI writes a V3 image: Software, Source, Description and the Comment JSON
NOVELAI_COMMENT = {
    "prompt": "1girl, {best quality}, cherry blossoms",
    "steps": 28,
    "height": 1216,
    "width": 832,
    "scale": 5.0,
    "uncond_scale": 1.0,
    "cfg_rescale": 0.0,
    "seed": 3851339658,
    "n_samples": 1,
    "noise_schedule": "karras",
    "sampler": "k_dpmpp_2m",
    "sm": True,
    "sm_dyn": False,
    "uc": "lowres, bad anatomy",
    "request_type": "PromptGenerateRequest",
}
NOVELAI = {
    "Software": "NovelAI",
    "Source": "Stable Diffusion XL C1E1DE52",
    "Description": NOVELAI_COMMENT["prompt"],
    "Comment": json.dumps(NOVELAI_COMMENT),
}


def png_with(tmp_path, texts: dict[str, str], name="image.png"):
    info = PngInfo()
    for key, text in texts.items():
        info.add_text(key, text, zip=len(text) > 1000)
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_a_fooocus_json_image_fills_the_form(tmp_path):
    path = png_with(tmp_path, {"parameters": json.dumps(FOOOCUS), "fooocus_scheme": "fooocus"})
    found = read_image(path)
    assert (found.format, found.family) == ("Fooocus (JSON scheme)", "SDXL")
    assert found.form == {
        "prompt": "a lighthouse at dusk, a lighthouse at dusk, dramatic light, highly detailed",
        "negative_prompt": "blurry, lowres",
        "prompt_syntax": "comfyui",
        "seed": 1234567890,
        "steps": 30,
        "guidance_scale": 4.0,
        "width": 1152,
        "height": 896,
        "scheduler": "DPM++ 2M Karras",
        "model": "juggernautXL_v8Rundiffusion",
    }
    assert any("full prompt (after its styles and prompt expansion; parts: 2)" in note for note in found.notes)
    assert any("sd_xl_offset_example-lora_1.0" in note and "LoRAs" in note for note in found.notes)
    form, notes = form_for(found, SDXL)
    assert form["skips"] == [2]
    form, notes = form_for(found, SD1)
    assert form["skips"] == [2] and any("SDXL model" in note for note in notes)


def test_fooocus_without_full_prompt_or_clip_skip_uses_the_typed_prompt_and_its_default():
    data = {key: value for key, value in FOOOCUS.items() if key not in ("full_prompt", "clip_skip")}
    data |= {"sampler": "dpmpp_2m_sde_gpu", "refiner_model": "sd_xl_refiner_1.0"}
    found = fooocus.read({"parameters": json.dumps(data)})
    assert found.form["prompt"] == "a lighthouse at dusk" and "scheduler" not in found.form
    notes = " | ".join(found.notes)
    assert "styles (Fooocus V2, Fooocus Enhance)" in notes and "refiner 'sd_xl_refiner_1.0'" in notes
    assert "'dpmpp_2m_sde_gpu' with 'karras'" in notes and "clip_skip" not in notes
    assert form_for(found, SDXL)[0]["skips"] == [1]  # Fooocus 2.3 and later leave out a clip skip of 1
    older = fooocus.read({"parameters": json.dumps(data | {"version": "Fooocus v2.1.8"})})
    assert form_for(older, SDXL)[0]["skips"] == [2] and any("records no clip_skip" in note for note in older.notes)


def test_an_invokeai_image_fills_the_form(tmp_path):
    found = read_image(png_with(tmp_path, {"invokeai_metadata": json.dumps(INVOKEAI)}))
    assert (found.format, found.family) == ("InvokeAI", "SD 1.x")
    assert found.form == {
        "prompt": "a red fox in the snow",
        "negative_prompt": "cartoon",
        "prompt_syntax": "plain",
        "seed": 42,
        "steps": 30,
        "guidance_scale": 7.5,
        "width": 512,
        "height": 768,
        "scheduler": "DPM++ 2M Karras",
        "model": "Deliberate v2",
    }
    notes = " | ".join(found.notes)
    assert "hires fix (ESRGAN, strength 0.45) not applied" in notes and "LoRAs (add_detail)" in notes
    assert form_for(found, SD1)[0]["skips"] == [2]
    sdxl = invokeai.read(
        {"invokeai_metadata": json.dumps(INVOKEAI | {"model": {"model_name": "x", "base_model": "sdxl"}})}
    )
    assert (sdxl.family, sdxl.form["model"], form_for(sdxl, SDXL)[0]["skips"]) == ("SDXL", "x", [3])


def test_invokeai_compel_weights_and_unknown_schedulers_are_noted():
    data = INVOKEAI | {"positive_prompt": "a (red)1.3 fox++", "scheduler": "dpmpp_3m_k", "model": {"base": "flux"}}
    found = invokeai.read({"invokeai_metadata": json.dumps(data)})
    notes = " | ".join(found.notes)
    assert "compel syntax" in notes and "'dpmpp_3m_k' is not offered" in notes and "'flux'" in notes
    assert found.family is None and "scheduler" not in found.form


def test_a_novelai_image_fills_the_form(tmp_path):
    found = read_image(png_with(tmp_path, NOVELAI))
    assert (found.format, found.family) == ("NovelAI", "SDXL")
    assert found.form == {
        "prompt": "1girl, {best quality}, cherry blossoms",
        "negative_prompt": "lowres, bad anatomy",
        "prompt_syntax": "plain",
        "seed": 3851339658,
        "steps": 28,
        "guidance_scale": 5.0,
        "width": 832,
        "height": 1216,
        "scheduler": "DPM++ 2M Karras",
        "model": "Stable Diffusion XL C1E1DE52",
    }
    notes = " | ".join(found.notes)
    assert "NovelAI's emphasis" in notes and "SMEA" in notes
    form, notes = form_for(found, SDXL)
    assert form["skips"] == [2] and any("NovelAI records no CLIP skip" in note for note in notes)


def test_novelai_v4_character_prompts_and_model_are_noted():
    comment = NOVELAI_COMMENT | {
        "sampler": "k_euler_ancestral",
        "noise_schedule": "native",
        "v4_prompt": {
            "caption": {"base_caption": "two girls", "char_captions": [{"char_caption": "a", "centers": []}]}
        },
    }
    found = novelai.read(NOVELAI | {"Source": "NovelAI Diffusion V4 F6302A9D", "Comment": json.dumps(comment)})
    notes = " | ".join(found.notes)
    assert found.form["scheduler"] == "Euler a" and found.family is None
    assert "1 character prompts" in notes and "V4 is not a Stable Diffusion model" in notes


def test_an_automatic1111_text_still_reaches_the_a1111_reader(tmp_path):
    text = "a fox\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"
    assert fooocus.read({"parameters": text}) is None
    assert read_image(png_with(tmp_path, {"parameters": text})).format == "AUTOMATIC1111"
    assert fooocus.read({"parameters": json.dumps({"prompt": "a json but not Fooocus's"})}) is None
    assert invokeai.read({"parameters": text}) is None and novelai.read({"Comment": "{}"}) is None


@pytest.mark.parametrize(
    "reader, texts, message",
    [
        (fooocus, {"parameters": '{"prompt": "x", ', "fooocus_scheme": "fooocus"}, "not JSON"),
        (fooocus, {"parameters": '{"a":' + "[" * 50 + "]" * 50 + "}"}, "nested more than"),
        (fooocus, {"parameters": json.dumps({"metadata_scheme": "fooocus", "prompt": "x"})}, "name no base model"),
        (fooocus, {"parameters": json.dumps({"metadata_scheme": "fooocus", "base_model": "m"})}, "lack one of"),
        (invokeai, {"invokeai_metadata": "[1, 2]"}, "a list, not an object"),
        (invokeai, {"invokeai_metadata": '{"seed": 1' + "0" * 100 + "}"}, "characters long"),
        (novelai, {"Software": "NovelAI"}, "no Comment"),
        (novelai, {"Software": "NovelAI", "Comment": "[]"}, "not a JSON object"),
        (novelai, {"Software": "NovelAI", "Comment": '{"uc": "x"}', "Description": "p"}, "name no sampler"),
    ],
)
def test_damaged_files_get_one_line_messages(reader, texts, message):
    with pytest.raises(ValueError, match=message) as error:
        reader.read(texts)
    assert "\n" not in str(error.value)


def test_wrong_types_are_left_out_with_notes():
    fooocus_data = FOOOCUS | {
        "prompt": ["x"],
        "full_prompt": 3,
        "seed": True,
        "steps": "٣",
        "resolution": [1, 2],
        "loras": "x",
        "clip_skip": "two",
        "sampler": ["a"],
        "base_model": 5,
    }
    found = fooocus.read({"parameters": json.dumps(fooocus_data)})
    assert not {"prompt", "seed", "steps", "width", "model"} & set(found.form) and found.clip_skip is None
    invoke_data = INVOKEAI | {
        "positive_prompt": {"a": 1},
        "width": "wide",
        "model": "x",
        "loras": [1, None],
        "clip_skip": -1,
        "scheduler": ["euler"],
    }
    found = invokeai.read({"invokeai_metadata": json.dumps(invoke_data)})
    assert not {"prompt", "width", "model", "scheduler"} & set(found.form) and found.clip_skip is None
    comment = NOVELAI_COMMENT | {"uc": 5, "seed": -1, "scale": "x", "sampler": [1], "noise_schedule": {}}
    found = novelai.read(NOVELAI | {"Comment": json.dumps(comment)})
    assert not {"negative_prompt", "seed", "guidance_scale", "scheduler"} & set(found.form)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
KEYS = st.sampled_from(sorted(set(FOOOCUS) | set(INVOKEAI) | set(NOVELAI_COMMENT) | {"v4_prompt", "model"}))


@settings(max_examples=150, deadline=None)
@given(base=st.sampled_from(["fooocus", "invokeai", "novelai"]), changes=st.dictionaries(KEYS, JSON, max_size=6))
def test_hostile_values_get_none_settings_or_one_value_error(base, changes):
    reader, sample, make = {
        "fooocus": (fooocus, FOOOCUS, lambda data: {"parameters": json.dumps(data)}),
        "invokeai": (invokeai, INVOKEAI, lambda data: {"invokeai_metadata": json.dumps(data)}),
        "novelai": (novelai, NOVELAI_COMMENT, lambda data: NOVELAI | {"Comment": json.dumps(data)}),
    }[base]
    try:
        found = reader.read(make(sample | changes))
    except ValueError as error:
        assert "\n" not in str(error)
        return
    if found is not None:
        for family in (SD1, SD2, SDXL):
            form_for(found, family)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200), key=st.sampled_from(["parameters", "invokeai_metadata", "Comment"]))
def test_any_text_gets_none_settings_or_one_value_error(text, key):
    for reader in (fooocus, invokeai, novelai):
        try:
            reader.read({key: text, "Software": "NovelAI", "fooocus_scheme": "fooocus"})
        except ValueError as error:
            assert "\n" not in str(error)


@pytest.mark.parametrize(
    "texts",
    [
        {"parameters": '{"metadata_scheme": "fooocus", "x": "' + "\\" * 60000 + '"}'},
        {"parameters": '{"a": ' + "[" * 30000 + "]" * 30000 + "}"},
        {"parameters": json.dumps(FOOOCUS | {"styles": "[" * 2000 + "]" * 2000})},
        {"invokeai_metadata": "[" * 200000},
        {"invokeai_metadata": json.dumps(INVOKEAI | {"loras": [{}] * 3000})},
        {"Software": "NovelAI", "Source": "a" + " " * 250 + "x!", "Comment": json.dumps(NOVELAI_COMMENT)},
        {"Software": "NovelAI", "Comment": '{"s": "' + "{" * 200000 + '"}', "Description": "{" * 200000},
    ],
)
def test_hostile_texts_are_answered_quickly(texts):
    start = time.perf_counter()
    for reader in (fooocus, invokeai, novelai):
        with contextlib.suppress(ValueError):
            reader.read(texts)
    assert time.perf_counter() - start < 0.5


def test_oversized_texts_are_refused_before_they_are_read(tmp_path):
    path = png_with(tmp_path, NOVELAI | {"Source": "x" * 1000})
    with pytest.raises(ValueError, match="'Source' text is over 256 bytes"):
        read_image(path)
