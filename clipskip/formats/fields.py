"""What every reader of a tool's image metadata shares: the result it gives, and form values checked as they are put.
Pure Python.

Values come from strangers' files: each is type-checked (bool is not a number, '٣' and '1e30' are not digits) and
range-checked against the app's limits before it reaches the form; one that fails is left out with a note naming the
field as the tool calls it, never silently altered.
"""

import math
import re
from dataclasses import dataclass, field

from ..request import MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE
from .numbering import ToolSkip

MAX_CLIP_SKIP = 64  # no text encoder here has more layers; the form then limits it to the chosen model's
MAX_NAME_CHARS = 1024  # model and sampler names
MAX_DIGITS = 20  # more than any number in range has; a longer one is refused before int() (which stops at 4,300)
SHOWN_CHARS = 40  # a value quoted in a message is cut to this
INTEGER = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")  # ASCII only: int() also takes '٣', ' 3' and '1_000'
DECIMAL = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}(?:\.[0-9]{{1,{MAX_DIGITS}}})?")  # float() also takes '1e30', 'nan'
SURROGATE = re.compile("[\ud800-\udfff]")  # a JSON escape can make one; the page's UTF-8 cannot carry it
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")
RANGES = {  # form field: (kind, lowest, highest)
    "steps": (int, 1, MAX_STEPS),
    "guidance_scale": (float, 0, MAX_GUIDANCE),
    "seed": (int, 0, MAX_SEED),
    "clip_skip": (int, -MAX_CLIP_SKIP, MAX_CLIP_SKIP),  # a tool's own number: ComfyUI's are negative
}


@dataclass
class ImageSettings:
    """What one image's metadata says in this app's terms, before the model that will render it is known.

    `form` holds form fields (prompt, negative_prompt, seed, steps, guidance_scale, width, height, scheduler, model,
    prompt_syntax; this app's manifest also rows, skips and reference). The CLIP skip stays the tool's own number
    until the family is known (`clipskip.formats.form_for`).
    """

    format: str  # what was read, as notes name it: "AUTOMATIC1111", "ComfyUI (API prompt graph)", ...
    form: dict
    notes: list[str] = field(default_factory=list)
    clip_skip: ToolSkip | None = None  # None: `form` has this app's own "skips"
    family: str | None = None  # the family the file names ("SDXL"), where it names one


def shown(value) -> str:
    """`value` as a message quotes it: repr, so on one line, and cut short."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def cut(text: str) -> str:
    """`text` as a note quotes a name: cut short, anything that is not printable (a control character, a newline, a
    lone surrogate) written as its escape, so a note stays one line of text a page and a terminal show as such."""
    return printable(text[:SHOWN_CHARS]) + ("…" if len(text) > SHOWN_CHARS else "")


def printable(text: str) -> str:
    """`text` with each character that is not printable written as its Python escape ("\\x1b", "\\ud800")."""
    return text if text.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def number_in_range(value, kind: type, low, high):
    """`value` as an int or float if it is one (not a bool, finite) or a plain ASCII decimal text, from `low` to
    `high`; else None."""
    if isinstance(value, str):
        if not (INTEGER if kind is int else DECIMAL).fullmatch(value):
            return None
        value = kind(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        return None
    if kind is float and not math.isfinite(value):
        return None
    return kind(value) if low <= value <= high else None


def accepted(kind: type, low, high) -> str:
    return f"a whole number from {low} to {high}" if kind is int else f"a number from {low:g} to {high:g}"


def is_text(value, max_chars: int) -> bool:
    return isinstance(value, str) and len(value) <= max_chars and not SURROGATE.search(value)


def model_stem(name: str) -> str:
    """A model's name without folders or a weights file's extension: how AUTOMATIC1111 names a checkpoint."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    return next((stem[: -len(ext)] for ext in MODEL_EXTENSIONS if stem.lower().endswith(ext)), stem)


def size_of(value) -> int | None:
    """A width or height (`value` an int or its plain decimal text): a multiple of 8 from MIN_SIZE to MAX_SIZE, else
    None."""
    size = number_in_range(value, int, MIN_SIZE, MAX_SIZE)
    return size if size is not None and size % 8 == 0 else None


