"""InvokeAI's `invokeai_metadata` JSON (its CoreMetadata node, 3.x to 5.x), read into this app's form by our own
reader. Pure Python.

The fields (InvokeAI's `invokeai/app/invocations/metadata.py`): positive_prompt, negative_prompt, width, height, seed,
steps, cfg_scale, scheduler (its own names: "euler_a", "dpmpp_2m_k"), clip_skip (layers skipped: N − 1, N − 2 on
SDXL), model ({name, base, key, hash}; 3.x wrote {model_name, base_model}), loras, hrf_* (hires fix), strength and
init_image (img2img), refiner_*, generation_mode. sd-parsers 0.6 reads the model's name only from 3.x's
`model_name`, so 4.x and 5.x files lose it, and it needs a scheduler; hence our own reader.
"""

import re

from ..families import SD1, SD2, SDXL
from .fields import MAX_CLIP_SKIP, MAX_NAME_CHARS, FormValues, ImageSettings, cut, is_text, shown
from .numbering import ToolSkip
from .png import parse_json

KEY = "invokeai_metadata"
MAX_BYTES = 256 * 2**10  # two long prompts and a few ControlNets' and LoRAs' identifiers: a few KB
MAX_DEPTH = 8  # InvokeAI's nests 4 deep (controlnets: a list of objects holding model objects)
MAX_BRACKETS = 4096
TEXTS = {KEY: MAX_BYTES}
FIELDS = ("positive_prompt", "negative_prompt", "seed", "steps", "cfg_scale", "scheduler", "model", "width")
FAMILIES = {"sd-1": SD1.name, "sd-2": SD2.name, "sdxl": SDXL.name}  # InvokeAI's model bases
SAMPLERS = {  # InvokeAI's scheduler name -> this app's sampler: the same diffusers scheduler and settings
    "euler_a": "Euler a",
    "euler": "Euler",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
}
COMPEL = re.compile(r"[\w)][+-]+(?=[\s,)]|$)|\)[0-9.]+|\.(?:and|blend)\(")  # word+, (word)1.2, ("a", "b").and()


def read(texts: dict[str, str]) -> ImageSettings | None:
    """The settings in an `invokeai_metadata` text; None where there is none, or its object holds none of InvokeAI's
    fields."""
    text = texts.get(KEY)
    if text is None:
        return None
    # 1. Bounded JSON, an object with InvokeAI's fields
    try:
        data = parse_json(text, "InvokeAI's nests 4 deep", MAX_DEPTH, MAX_BRACKETS)
    except ValueError as error:
        raise ValueError(f"this image's InvokeAI settings are not valid: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"this image's InvokeAI settings are not valid: they are {kind(data)}, not an object")
    if not any(name in data for name in FIELDS):
        return None
    # 2. Map it into the form
    values = FormValues()
    values.text("prompt", "positive_prompt", data.get("positive_prompt"))
    values.text("negative_prompt", "negative_prompt", data.get("negative_prompt"))
    prompts = [data.get(name) for name in ("positive_prompt", "negative_prompt")]
    values.form["prompt_syntax"] = "plain"
    if any(isinstance(prompt, str) and COMPEL.search(prompt) for prompt in prompts):
        values.notes.append(
            "InvokeAI's prompt weights (compel syntax: word+, (word)1.2, .and()) are not read here; the prompt is "
            "read as plain text"
        )
    values.number("seed", "seed", data.get("seed"))
    values.number("steps", "steps", data.get("steps"))
    values.number("guidance_scale", "cfg_scale", data.get("cfg_scale"))
    if "width" in data or "height" in data:
        values.size("width × height", data.get("width"), data.get("height"))
    scheduler = data.get("scheduler")
    values.sampler(SAMPLERS.get(scheduler) if isinstance(scheduler, str) else None, scheduler)
    family = model_into(values, data.get("model"))
    clip_skip = values.number("clip_skip", "clip_skip", data.get("clip_skip"), 0, MAX_CLIP_SKIP)  # layers removed
    values.notes += unused(data)
    unread = data.get("clip_skip") is not None and clip_skip is None  # a bad number: the form keeps its skips
    return values.result("InvokeAI", None if unread else ToolSkip("InvokeAI", clip_skip), family)


def kind(value) -> str:
    return {list: "a list", str: "text", bool: "true or false", type(None): "null"}.get(type(value), "a number")


def model_into(values: FormValues, model) -> str | None:
    """The model's name into the form, and its family ("SD 1.x") from InvokeAI's base; a note for other bases."""
    if model is None:
        return None
    if not isinstance(model, dict):
        values.notes.append(f"its model {shown(model)} was left out: InvokeAI writes an object there")
        return None
    name = model.get("name", model.get("model_name"))  # 4.x+, 3.x
    values.model(name)
    base = model.get("base", model.get("base_model"))
    if base in FAMILIES:
        return FAMILIES[base]
    if base is not None:
        values.notes.append(
            f"its model's base {shown(base)} is not Stable Diffusion 1.x, 2.x or XL; its settings are loaded for the "
            "chosen model"
        )
    return None


def names(items) -> list[str]:
    """The model names in InvokeAI's list of LoRAs (or adapters): {model: {name}} (4.x+) or {lora: {model_name}}."""
    if not isinstance(items, list):
        return []
    found = []
    for item in items[:8]:
        model = item.get("model", item.get("lora")) if isinstance(item, dict) else None
        name = model.get("name", model.get("model_name")) if isinstance(model, dict) else None
        found.append(cut(name) if is_text(name, MAX_NAME_CHARS) else "?")
    return found


def unused(data: dict) -> list[str]:
    """Notes on what InvokeAI did that this app does not: hires fix, img2img, a refiner, LoRAs, adapters."""
    notes = []
    if data.get("hrf_enabled") is True:
        notes.append(
            f"its hires fix ({cut(str(data.get('hrf_method', '?')))}, "
            f"strength {cut(str(data.get('hrf_strength', '?')))}) not applied: the size loaded is its final one; "
            "the smaller first pass's size is not recorded"
        )
    mode = data.get("generation_mode")
    if (
        data.get("init_image") is not None
        or data.get("strength") is not None
        or (isinstance(mode, str) and mode.endswith(("img2img", "inpaint", "outpaint")))
    ):
        notes.append("it was made from another image (img2img or inpainting); here it is rendered from noise")
    if data.get("refiner_model") is not None:
        notes.append("its SDXL refiner is not applied")
    if loras := names(data.get("loras")):
        notes.append(
            f"its LoRAs ({', '.join(loras)}) are not in its prompt: set those this server offers in LoRAs, or add "
            "<lora:name:weight> to the prompt"
        )
    adapters = [key for key in ("controlnets", "ipAdapters", "t2iAdapters") if data.get(key)]
    if adapters:
        notes.append(f"its {', '.join(adapters)} are not applied")
    style = data.get("positive_style_prompt")
    if isinstance(style, str) and style and style != data.get("positive_prompt"):
        notes.append("its SDXL style prompt (for the second encoder) is not used: both encoders get the prompt")
    if data.get("cfg_rescale_multiplier") not in (None, 0, 0.0):
        notes.append(f"its cfg_rescale_multiplier {shown(data['cfg_rescale_multiplier'])} is not applied")
    if data.get("seamless_x") is True or data.get("seamless_y") is True:
        notes.append("its seamless tiling is not applied")
    return notes
