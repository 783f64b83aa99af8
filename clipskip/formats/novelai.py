"""NovelAI's image metadata, read into this app's form through sd-parsers' NovelAIParser. Pure Python.

NovelAI writes `Software: NovelAI`, `Description` (the prompt), `Source` (its model: "Stable Diffusion XL C1E1DE52",
"NovelAI Diffusion V4 F6302A9D") and `Comment`, a JSON object: prompt, uc (the negative prompt), steps, width,
height, scale, seed, sampler ("k_euler_ancestral", "k_dpmpp_2m", "ddim_v3"), noise_schedule ("native", "karras",
"exponential"), sm/sm_dyn (SMEA), cfg_rescale, request_type, and from V4 v4_prompt/v4_negative_prompt (a base caption
and character captions). It records no CLIP skip: its models condition on the penultimate layer.
"""

from sd_parsers.exceptions import ParserError
from sd_parsers.parsers import NovelAIParser

from ..families import SD1, SDXL
from .fields import FormValues, ImageSettings, shown
from .numbering import ToolSkip
from .png import parse_json

MAX_COMMENT_BYTES = 256 * 2**10  # two long prompts, V4's character captions and a signature: a few KB
MAX_SOURCE_BYTES = 256  # "NovelAI Diffusion V4.5 4BDE2A90"; sd-parsers' model regex is quadratic in this length
TEXTS = {"Software": 64, "Source": MAX_SOURCE_BYTES, "Description": MAX_COMMENT_BYTES, "Comment": MAX_COMMENT_BYTES}
MAX_DEPTH = 8  # NovelAI V4's nests 5 deep (v4_prompt.caption.char_captions[].centers[])
MAX_BRACKETS = 4096
SAMPLERS = {  # (NovelAI's sampler, noise schedule) -> this app's sampler; "native" is the model's own schedule
    ("k_euler_ancestral", "native"): "Euler a",
    ("k_euler", "native"): "Euler",
    ("k_dpmpp_2m", "native"): "DPM++ 2M",
    ("k_dpmpp_2m", "karras"): "DPM++ 2M Karras",
}
EMPHASIS = ("{", "}", "[", "]", "::")  # NovelAI's: {x} ×1.05, [x] ÷1.05, and V4's 1.2::x::


def read(texts: dict[str, str]) -> ImageSettings | None:
    """The settings in a NovelAI image's texts; None unless its Software text says NovelAI."""
    if texts.get("Software", "").strip() != "NovelAI":
        return None
    if "Comment" not in texts:
        raise ValueError("this NovelAI image has no Comment text, where NovelAI keeps its settings")
    # 1. Bounded JSON, an object, before any library parses it
    try:
        comment = parse_json(texts["Comment"], "NovelAI's nests 5 deep", MAX_DEPTH, MAX_BRACKETS)
    except ValueError as error:
        raise ValueError(f"this image's NovelAI settings are not valid: {error}") from None
    if not isinstance(comment, dict):
        raise ValueError("this image's NovelAI settings are not valid: its Comment is not a JSON object")
    description = texts.get("Description", comment.get("prompt"))
    if not isinstance(description, str):
        raise ValueError("this NovelAI image has no prompt (no Description text, no prompt in its Comment)")
    # 2. Let sd-parsers read it (it parses the checked Comment again)
    source = texts.get("Source", "")
    try:
        info = NovelAIParser().parse({"Comment": texts["Comment"], "Description": description, "Source": source})
    except ParserError:
        raise ValueError("this image's NovelAI settings are not valid: they name no sampler") from None
    sampler = info.samplers[0]
    settings, rest = sampler.parameters, info.metadata
    # 3. Map it into the form
    values = FormValues()
    values.text("prompt", "prompt", sampler.prompts[0].value)
    negative = sampler.negative_prompts[0].value if sampler.negative_prompts else None
    values.text("negative_prompt", "negative prompt (uc)", negative)
    values.form["prompt_syntax"] = "plain"
    if any(isinstance(text, str) and any(mark in text for mark in EMPHASIS) for text in (description, negative)):
        values.notes.append(
            "NovelAI's emphasis ({word} stronger, [word] weaker, 1.2::word::) is its own syntax, which this app does "
            "not read: the prompt is read as plain text, brackets included"
        )
    values.number("seed", "seed", settings.get("seed"))
    values.number("steps", "steps", rest.get("steps"))
    values.number("guidance_scale", "scale", settings.get("cfg_scale"))
    if "width" in rest or "height" in rest:
        values.size("width × height", rest.get("width"), rest.get("height"))
    schedule = rest.get("noise_schedule", "native")
    pair = (sampler.name, schedule) if isinstance(sampler.name, str) and isinstance(schedule, str) else None
    ours = "DDIM" if sampler.name in ("ddim", "ddim_v3") else SAMPLERS.get(pair)
    values.sampler(ours, f"{shown(sampler.name)} with noise schedule {shown(schedule)}")
    values.model(source or None)
    family = family_of(values, source)
    values.notes += unused(rest)
    return values.result("NovelAI", ToolSkip("NovelAI", None), family)


def family_of(values: FormValues, source: str) -> str | None:
    """The family of NovelAI's model, from its Source: V3 is SDXL, V1 and V2 ("Stable Diffusion 81274D13") SD 1.x,
    V4 none of them (a note)."""
    if "V4" in source:
        values.notes.append(
            "NovelAI Diffusion V4 is not a Stable Diffusion model; its settings are loaded for the chosen model"
        )
        return None
    if "XL" in source or "V3" in source:
        return SDXL.name
    return SD1.name if source.startswith("Stable Diffusion ") else None


def unused(rest: dict) -> list[str]:
    """Notes on what NovelAI did that this app does not: character prompts, SMEA, CFG rescale, img2img, vibes."""
    notes = []
    v4_prompt = rest.get("v4_prompt")
    caption = v4_prompt.get("caption") if isinstance(v4_prompt, dict) else None
    characters = caption.get("char_captions") if isinstance(caption, dict) else None
    if isinstance(characters, list) and characters:
        notes.append(f"its {len(characters)} character prompts (NovelAI V4) are not used: only the base prompt is")
    if rest.get("sm") is True or rest.get("sm_dyn") is True:
        notes.append("its SMEA sampling is not applied")
    if rest.get("cfg_rescale") not in (None, 0, 0.0):
        notes.append(f"its cfg_rescale {shown(rest['cfg_rescale'])} is not applied")
    if "img2img" in str(rest.get("request_type", "")).lower() or rest.get("image") is not None:
        notes.append("it was made from another image (img2img); here it is rendered from noise")
    if rest.get("reference_information_extracted_multiple") or rest.get("reference_image_multiple"):
        notes.append("its vibe transfer (reference images) is not applied")
    return notes