class FormValues:
    """Form values from one image, each checked as it is put; what fails is left out, with a note."""

    def __init__(self):
        self.form: dict = {}
        self.notes: list[str] = []

    def text(self, name: str, label: str, value) -> None:
        """A prompt or negative prompt: text of at most MAX_PROMPT_CHARS characters."""
        if value is None:
            return
        if not isinstance(value, str) or SURROGATE.search(value):
            self.notes.append(f"its {label} {shown(value)} was left out: it is not text")
        elif len(value) > MAX_PROMPT_CHARS:
            self.notes.append(
                f"its {label} ({len(value):,} characters) was left out: this app takes at most {MAX_PROMPT_CHARS:,}"
            )
        else:
            self.form[name] = value

    def number(self, name: str, label: str, value, low=None, high=None) -> int | float | None:
        """A number field of RANGES (or from `low` to `high`); `value` an int or float, or its plain decimal text.
        Returns the number, None when it is left out ("clip_skip" is returned only: it is the tool's own number)."""
        if value is None:
            return None
        kind, *limits = RANGES[name]
        low, high = limits if low is None else (low, high)
        number = number_in_range(value, kind, low, high)
        if number is None:
            self.notes.append(f"{label} {shown(value)} was left out: this app takes {accepted(kind, low, high)}")
        elif name != "clip_skip":
            self.form[name] = number
        return number

    def size(self, label: str, width, height, written: str | None = None) -> None:
        """Width and height: multiples of 8 from MIN_SIZE to MAX_SIZE; `written` is how the file wrote them."""
        sides = [size_of(side) for side in (width, height)]
        if None in sides:
            self.notes.append(
                f"{label} {shown(written or f'{width}x{height}')} was left out: this app takes a width and height "
                f"that are multiples of 8 from {MIN_SIZE} to {MAX_SIZE}, like 512x768"
            )
        else:
            self.form["width"], self.form["height"] = sides

    def model(self, value) -> None:
        """The model's name as the tool wrote it (a file name, a folder, a Hub id); matched to the server's later."""
        if value is None:
            return
        if not is_text(value, MAX_NAME_CHARS) or not value.strip():
            self.notes.append(f"its model name {shown(value)} was left out: it is not a name a model can have")
        else:
            self.form["model"] = value.strip()

    def sampler(self, ours: str | None, theirs) -> None:
        """Our sampler for the tool's `theirs` (its own name, with its scheduler where it has one), or a note."""
        if ours is not None:
            self.form["scheduler"] = ours
        elif theirs:
            self.notes.append(f"sampler {shown(theirs)} is not offered here; the sampler menu's is kept")

    def result(self, format: str, clip_skip: ToolSkip | None, family: str | None = None) -> ImageSettings:
        return ImageSettings(format, self.form, self.notes, clip_skip, family)


def json_kind(value) -> str:
    """What a JSON value is, in words; a number as itself."""
    kinds = {dict: "an object", list: "a list", str: "text", bool: "true or false", type(None): "null"}
    return kinds.get(type(value)) or shown(value)


def checked(name: str, value, kind: type, low=None, high=None):
    """`value` if it is of `kind` (bool is not int; int is float) and within `low`..`high`, else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        words = {int: "a whole number", float: "a number", str: "text", list: "a list", dict: "an object"}[kind]
        raise ValueError(f"{name} must be {words}, not {json_kind(value)}")
    if kind is float and not math.isfinite(value) or low is not None and not low <= value <= high:
        raise ValueError(f"{name} must be {number_text(low)} to {number_text(high)}, not {shown(value)}")
    return value


def number_text(number) -> str:
    return f"{number:,}" if isinstance(number, int) else f"{number:g}"


def checked_text(name: str, value, max_chars: int) -> str:
    checked(name, value, str)
    if len(value) > max_chars:
        raise ValueError(f"{name} is {len(value):,} characters long; at most {max_chars:,}")
    if surrogate := SURROGATE.search(value):
        raise ValueError(f"{name} holds a lone surrogate ({shown(surrogate[0])}), which is not text")
    return value
