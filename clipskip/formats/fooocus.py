"""Fooocus's JSON metadata scheme, read into this app's form through sd-parsers' FooocusParser. Pure Python.

Fooocus (`modules/meta_parser.py`, FooocusMetadataParser) writes its settings as one JSON object under `parameters`,
with `fooocus_scheme: fooocus` beside it: prompt, negative_prompt, full_prompt and full_negative_prompt (lists: the
parts it encoded, after styles and prompt expansion), resolution "(w, h)", guidance_scale, sampler and scheduler
(ComfyUI's names), seed (text), steps, base_model, base_model_hash, clip_skip (written only when above 1), loras,
refiner_model, styles, metadata_scheme, version. Its "a1111" scheme is AUTOMATIC1111 text, read by `a1111`.
"""

from ast import literal_eval

from sd_parsers.exceptions import ParserError
from sd_parsers.parsers import FooocusParser

from ..families import SDXL
from . import comfyui
from .a1111 import MAX_PARAMETERS_CHARS
from .fields import MAX_CLIP_SKIP, MAX_NAME_CHARS, FormValues, ImageSettings, cut, is_text, shown
from .numbering import ToolSkip, fooocus_absent_skip
from .png import parse_json

KEY, SCHEME_KEY = "parameters", "fooocus_scheme"
TEXTS = {KEY: MAX_PARAMETERS_CHARS, SCHEME_KEY: 64}
MAX_DEPTH = 8  # Fooocus's JSON nests 3 deep (loras: a list of lists)
MAX_BRACKETS = 1024  # a real one has a dozen
REQUIRED = "prompt, negative_prompt, sampler, base_model and base_model_hash"  # what FooocusParser needs
FORMAT = "Fooocus (JSON scheme)"


def read(texts: dict[str, str]) -> ImageSettings | None:
    """The settings in Fooocus's JSON scheme; None for any other `parameters` text (AUTOMATIC1111's starts with
    anything but '{"', a JSON object that neither its scheme chunk nor its own fields call Fooocus is not read)."""
    text, scheme = texts.get(KEY), texts.get(SCHEME_KEY)
    if text is None or not text.lstrip().startswith('{"'):
        return None
    # 1. Check the JSON before any library parses it: bounded, an object, and Fooocus's
    try:
        data = parse_json(text, "Fooocus's nests 3 deep", MAX_DEPTH, MAX_BRACKETS)
    except ValueError as error:
        raise ValueError(f"this image's Fooocus settings are not valid: {error}") from None
    if not isinstance(data, dict):
        return None
    if (
        scheme != "fooocus"
        and data.get("metadata_scheme") != "fooocus"
        and not str(data.get("version")).startswith("Fooocus")
    ):
        return None
    if data.get("base_model") is None and data.get("base_model_hash") is None:  # sd-parsers' Model needs one
        raise ValueError("this image's Fooocus settings are not valid: they name no base model")
    # 2. Let sd-parsers read it (it parses the checked text again)
    try:
        info = FooocusParser().parse({KEY: text})
    except ParserError:
        raise ValueError(f"this image's Fooocus settings are not valid: they lack one of {REQUIRED}") from None
    sampler = info.samplers[0]
    settings, rest = sampler.parameters, info.metadata
    # 3. Map it into the form
    values = FormValues()
    prompt_notes(values, sampler.prompts[0].value, rest)
    values.text(
        "negative_prompt", "negative prompt", full_prompt(rest.get("full_negative_prompt")) or negative(sampler)
    )
    values.form["prompt_syntax"] = "comfyui"  # Fooocus weights prompts with ComfyUI's code
    values.number("seed", "seed", settings.get("seed"))
    values.number("steps", "steps", settings.get("steps"))
    values.number("guidance_scale", "guidance_scale", settings.get("cfg_scale"))
    size_of(values, rest.get("resolution"))
    sampler_name, scheduler = sampler.name, settings.get("scheduler")
    values.sampler(comfyui.our_sampler(sampler_name, scheduler), f"{shown(sampler_name)} with {shown(scheduler)}")
    values.model(sampler.model.name if sampler.model else None)
    clip_skip = values.number("clip_skip", "clip_skip", rest.get("clip_skip"), 1, MAX_CLIP_SKIP)
    if "clip_skip" not in rest:
        clip_skip, note = fooocus_absent_skip(rest.get("version"))
        values.notes += [note] if note else []
    values.notes += unused(rest)
    unread = rest.get("clip_skip") is not None and clip_skip is None  # a bad number: the form keeps its skips
    return values.result(FORMAT, None if unread else ToolSkip("Fooocus", clip_skip), SDXL.name)


