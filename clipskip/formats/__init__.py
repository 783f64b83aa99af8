"""Other tools' image metadata read into this app's form, one module per tool, chosen by what the texts are.
Pure Python.

`read_image(path)` reads a PNG's text chunks (bounded, pixels never decoded) and gives them to each reader in turn:
this app's manifest, ComfyUI's graphs, InvokeAI's, NovelAI's and Fooocus's JSON, and the AUTOMATIC1111 `parameters`
text (also Forge's, SD.Next's and Fooocus's "a1111" scheme). A reader answers None for texts that are not its
format, and a ValueError for texts that are but cannot be used. `form_for(settings, family)` then turns the tool's
CLIP skip into clipskip's for the model that will render (`numbering`).
"""

from pathlib import Path

from ..families import Family
from ..skips import Skip
from . import a1111, comfyui, fooocus, invokeai, manifest, novelai
from .fields import MAX_CLIP_SKIP, ImageSettings, model_stem, printable
from .numbering import skip_for
from .png import png_texts

TOOLS = (manifest, comfyui, invokeai, novelai, fooocus, a1111)  # the most specific first; a1111 reads any text
READERS = (manifest.read, a1111.read_clipskip_cell, *(tool.read for tool in TOOLS[1:]))
TEXTS = {key: size for tool in TOOLS for key, size in tool.TEXTS.items()}
NO_SETTINGS = (
    "this image carries no generation settings that this app reads (AUTOMATIC1111, Forge, SD.Next, ComfyUI, "
    "Fooocus, InvokeAI, NovelAI or clipskip); images re-saved by editors or sent through chat apps and some sites "
    "lose them"
)


def read_image(path: Path) -> ImageSettings:
    """The settings a PNG's metadata holds, in this app's terms, and notes; the file is a stranger's.

    Raises ValueError (one line saying what) for a file that is not a PNG, is too large, holds no settings this app
    reads, or holds damaged ones. Nothing costs more than time linear in a bounded size.
    """
    texts = png_texts(path, TEXTS)
    try:
        for read in READERS:
            if (found := read(texts)) is not None:
                found.notes = [printable(note) for note in found.notes]
                return found
    except ValueError as error:  # one printable line, whatever a stranger's text put into it
        raise ValueError(printable(str(error))) from None
    raise ValueError(NO_SETTINGS)


def form_for(settings: ImageSettings, family: Family) -> tuple[dict, list[str]]:
    """The form values for a model of `family`, and notes: the format read first, then what could not be used.

    `form["skips"]` is the image's skip in clipskip's numbering for `family` ([] when it has none here, so the form
    keeps its own); the caller still limits it to the model's layers.
    """
    form, notes = dict(settings.form), list(settings.notes)
    if settings.family is not None and settings.family != family.name:
        notes.append(f"it was made with an {settings.family} model; the chosen model is {family.name}")
    if settings.clip_skip is not None:
        skip, note = skip_for(settings.clip_skip.tool, family, settings.clip_skip.value)
        if skip is not None and skip > MAX_CLIP_SKIP:  # a tool's own number can count past this app's range
            note, skip = f"its CLIP skip is {skip} here, beyond any text encoder's {MAX_CLIP_SKIP} layers", None
        if isinstance(skip, Skip):
            try:
                skip.parts(family.labels)
                skip = skip.json  # as the manifest writes it: an int, or text ("1.5", "L1/G2")
            except ValueError as error:  # a skip per encoder, for a model with one text encoder
                note, skip = f"{error} ({family.name}); the form's skips are kept", None
        form["skips"] = [] if skip is None else [skip]
        notes += [note] if note else []
    form.setdefault("skips", [])  # a skip the reader could not use: the form keeps its own
    return form, notes


def match_model(name: str, offered) -> str | None:
    """Which of the `offered` names an image's model name stands for: the same name, else the same file name
    without folders and extension (ComfyUI's "SD15/anime-v3.safetensors" is AUTOMATIC1111's "anime-v3"); None."""
    if name in offered:
        return name
    stem = model_stem(name)
    return next((choice for choice in offered if model_stem(choice) == stem), None)


def read_settings(path: Path, family: Family) -> tuple[dict, list[str]]:
    """`read_image` then `form_for`: the form values for a model of `family`, with the format named in the notes."""
    return form_for(read_image(path), family)
