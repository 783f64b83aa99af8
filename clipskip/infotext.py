"""AUTOMATIC1111's `parameters` text, written for every cell and read back from any image that carries it. Pure.

The format: the prompt, a "Negative prompt: ..." line, then one line of "Key: value" pairs separated by commas,
with values that hold a comma, colon or quote JSON-quoted. AUTOMATIC1111 leaves "Clip skip" out when it is 1; this
project always writes it, and reads its absence as 1.
"""

import json
import re

# AUTOMATIC1111's own pattern for the key-value line (modules/infotext_utils.py)
PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
SIZE = re.compile(r"^(\d+)x(\d+)$")


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


def read_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, key-value settings) from a `parameters` text, as AUTOMATIC1111 parses it."""
    *lines, last = text.strip().split("\n")
    if len(PARAM.findall(last)) < 3:  # not a settings line: part of the prompt
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.strip().startswith("Negative prompt:"):
            in_negative = True
            line = line.strip()[len("Negative prompt:") :]
        (negative if in_negative else prompt).append(line.strip())
    settings = {key.strip(): unquote(value.strip()) for key, value in PARAM.findall(last)}
    return "\n".join(prompt), "\n".join(negative), settings


def form_settings(text: str, samplers) -> tuple[dict, list[str]]:
    """What an AUTOMATIC1111 `parameters` text says, as this app's settings, and notes on what could not be used."""
    prompt, negative, settings = read_parameters(text)
    form, notes = {"prompt": prompt, "negative_prompt": negative}, []
    numbers = {"Steps": ("steps", int), "CFG scale": ("guidance_scale", float), "Seed": ("seed", int)}
    for key, (name, kind) in numbers.items():
        if key in settings:
            try:
                form[name] = kind(settings[key])
            except ValueError:
                notes.append(f"{key} {settings[key]!r} is not a number")
    form["skips"] = [int(settings["Clip skip"])] if settings.get("Clip skip", "").isdigit() else [1]
    if match := SIZE.match(settings.get("Size", "")):
        form["width"], form["height"] = int(match[1]), int(match[2])
    sampler = settings.get("Sampler")
    if sampler and settings.get("Schedule type", "Automatic") not in ("Automatic", ""):
        sampler = f"{sampler} {settings['Schedule type']}"  # AUTOMATIC1111 1.9+ writes the schedule apart
    if sampler in samplers:
        form["scheduler"] = sampler
    elif sampler:
        notes.append(f"sampler {sampler!r} is not offered here")
    if "Model" in settings:
        form["model"] = settings["Model"]
    return form, notes