def negative(sampler) -> str:
    return sampler.negative_prompts[0].value if sampler.negative_prompts else ""


def full_prompt(parts) -> str | None:
    """Fooocus's encoded prompt parts joined as its own AUTOMATIC1111 scheme joins them; None unless a list of texts.
    (Fooocus encodes each part on its own and concatenates them; here they are one prompt.)"""
    if isinstance(parts, list) and parts and all(isinstance(part, str) for part in parts):
        return ", ".join(parts)
    return None


def prompt_notes(values: FormValues, prompt, rest: dict) -> None:
    """The prompt Fooocus encoded (`full_prompt`, after styles and expansion) where the file has it, else the typed
    one with a note on the styles that are then missing."""
    styles = style_names(rest.get("styles"))
    full = full_prompt(rest.get("full_prompt"))
    if full is not None:
        values.text("prompt", "full prompt", full)
        if len(rest["full_prompt"]) > 1 or styles:
            values.notes.append(
                f"Fooocus's full prompt (after its styles and prompt expansion; parts: {len(rest['full_prompt'])}) "
                "was used, its parts joined with commas; Fooocus encodes each part on its own"
            )
        return
    values.text("prompt", "prompt", prompt)
    if styles:
        values.notes.append(
            f"its styles ({', '.join(styles)}) and prompt expansion are not applied: the typed prompt was used"
        )


def style_names(styles) -> list[str]:
    """The style names in Fooocus's `styles`, a list written as Python text ("['Fooocus V2', 'Fooocus Enhance']")."""
    if not isinstance(styles, str) or len(styles) > 4096:
        return []
    try:
        names = literal_eval(styles)  # literals only: never runs code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    if not isinstance(names, list):
        return []
    return [cut(name) for name in names[:8] if is_text(name, MAX_NAME_CHARS)]


def size_of(values: FormValues, resolution) -> None:
    """Fooocus's resolution, a tuple written as text: "(1152, 896)"."""
    if resolution is None:
        return
    parts = resolution.strip("() ").split(",") if isinstance(resolution, str) and len(resolution) < 64 else []
    width, height = [part.strip().strip("'\"") for part in parts] if len(parts) == 2 else (None, None)
    values.size("resolution", width, height, written=resolution if isinstance(resolution, str) else None)


def unused(rest: dict) -> list[str]:
    """Notes on what Fooocus did that this app does not: a refiner, LoRAs, sharpness and the rest of its tuning."""
    notes = []
    if rest.get("refiner_model") not in (None, "", "None"):
        notes.append(f"its refiner {shown(rest['refiner_model'])} is not applied")
    loras = rest.get("loras")
    names = (
        [cut(lora[0]) for lora in loras[:8] if lora and is_text(lora[0], MAX_NAME_CHARS)]
        if isinstance(loras, list) and all(isinstance(lora, list) for lora in loras)
        else []
    )
    if names:
        notes.append(
            f"its LoRAs ({', '.join(names)}) are not in its prompt: set those this server offers in LoRAs (Fooocus's "
            "prompts are read with ComfyUI's syntax, which has no <lora:…> tags)"
        )
    tuning = [key for key in ("sharpness", "adm_guidance", "adaptive_cfg", "freeu") if key in rest]
    if tuning:
        notes.append(f"Fooocus's own sampling tweaks ({', '.join(tuning)}) are not applied")
    if rest.get("performance") in ("Extreme Speed", "Lightning", "Hyper-SD"):
        notes.append(f"its performance {shown(rest['performance'])} adds a LoRA that is not applied here")
    return notes
