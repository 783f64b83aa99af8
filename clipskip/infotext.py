"""AUTOMATIC1111's `parameters` text, written for every cell and read back from any image that carries it. Pure.

The format: the prompt, a "Negative prompt: ..." line, then one line of "Key: value" pairs separated by commas,
with values that hold a comma, colon or quote JSON-quoted. AUTOMATIC1111 leaves "Clip skip" out when it is 1; this
project always writes it, and reads its absence as 1. Texts come from strangers' files: reading one takes time
linear in its length, its length is bounded first, and no number reaches the form unless it is in the app's range.
"""

import json
import re

from .request import MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE

MAX_PARAMETERS_CHARS = 64 * 1024  # a real text (two 2,000-character prompts and a long settings line) is far shorter
MAX_CLIP_SKIP = 64  # no text encoder here has more layers; the form then limits it to the chosen model's
MAX_NAME_CHARS = 1024  # model and sampler names
MAX_DIGITS = 20  # more than any number in range has; a longer one is refused before int() (which stops at 4,300)
SHOWN_CHARS = 40  # a value quoted in a message is cut to this

# AUTOMATIC1111 reads the settings line with `\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)` and findall, which
# tries again from every character of a long run of key characters without a colon: quadratic. PAIR finds the same
# pairs but never fails once it has started on a key, so findall never tries again inside one: such a run is a match
# without a value, and the quoted value's end is a lookahead, with no repetition to give back.
PAIR = re.compile(r'(\w[\w \-/]+)(?::\s*("(?:\\.|[^\\"])++"(?=,|$)|[^,]*),?)?')
INTEGER = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")  # ASCII only: int() also takes '٣', ' 3' and '1_000'
DECIMAL = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}(?:\.[0-9]{{1,{MAX_DIGITS}}})?")  # float() also takes '1e30', 'nan'
SIZE = re.compile(rf"([0-9]{{1,{MAX_DIGITS}}})x([0-9]{{1,{MAX_DIGITS}}})")
SURROGATE = re.compile("[\ud800-\udfff]")  # a JSON escape can make one; the page's UTF-8 cannot carry it


def shown(value) -> str:
    """`value` as a message quotes it: repr, so on one line, and cut short."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


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


def number_in_range(text: str, kind: type, low, high):
    """`text` as an int or float if it is a plain ASCII decimal from `low` to `high`, else None."""
    if (INTEGER if kind is int else DECIMAL).fullmatch(text) and low <= kind(text) <= high:
        return kind(text)
    return None


def form_settings(text: str, samplers) -> tuple[dict, list[str]]:
    """What an AUTOMATIC1111 `parameters` text says, as this app's settings, and notes on what could not be used.

    A value out of the app's range is left out with a note; "skips" is then [] (the form keeps its own).
    """
    if len(text) > MAX_PARAMETERS_CHARS:
        raise ValueError(
            f"this image's parameters text is {len(text):,} characters long; at most {MAX_PARAMETERS_CHARS:,} are read"
        )
    prompt, negative, settings = read_parameters(text)
    form, notes = {}, []
    for name, label, value in (("prompt", "prompt", prompt), ("negative_prompt", "negative prompt", negative)):
        if len(value) > MAX_PROMPT_CHARS:
            notes.append(
                f"its {label} ({len(value):,} characters) was left out: this app takes at most {MAX_PROMPT_CHARS:,}"
            )
        else:
            form[name] = value
    numbers = {  # key: (form name, kind, range)
        "Steps": ("steps", int, 1, MAX_STEPS),
        "CFG scale": ("guidance_scale", float, 0, MAX_GUIDANCE),
        "Seed": ("seed", int, 0, MAX_SEED),
        "Clip skip": ("skips", int, 1, MAX_CLIP_SKIP),
    }
    for key, (name, kind, low, high) in numbers.items():
        if key not in settings:
            continue
        number = number_in_range(settings[key], kind, low, high)
        if number is None:
            accepted = f"a whole number from {low} to {high}" if kind is int else f"a number from {low:g} to {high:g}"
            notes.append(f"{key} {shown(settings[key])} was left out: this app takes {accepted}")
        else:
            form[name] = number
    if "skips" in form:
        form["skips"] = [form["skips"]]
    else:
        form["skips"] = [] if "Clip skip" in settings else [1]  # AUTOMATIC1111 leaves out a clip skip of 1
    if "Size" in settings:
        size = SIZE.fullmatch(settings["Size"])
        sides = [number_in_range(side, int, MIN_SIZE, MAX_SIZE) for side in size.groups()] if size else [None]
        if None in sides or any(side % 8 for side in sides):
            notes.append(
                f"Size {shown(settings['Size'])} was left out: this app takes a width and height that are multiples "
                f"of 8 from {MIN_SIZE} to {MAX_SIZE}, like 512x768"
            )
        else:
            form["width"], form["height"] = sides
    sampler = settings.get("Sampler")
    if sampler and settings.get("Schedule type", "Automatic") not in ("Automatic", ""):
        sampler = f"{sampler} {settings['Schedule type']}"  # AUTOMATIC1111 1.9+ writes the schedule apart
    if sampler in samplers:
        form["scheduler"] = sampler
    elif sampler:
        notes.append(f"sampler {shown(sampler)} is not offered here")
    # AUTOMATIC1111's emphasis says how it read the prompt: left out, it is "Original" (a1111)
    emphasis = {"Original": "a1111", "No norm": "a1111-no-norm", "None": "plain"}
    if settings.get("Prompt syntax") == "comfyui":  # this app's own field: ComfyUI's rules have no emphasis name
        form["prompt_syntax"] = "comfyui"
    elif settings.get("Emphasis", "Original") in emphasis:
        form["prompt_syntax"] = emphasis[settings.get("Emphasis", "Original")]
    else:
        notes.append(f"Emphasis {shown(settings['Emphasis'])} is not one this app reads; AUTOMATIC1111's is used")
        form["prompt_syntax"] = "a1111"
    model = settings.get("Model")
    if model is not None and (len(model) > MAX_NAME_CHARS or SURROGATE.search(model)):
        notes.append(f"its model name {shown(model)} was left out: it is not a name a model can have")
    elif model is not None:
        form["model"] = model
    return form, notes
