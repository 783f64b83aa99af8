"""AUTOMATIC1111's `parameters` text (also Forge's, SD.Next's and Fooocus's "a1111" scheme): written for every cell
and read back from any image that carries it. Pure Python.

The format (AUTOMATIC1111's `modules/infotext_utils.py`): the prompt, a "Negative prompt: ..." line, then one line of
"Key: value" pairs separated by commas, with values that hold a comma, colon or quote JSON-quoted. AUTOMATIC1111
leaves "Clip skip" out when it is 1; this project always writes it, in its own numbering, and says so in `Version`.
Texts come from strangers' files: reading one takes time linear in its length, its length is bounded first, and no
number reaches the form unless it is in the app's range.
"""

import json
import re

from ..families import SDXL
from ..samplers import SAMPLERS
from ..skips import parse_skip
from .fields import MAX_CLIP_SKIP, MAX_NAME_CHARS, FormValues, ImageSettings, cut, is_text, shown
from .numbering import ToolSkip, fooocus_absent_skip

# This app's own field for a column AUTOMATIC1111's "Clip skip" (a whole number) cannot say exactly: "1.5", "L1/G2".
# Where AUTOMATIC1111 or SD.Next has the setting, "Clip skip" holds theirs as well (outputs.cell_parameters).
OWN_SKIP = "Clipskip skip"

KEY = "parameters"
MAX_PARAMETERS_CHARS = 64 * 1024  # a real text (two 2,000-character prompts and a long settings line) is far shorter
TEXTS = {KEY: MAX_PARAMETERS_CHARS}

# AUTOMATIC1111 reads the settings line with `\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)` and findall, which
# tries again from every character of a long run of key characters without a colon: quadratic. PAIR finds the same
# pairs but never fails once it has started on a key, so findall never tries again inside one: such a run is a match
# without a value, and the quoted value's end is a lookahead, with no repetition to give back.
PAIR = re.compile(r'(\w[\w \-/]+)(?::\s*("(?:\\.|[^\\"])++"(?=,|$)|[^,]*),?)?')
SIZE = re.compile(r"([0-9]{1,20})x([0-9]{1,20})")
EMPHASIS = {"Original": "a1111", "No norm": "a1111-no-norm", "None": "plain"}  # AUTOMATIC1111's names


def quote(value) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ',:\n"') else text


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def write_parameters(prompt: str, negative_prompt: str, settings: dict) -> str:
    """The `parameters` text: prompt, negative prompt, then `settings` as AUTOMATIC1111 writes them, in order."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{key}: {quote(value)}" for key, value in settings.items()))
    return "\n".join(lines)


def settings_pairs(line: str) -> list[tuple[str, str]]:
    """The (key, raw value) pairs AUTOMATIC1111's regex finds in a settings line, in time linear in its length."""
    return [match.group(1, 2) for match in PAIR.finditer(line) if match[2] is not None]


def read_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, key-value settings) from a `parameters` text, as AUTOMATIC1111 parses it."""
    *lines, last = text.strip().split("\n")
    pairs = settings_pairs(last)
    if len(pairs) < 3:  # not a settings line: part of the prompt
        lines.append(last)
        pairs = []
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.strip().startswith("Negative prompt:"):
            in_negative = True
            line = line.strip()[len("Negative prompt:") :]
        (negative if in_negative else prompt).append(line.strip())
    settings = {key.strip(): unquote(value.strip()) for key, value in pairs}
    return "\n".join(prompt), "\n".join(negative), settings


def tool_of(settings: dict[str, str]) -> tuple[str, str]:
    """(the format's name for notes, the tool whose CLIP skip numbering applies), from what the text says of itself:
    Forge's Version starts with "f" and a number ("f2.0.1v1.10.1-previous-…"), SD.Next writes "App: SD.Next",
    Fooocus "Version: Fooocus v2…", this app "Version: clipskip …"."""
    version = settings.get("Version", "")
    if version.startswith("clipskip "):
        return "a clipskip cell", "clipskip"
    if version.startswith("Fooocus"):
        return "Fooocus (its AUTOMATIC1111 scheme)", "Fooocus"
    if settings.get("App") == "SD.Next":
        return "SD.Next", "SD.Next"
    if re.match(r"f[0-9]", version):
        return "Forge", "Forge"
    return "AUTOMATIC1111", "AUTOMATIC1111"


def read(texts: dict[str, str]) -> ImageSettings | None:
    """The settings in a `parameters` text written as AUTOMATIC1111 writes it; None for a JSON object there (Fooocus's
    scheme, or another tool's), which would otherwise become the prompt. A prompt may start with "{red|blue}"."""
    text = texts.get(KEY)
    if text is None or text.lstrip().startswith('{"'):
        return None
    return read_text(text)


def read_clipskip_cell(texts: dict[str, str]) -> ImageSettings | None:
    """A cell this app wrote (its `Version` says clipskip): read as AUTOMATIC1111 text, before the ComfyUI graphs the
    cell also carries, which restate it in ComfyUI's terms."""
    found = read(texts)
    return found if found is not None and found.format == "a clipskip cell" else None


def read_text(text: str) -> ImageSettings:
    """What an AUTOMATIC1111 `parameters` text says, as this app's settings, with notes on what could not be used.

    Raises ValueError for a text longer than any real one.
    """
    if len(text) > MAX_PARAMETERS_CHARS:
        raise ValueError(
            f"this image's parameters text is {len(text):,} characters long; at most {MAX_PARAMETERS_CHARS:,} are read"
        )
    prompt, negative, settings = read_parameters(text)
    name, tool = tool_of(settings)
    values = FormValues()
    values.text("prompt", "prompt", prompt)
    values.text("negative_prompt", "negative prompt", negative)
    values.number("steps", "Steps", settings.get("Steps"))
    values.number("guidance_scale", "CFG scale", settings.get("CFG scale"))
    values.number("seed", "Seed", settings.get("Seed"))
    clip_skip = settings.get("Clip skip")
    if clip_skip is not None and tool == "SD.Next" and re.fullmatch(r"[0-9]{1,2}\.0{1,2}", clip_skip):
        clip_skip = clip_skip.split(".")[0]  # its slider writes a whole number as "2.0"
    own = settings.get(OWN_SKIP) if tool == "clipskip" else None  # this app's fractional or per-encoder column
    if own is not None:
        clip_skip = own
        try:
            clip_skip_number = parse_skip(own, OWN_SKIP, shown)
        except ValueError as error:
            values.notes.append(f"{error}; the form's skips are kept")
            clip_skip_number = None
    elif clip_skip is not None and tool == "SD.Next" and re.fullmatch(r"[0-9]{1,2}\.[0-9]{1,2}", clip_skip):
        clip_skip_number = parse_skip(clip_skip)  # its fractional skip: numbering.skip_for counts it per family
    else:
        clip_skip_number = values.number("clip_skip", "Clip skip", clip_skip, 1, MAX_CLIP_SKIP)
    if "Size" in settings:
        size = SIZE.fullmatch(settings["Size"])
        values.size("Size", *(size.groups() if size else (None, None)), written=settings["Size"])
    sampler = settings.get("Sampler")
    if sampler and settings.get("Schedule type", "Automatic") not in ("Automatic", ""):
        sampler = f"{sampler} {settings['Schedule type']}"  # AUTOMATIC1111 1.9+ writes the schedule apart
    values.sampler(sampler if sampler in SAMPLERS else None, sampler)
    # AUTOMATIC1111's emphasis says how it read the prompt: left out, it is "Original" (a1111)
    if settings.get("Prompt syntax") == "comfyui":  # this app's own field: ComfyUI's rules have no emphasis name
        values.form["prompt_syntax"] = "comfyui"
    elif settings.get("Emphasis", "Original") in EMPHASIS:
        values.form["prompt_syntax"] = EMPHASIS[settings.get("Emphasis", "Original")]
    else:
        emphasis = shown(settings["Emphasis"])
        values.notes.append(f"Emphasis {emphasis} is not one this app reads; AUTOMATIC1111's is used")
        values.form["prompt_syntax"] = "a1111"
    values.model(settings.get("Model"))
    values.notes += unused(settings)
    unread = clip_skip is not None and clip_skip_number is None  # a bad number: the form keeps its skips
    family = None
    if tool == "Fooocus":  # SDXL only, its prompts weighted with ComfyUI's code, its own default clip skip
        values.form["prompt_syntax"], family = "comfyui", SDXL.name
        if clip_skip is None:  # left out (a bad value is `unread`)
            clip_skip_number, note = fooocus_absent_skip(settings.get("Version"))
            values.notes += [note] if note else []
    return values.result(name, None if unread else ToolSkip(tool, clip_skip_number), family)


def unused(settings: dict[str, str]) -> list[str]:
    """Notes on what the image's tool did that this app does not: a second pass, face fixes, LoRAs, img2img."""
    notes = []
    if "Hires upscale" in settings or "Hires resize-1" in settings:
        target = (
            f"to {settings['Hires resize-1']}×{settings['Hires resize-2']}"
            if settings.get("Hires resize-1", "0") != "0"
            else f"×{settings.get('Hires upscale', '?')}"
        )
        first = f" {cut(settings['Size'])}" if "Size" in settings else ""
        notes.append(f"hires fix {cut(target)} not applied: loaded at the first pass's size{first}")
    elif "Denoising strength" in settings:
        notes.append("it was made from another image (img2img); here it is rendered from noise")
    if adetailer := sorted({key for key in settings if key.startswith("ADetailer")}):
        notes.append(f"ADetailer's fixes ({len(adetailer)} settings) are not applied")
    if loras := names_in(settings.get("Lora hashes", "")):
        notes.append(
            f"its LoRAs ({', '.join(loras)}) are applied by its prompt's <lora:…> tags where this server offers them "
            "by name; a render notes those it does not"
        )
    if inversions := names_in(settings.get("TI hashes", "")):
        notes.append(
            f"its textual inversions ({', '.join(inversions)}) are used only where this server offers them by name"
        )
    if "Refiner" in settings:
        notes.append(f"its refiner {shown(settings['Refiner'])} is not applied")
    if "Variation seed" in settings:
        notes.append("its variation seed is not applied")
    return notes


def names_in(hashes: str) -> list[str]:
    """The names in a "name: hash, name: hash" field (Lora hashes, TI hashes), each cut short, at most 8."""
    names = [part.split(":", 1)[0].strip() for part in hashes.split(",", 8)[:8] if part.strip()]
    return [cut(name) for name in names if is_text(name, MAX_NAME_CHARS)]
