"""The Gradio Blocks app: inputs, one `/compare` endpoint, outputs. No image or model logic lives here."""

import asyncio
import html
import inspect
import json
import math
import re
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial, wraps
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.data_classes import GradioRootModel
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from .cache import CellCache
from .embedded import NAME as EMBEDDED
from .families import SDXL, detect_family
from .formats import form_for, match_model, read_image
from .formats.a1111 import MAX_PARAMETERS_CHARS
from .formats.fields import FormValues, cut, shown, size_of
from .formats.png import png_texts
from .metadata import cell_caption, metrics_rows
from .outputs import BUNDLE_NAME, cell_name, finish_bundle, start_bundle, zip_path
from .prompts import token_count
from .request import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    DEFAULT_SYNTAX,
    MAX_GUIDANCE,
    MAX_PROMPT_BOX_CHARS,
    MAX_PROMPT_CHARS,
    MAX_ROWS,
    MAX_SEED,
    MAX_SIZE,
    MAX_STEPS,
    MIN_SIZE,
    RANDOM_SEED,
    SYNTAXES,
    rows_from_form,
    seed_list,
    short_repr,
)
from .samplers import DEFAULT_SAMPLER, SAMPLERS, samplers_for
from .server import (
    MAX_UPLOAD_BYTES,
    BodyLimit,
    KnownEvents,
    RenderGate,
    current_event_alive,
    is_public,
    keep_pruned,
    log,
    port_in_use,
    prune,
)
from .settings import AppSettings, app_settings, model_name
from .skips import A1111_SDXL, a1111_sdxl, from_number, parse_skip, skip_texts
from .toy.scenes import SIZE as EMBEDDED_SIZE
from .toy.scenes import unknown_words_text

STATE_TTL_S = 3600  # a session's last comparison (a folder name) is forgotten after an hour, as its files are
STATE_SESSIONS = 200  # sessions whose state (form values, the last folder) Gradio keeps; the oldest go first
# Examples that show the effect at a glance: prompt, negative prompt, seed, skips, width, height. With the built-in
# model (found by rendering: at these seeds the shapes, their places or the colours change between the skips).
EMBEDDED_EXAMPLES = [
    ["a large white triangle at the top and a large black circle at the bottom, on a red background", "", 9]
    + [[1, 4, 8, 12], 64, 64],
    ["a large orange star in the centre, on a purple background", "", 5, [1, 4, 8, 12], 64, 64],
    ["a small white square in the centre, on a blue background", "", 3, [1, 2, 3, 4], 64, 64],
]
CHECKPOINT_EXAMPLES = [  # for a real checkpoint: prompt, negative prompt, seed, skips
    ["a watercolor painting of a fox in a snowy forest, highly detailed", "blurry, lowres", 42, [1, 2, 3, 4]],
    ["portrait of an astronaut, oil painting, dramatic lighting", "", 7, [1, 2, 3, 4]],
]
SYNTAX_CHOICES = [
    ("AUTOMATIC1111: weights, [ ], BREAK, 75-token chunks", "a1111"),
    ("AUTOMATIC1111, 'No norm' emphasis", "a1111-no-norm"),
    ("ComfyUI: CLIPTextEncode weights", "comfyui"),
    ("Plain: as written, one 77-token window", "plain"),
]
LEAD = """# clipskip: CLIP skip, side by side
See what skipping the text encoder's last layers does to a prompt: one seed, several CLIP skip values, rendered
together from the same noise. Pick an example or type a prompt, then **Generate**."""
NUMBERS = """Skip *N* conditions the image on the text encoder's *N*-th layer from the end (skip 1 = the last layer):
AUTOMATIC1111's "Clip skip" *N*, ComfyUI's `CLIPSetLastLayer` −*N* (−(*N*+1) on SD 2.x), diffusers' `clip_skip` =
*N*−1 (*N*−2 on SDXL). The negative prompt is skipped alike. Each column's header names its layer and the other
tools' numbers for it; README has the table for every tool and family.

More columns: *N*.*f* (up to two decimals) blends layers *N* and *N*+1 from the end, `(1 − f)·[-N] + f·[-(N+1)]`,
as SD.Next does; on SDXL `L1/G2` gives CLIP-L skip 1 and CLIP-G skip 2. The AUTOMATIC1111 SDXL button gives the
columns AUTOMATIC1111 renders for its Clip skip 1–4 with "Clip skip SDXL: CLIP-L too" on (`L1/G2, 2, L3/G2, L4/G2`);
without that option it renders every SDXL image at skip 2.

The built-in model, `embedded`, is a tiny SD 1.x trained by this project on 64×64 scenes: it knows circles, squares,
triangles and stars in red, green, blue, yellow, white, black, orange and purple, small or large, on the left, right,
top, bottom or in the centre, on a coloured background (see the examples)."""
EMPTY_COUNT = "0/75 tokens"  # an empty prompt's count for every CLIP model, shown before the first model is in
KEYS_HINT = "Ctrl+Enter (Cmd+Enter on a Mac) generates, wherever you are on the page."
EMBEDDED_EXAMPLE_LABELS = [
    "Shapes trade places at skip 12 (skips 1, 4, 8, 12)",
    "The background turns yellow (skips 1, 4, 8, 12)",
    "A white square, then a white background (skips 1–4)",
]
CHECKPOINT_EXAMPLE_LABELS = ["A fox in a snowy forest (skips 1–4)", "An astronaut's portrait (skips 1–4)"]
KEYS_JS = """() => {
  document.addEventListener("keydown", (event) => {  // capture: before a focused checkbox toggles on Enter
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      event.stopPropagation();
      document.querySelector("#generate")?.click();
    }
  }, true);
}"""
CSS = """
#generate {min-height: 3.2em}
.caption {font-size: 0.9em; opacity: 0.8}
#grid .image-container, #difference .image-container {padding-top: 2.6em}  /* label and buttons off the headers */
#cells .grid-wrap {min-height: 0; height: auto; overflow: visible}  /* every row of cells, no scroll box */
#cells img, #slider img {image-rendering: pixelated}  /* small cells enlarged crisp, as in the grid */
.stale {opacity: 0.35; transition: opacity 0.2s}  /* the last results while a new render runs */
#similarity .matplotlib {padding-top: 2.6em}  /* the label off the plot */
#similarity .matplotlib img {width: 100%; height: auto}
#metrics th, #metrics th * {word-break: normal !important; overflow-wrap: normal !important; hyphens: none}
.secondary-wrap input[role=combobox] {padding-right: 1.6em; text-overflow: ellipsis}  /* text off the arrow */
#status {border-left: 4px solid var(--error-border-color, #ef4444); padding: 0.2em 0.8em}
#status.note {border-left-color: var(--border-color-primary, #9ca3af)}
#cells .grid-wrap, #cells .grid-container {max-height: none !important}
@media (max-width: 640px) {
  #cells .grid-container {grid-template-columns: repeat(2, minmax(0, 1fr)) !important;
    grid-template-rows: none !important; grid-auto-rows: auto !important}
}
"""
SHOW_RESULTS_JS = """() => {  // on a narrow screen the results sit under the form: bring them (or why not) into view
  if (window.innerWidth >= 900) return;
  const status = document.querySelector("#status");
  const target = status && status.offsetParent !== null ? status : document.querySelector("#grid");
  target?.scrollIntoView({behavior: "smooth", block: "center"});
}"""
METRICS_HEADERS = ["row", "CLIP skip", "layer", "mean abs. difference (0–255)", "SSIM", "note"]


def on_zero_gpu(function):
    """On a Hugging Face ZeroGPU Space a GPU is lent only inside `spaces.GPU` functions; elsewhere a no-op."""
    try:
        import spaces
    except ImportError:
        return function
    return spaces.GPU(duration=120)(function)


@dataclass(frozen=True)
class ModelView:
    """What the form shows for one loaded model."""

    note: str
    choices: list[tuple[str, int]]
    skips: list[int]
    width: int
    height: int
    samplers: tuple[str, ...] = tuple(SAMPLERS)  # those that work on the model (SD 3's flow matching: Euler)
    plain_only: bool = False  # SD 3: prompts are read as "plain" only
    family: str = ""  # the model's family name; "" while it loads


def compare(pipe, *args, **kwargs):
    """`clipskip.compare`, imported (with torch and diffusers) on first use: the server listens before either is."""
    from .comparison import compare as compare_

    return compare_(pipe, *args, **kwargs)


def load_pipeline(model: str, **kwargs):
    """`clipskip.load_pipeline`, imported on first use (see `compare`)."""
    from .loading import load_pipeline as load_pipeline_

    return load_pipeline_(model, **kwargs)


def form_view(note: str, layers: int, native: int, width: int, height: int, **details) -> ModelView:
    first = max(1, native - 1)  # the native value and its neighbours, four in all where the encoder has them
    return ModelView(
        note=note,
        choices=[(f"{n} (native)" if n == native else str(n), n) for n in range(1, min(layers, 12) + 1)],
        skips=list(range(first, min(layers, first + 3) + 1)),
        width=width,
        height=height,
        **details,
    )


def describe(name: str, pipe) -> ModelView:
    from .comparison import native_size
    from .encoding import encoder_layers

    family, layers = detect_family(pipe), encoder_layers(pipe)
    native = family.native_skip
    counts = " and ".join(str(getattr(pipe, encoder).config.num_hidden_layers) for encoder, _ in family.encoders)
    note = f"Model: **{name}** · {family.name} · text encoder layers: {counts} · native CLIP skip {native}"
    if name == EMBEDDED:
        note += " · the built-in model, trained here on coloured shapes: it knows only the scene words of the examples"
    if names := list(getattr(pipe, "clipskip_embeddings", {})):
        note += " · textual inversions: " + ", ".join(f"`{n}`" for n in names)
    if names := list(getattr(pipe, "clipskip_loras", {})):
        note += " · LoRAs: " + ", ".join(f"`{n}`" for n in names)
    plain_only = family.t5 is not None
    if plain_only:
        t5 = "T5 unchanged by the skip" if getattr(pipe, family.t5[0], None) is not None else "no T5 (zeros instead)"
        note += f" · pooled and {t5} · prompts read as plain · flow matching: sampler Euler"
    samplers = tuple(samplers_for(pipe.scheduler))
    return form_view(
        note, layers, native, *native_size(pipe), family=family.name, samplers=samplers, plain_only=plain_only
    )


def image_menus(view: ModelView, form: dict, notes: list[str]) -> dict:
    """The sampler and prompt syntax menus for an image's settings on `view`'s model: that model's choices and, as
    `family_menus`, its own values where it has them; else the image's, where the model takes them (a note says so
    where it does not)."""
    sampler_menu, syntax_menu, _ = family_menus(view)
    sampler, syntax = form.get("scheduler"), form.get("prompt_syntax")
    if sampler is not None and sampler not in view.samplers:
        notes.append(f"its sampler {sampler} does not work on {view.family} models here; {view.samplers[0]} is used")
    elif sampler is not None:
        sampler_menu = gr.Dropdown(choices=list(view.samplers), value=sampler)
    if view.plain_only:  # the model's one syntax, whatever the image's
        if syntax not in (None, "plain"):
            notes.append(f"its prompt syntax {syntax} does not apply to {view.family} models; plain is used")
    elif syntax is not None:
        syntax_menu = gr.Dropdown(choices=SYNTAX_CHOICES, value=syntax)
    return {"scheduler": sampler_menu, "prompt_syntax": syntax_menu}


def family_menus(view: ModelView) -> tuple:
    """The sampler and prompt syntax menus for a model: SD 3 offers Euler and "plain" only, and chooses them; other
    models every sampler and syntax, the visitor's choice kept. Then the "AUTOMATIC1111 SDXL" button, shown for
    SDXL models only."""
    sampler = {} if DEFAULT_SAMPLER in view.samplers else {"value": view.samplers[0]}
    syntaxes = [choice for choice in SYNTAX_CHOICES if choice[1] == "plain" or not view.plain_only]
    syntax = {"value": "plain"} if view.plain_only else {}
    return (
        gr.Dropdown(choices=list(view.samplers), **sampler),
        gr.Dropdown(choices=syntaxes, **syntax),
        gr.Button(visible=view.family == SDXL.name),
    )


def loading_view(name: str, model: str) -> ModelView:
    """The form while the first model loads: the built-in model's own values (a test checks them against
    `describe`), else SD 1.x's (12 layers, 512x512); the page puts the model's own in when it is loaded."""
    size = EMBEDDED_SIZE if model == EMBEDDED else 512
    return form_view(f"Loading model **{name}**… Generate is ready when it is.", 12, 1, size, size)


MAX_LORA_TEXT_CHARS = 4000  # "name:weight, " for 64 LoRAs with the longest names
MAX_LORA_WEIGHT = 4.0  # clipskip.loras.MAX_WEIGHT: this module loads before torch


def lora_text(names: Sequence[str], weights: Sequence[float]) -> str:
    """The page's LoRA sliders as /compare's `loras` text: "name:weight, name:weight"."""
    return ", ".join(f"{name}:{weight:g}" for name, weight in zip(names, weights, strict=True))


def lora_weights(text, server: dict[str, float]) -> dict[str, float]:
    """/compare's `loras` ("name:weight, …", each name one of the server's LoRAs, each weight from -4 to 4, 0 off)
    over the server's starting weights (`--lora FILE:weight`): every LoRA's weight for every row; ValueError naming
    the parameter otherwise. Bounded in length before it is split."""
    if text is None or text == "":
        return dict(server)
    if not isinstance(text, str):
        raise ValueError(f"loras must be text like 'name:0.8, other:0', not {type(text).__name__}")
    if len(text) > MAX_LORA_TEXT_CHARS:
        raise ValueError(f"loras is {len(text):,} characters; at most {MAX_LORA_TEXT_CHARS:,}")
    weights, named = dict(server), set()
    for part in text.split(","):
        name, colon, number = part.strip().rpartition(":")
        if not colon or name not in server:
            listed = ", ".join(server) or "none (the server loads them with --lora FILE)"
            raise ValueError(
                f"loras names {short_repr(part.strip())}; give name:weight for this server's LoRAs: {listed}"
            )
        try:
            weight = float(number)
        except ValueError:
            weight = math.nan
        if not -MAX_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT:  # also NaN
            raise ValueError(
                f"loras: the weight of {name} must be from {-MAX_LORA_WEIGHT:g} to {MAX_LORA_WEIGHT:g} (0 is off), "
                f"not {short_repr(number)}"
            )
        if name in named:  # which weight was meant is not for this app to guess
            raise ValueError(f"loras gives {name} twice; give each LoRA's weight once")
        named.add(name)
        weights[name] = weight
    return weights


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def reuse_seed(used) -> int:
    """The seed box after ♻️: the last render's (first) seed, or random when there was none."""
    first = used[:12].split(",")[0].strip() if isinstance(used, str) else ""
    return int(first) if first.isascii() and first.isdigit() and int(first) <= MAX_SEED else RANDOM_SEED


def short_row_labels(metadata: dict) -> list[str]:
    by = metadata["rows_by"]
    return [f"seed {row['seed']}" if by == "seed" else f"prompt {i}" for i, row in enumerate(metadata["rows"], 1)]


def cell_choices(metadata: dict) -> list[tuple[str, str]]:
    """Every cell, for the A/B pickers: (label, "row:skip")."""
    labels = short_row_labels(metadata)
    return [(f"{labels[r]} · skip {skip}", f"{r}:{skip}") for r in range(len(labels)) for skip in metadata["skips"]]


FORM_FIELDS = ["prompt", "negative_prompt", "seed", "seeds", "prompt_rows", "skips", "steps", "guidance_scale"]
FORM_FIELDS += ["width", "height", "scheduler", "model", "reference", "prompt_syntax", "note", "status", "more_skips"]


def saved_bundle(root: Path, name) -> Path | None:
    """The bundle folder `name` under `root` when `name` (a browser's stored value: anything) is a bundle folder's
    name (`outputs.BUNDLE_NAME`, so never a path) and the folder is still there; else None."""
    if not isinstance(name, str) or not BUNDLE_NAME.fullmatch(name) or not (root / name).is_dir():
        return None
    return root / name


def gallery_items(folder: Path, metadata: dict) -> list[tuple[str, str]]:
    """The cell files of a comparison with short captions (the grid and the metadata say the rest)."""
    columns = {column["skip"]: column for column in metadata["columns"]}
    several = len(metadata["rows"]) > 1
    return [
        (
            str(folder / cell_name(metadata, r, skip)),
            f"{label} · skip {skip}" if several else cell_caption(columns[skip]),
        )
        for r, label in enumerate(short_row_labels(metadata))
        for skip in metadata["skips"]
    ]


def bundle_metadata(folder: str | None) -> dict | None:
    """The metadata of a comparison this server wrote, or None once its files have been cleaned up."""
    try:
        return json.loads((Path(folder) / "comparison.json").read_text(encoding="utf-8"))
    except (TypeError, OSError, ValueError):
        return None


CHOICE = re.compile(r"(\d{1,2}):([0-9LGlg./]{1,24})")  # "row:skip", the skip as the metadata writes it


def cell_image(folder: str | None, choice) -> str | None:
    """The PNG of one cell ("row:skip") of the comparison in `folder`, or None."""
    metadata = bundle_metadata(folder)
    match = CHOICE.fullmatch(choice) if isinstance(choice, str) else None
    if metadata is None or match is None:
        return None
    try:
        row, skip = int(match[1]), parse_skip(match[2]).json
    except ValueError:
        return None
    if row >= len(metadata["rows"]) or skip not in metadata["skips"]:
        return None
    return str(Path(folder) / cell_name(metadata, row, skip))


def pick_cells(folder: str | None, a, b):
    """The A/B slider's two cells, and AUTOMATIC1111's `parameters` of A to copy."""
    first = cell_image(folder, a)
    return (first, cell_image(folder, b)), cell_parameters_text(first)


def cell_parameters_text(path: str | None) -> str:
    """The `parameters` text a cell PNG of this server carries (AUTOMATIC1111's PNG Info shows the same)."""
    if path is None:
        return ""
    try:
        return png_texts(Path(path), {"parameters": MAX_PARAMETERS_CHARS}).get("parameters", "")
    except ValueError:
        return ""


def pick_from_gallery(folder: str | None, event: gr.EventData):
    """A click on a gallery cell opens the A/B tab with that cell as A and its row's reference cell as B (another
    skip of the row when it is the reference): the skip's effect, side by side. The click's event data is read
    here, raw: Gradio's own `gr.SelectData` failed with a traceback on data a client left out."""
    clicked = event._data.get("index") if isinstance(event._data, dict) else None
    if not isinstance(clicked, int) or isinstance(clicked, bool):
        raise refusal(
            f"a gallery click's event data must be {{'index': a cell's number, …}}, not {short_repr(event._data)}",
            "Wrong value",
        )
    metadata = bundle_metadata(folder)
    choices = cell_choices(metadata) if metadata is not None else []
    if not 0 <= clicked < len(choices):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    a = choices[clicked][1]
    row = a.split(":")[0]
    b = f"{row}:{metadata['reference_skip']}"
    if b == a:
        b = next((value for _, value in choices if value.startswith(f"{row}:") and value != a), a)
    slider, parameters = pick_cells(folder, a, b)
    return a, b, slider, parameters, gr.Tabs(selected="ab")


def show_analysis(folder: str | None):
    """The difference grid, metrics, similarity plot, download and A/B pickers for the session's latest comparison,
    read back from its files: a session keeps only their folder's name."""
    from .plots import similarity_figure  # matplotlib: imported when first drawn, not while the server starts

    metadata = bundle_metadata(folder)
    if metadata is None:
        gr.Warning("This comparison's files were cleaned up (they are kept for an hour); generate it again.")
        return [gr.skip()] * 9
    choices = cell_choices(metadata)
    reference = f"0:{metadata['reference_skip']}"
    other = next((value for _, value in choices if value != reference), reference)
    metrics = pd.DataFrame(metrics_rows(metadata), columns=METRICS_HEADERS)
    for column, digits in ((METRICS_HEADERS[3], 1), (METRICS_HEADERS[4], 3)):  # the digits the badges show
        metrics[column] = ["" if pd.isna(value) else f"{value:.{digits}f}" for value in metrics[column]]
    slider, parameters = pick_cells(folder, reference, other)
    return (
        str(Path(folder) / "difference.png"),
        metrics,
        similarity_figure(metadata),
        gr.update(value=str(zip_path(Path(folder))), visible=True),
        gr.Dropdown(choices=choices, value=reference),
        gr.Dropdown(choices=choices, value=other),
        slider,
        parameters,
        ", ".join(str(seed) for seed in dict.fromkeys(row["seed"] for row in metadata["rows"])),
    )


class RawValue(GradioRootModel):
    """Any value, as the client sent it. Set as a file box's data model, it hands the handler the raw file data
    unchecked: Gradio's own check fails with a bare "Error" on malformed data from a hostile client, where the
    handler (`uploaded_path`) answers it."""

    root: Any


def image_output(label: str, elem_id: str) -> gr.Image:
    """A PNG shown as the file it is, so that its download keeps the text it carries."""
    return gr.Image(
        label=label,
        type="filepath",
        format="png",
        interactive=False,
        buttons=["download", "fullscreen"],
        elem_id=elem_id,
    )


def public_names(models: Sequence[str]) -> dict[str, str]:
    """How the page and the metadata name each model, to the model it stands for: `loading.model_name` (a single file
    by its name without extension, as AUTOMATIC1111 names it; a server's paths are nobody's business), made unique;
    the weights' hash in the metadata tells apart two files of one name."""
    names = {}
    for model in models:
        name = model_name(model)
        unique, n = name, 1
        while unique in names:
            n += 1
            unique = f"{name} ({n})"
        names[unique] = model
    return names


UPLOAD = re.compile(r"[0-9a-f]{64}")  # Gradio stores each upload in a folder named by its content's SHA-256


def uploaded_path(file) -> Path | None:
    """The file a visitor uploaded, from Gradio's file data ({"path": ...}): only a file where Gradio's upload route
    puts one (its upload folder / content hash / name), whatever path a client claims, so no bundle or other file
    is ever read; None for anything else."""
    path = file.get("path") if isinstance(file, dict) else None
    if not isinstance(path, str) or not path or len(path) > 4096 or "\0" in path:
        return None
    upload = Path(path).resolve()
    root = Path(get_upload_folder()).resolve()
    inside = upload.parent.parent == root and UPLOAD.fullmatch(upload.parent.name) is not None
    return upload if inside and upload.is_file() else None


MARKDOWN_SIGNS = re.compile(r"([\\`*_\[\]()#+\-!|~>{}.])")


AUTOLINKS = re.compile(r"(:|www|@)(?=\S)", re.IGNORECASE)  # where GFM autolinks start: a scheme, www., an e-mail


def as_text(text: str) -> str:
    """A stranger's text as Markdown that shows it as written: no HTML tag, link, image or emphasis of its own, and
    no address made a link by the Markdown renderer's autolinking (`http://`, `www.`, `a@b.c`): a zero-width space
    breaks each."""
    return AUTOLINKS.sub("\\1\u200b", MARKDOWN_SIGNS.sub(r"\\\1", html.escape(text, quote=False)))


def message(text: str, kind: str = "refusal"):
    """The message beside Generate, a refusal or a note: shown until the next action, hidden when there is none."""
    return gr.update(value=text, visible=bool(text), elem_classes=[kind])


def ready_button():
    return gr.update(interactive=True, value="Generate")


def idle_stop():
    return gr.update(interactive=False)  # nothing to stop


def busy_button():
    return gr.update(interactive=False, value="Rendering…")


def show_fresh_analysis(folder: str | None):
    """`show_analysis` after a render that finished; nothing after a refusal (the last results stay)."""
    return [gr.skip()] * 9 if folder is None else show_analysis(folder)


SEED_LABEL = "Seed (−1 = random)"
ROWS_LABEL = "Rows and reference"


def rows_state(seeds, prompt_rows):
    """The Seed box's label and the folded rows' title: they say when rows replace the seed or split the prompt."""
    if prompt_rows is True:
        return gr.update(label=f"{SEED_LABEL}, one for every prompt row"), gr.update(
            label=f"{ROWS_LABEL} · on: one row per line of the prompt box", open=True
        )
    listed = seeds.strip() if isinstance(seeds, str) else ""
    if listed:
        return gr.update(label=f"{SEED_LABEL}: replaced by the seed rows below"), gr.update(
            label=f"{ROWS_LABEL} · on: one row per seed ({cut(listed)})", open=True
        )
    return gr.update(label=SEED_LABEL), gr.update(label=ROWS_LABEL)


def reference_choices(view: ModelView, ticked, more="") -> list[tuple[str, int | str]]:
    """The difference view's reference: the model's native skip (0), one of the skips ticked, or one of the columns
    of `more` (the "More columns" text; values it cannot read are left out: Generate says why)."""
    ticked = set(ticked) if isinstance(ticked, list) else set()
    choices = [("native (else the first)", 0)] + [(label, n) for label, n in view.choices if n in ticked]
    for skip in more_columns(more):
        if all(skip != value for _, value in choices):
            choices.append((str(skip), skip.json))
    return choices


MORE_LABEL = "More columns"


def more_columns(text) -> list:
    """The columns of the "More columns" text that read as skips (`clipskip.skips.parse_skip`), in order, the
    a1111-sdxl preset as its four; the rest are left out (`merged_skips` refuses them)."""
    if not isinstance(text, str):
        return []
    try:
        parts = skip_texts(text, MORE_LABEL)
    except ValueError:
        return []
    columns = []
    for part in parts:
        try:
            columns += a1111_sdxl() if part.lower() == A1111_SDXL else [parse_skip(part)]
        except ValueError:
            continue
    return columns


def merged_skips(ticked, more):
    """The columns to render: the boxes ticked, then the "More columns" text's ("1.5, L1/G2", "a1111-sdxl"), each as
    `compare` takes it. The text is checked for type and length before it is split; a value it cannot read is a
    ValueError naming the field. `ticked` passes through unchanged for `compare` to check."""
    if more is None or (isinstance(more, str) and not more.strip()):
        return ticked
    if not isinstance(more, str):
        raise ValueError(f"{MORE_LABEL} must be text, like 1.5, L1/G2; not {shown(more)}")
    parts = skip_texts(more, MORE_LABEL)
    for part in parts:
        if part.lower() != A1111_SDXL:
            parse_skip(part, f"each value of {MORE_LABEL}", shown)
    return [*ticked, *parts] if isinstance(ticked, list) else ticked


def split_columns(skips: list) -> tuple[list[int], str]:
    """A form's skips (ints, or text as the manifest writes it) as the boxes to tick and the "More columns" text."""
    columns = [parse_skip(skip) for skip in skips]
    return [skip.json for skip in columns if skip.whole], ", ".join(str(skip) for skip in columns if not skip.whole)


def a1111_sdxl_columns(family: str):
    """The "AUTOMATIC1111 SDXL" button: no box ticked and AUTOMATIC1111's Clip skip 1 to 4 on SDXL with "Clip skip
    SDXL: CLIP-L too" in More columns (L1/G2, 2, L3/G2, L4/G2), in its order; on another family the form stays and
    the message says why."""
    if family != "SDXL":
        why = f"this model is {family}" if family else "the model is still loading"
        return gr.skip(), gr.skip(), message(f"**The AUTOMATIC1111 SDXL preset is for SDXL models**; {why}.")
    columns = ", ".join(str(skip) for skip in a1111_sdxl())
    note = (
        "AUTOMATIC1111's Clip skip 1–4 on SDXL with its option “Clip skip SDXL: CLIP-L too” on (CLIP-L at N, CLIP-G "
        "at 2); without the option it renders every SDXL image at skip 2."
    )
    return gr.CheckboxGroup(value=[]), columns, message(note, "note")


def size_note(view: ModelView, width, height) -> str:
    """A word when the size is not the model's own: other sizes draw worse, the built-in model's much worse."""
    if (width, height) == (view.width, view.height) or not all(isinstance(side, int) for side in (width, height)):
        return ""
    return f"⚠ This model was trained at {view.width}×{view.height}; other sizes draw worse."


class RenderSteps:
    """The step each session's render is at, for Stop to report: kept while the render runs and after it is
    cancelled (Stop's handler may run after the cancellation), at most MAX_ENTRIES, the oldest dropped."""

    MAX_ENTRIES = 1000

    def __init__(self):
        self._steps: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def set(self, session: str, step: int, total: int) -> None:
        with self._lock:
            self._steps[session] = (step, total)
            self._steps.move_to_end(session)
            while len(self._steps) > self.MAX_ENTRIES:
                self._steps.popitem(last=False)

    def pop(self, session: str | None) -> tuple[int, int] | None:
        with self._lock:
            return self._steps.pop(session, None) if session is not None else None


LINK_FIELDS = ("prompt", "negative_prompt", "seed", "skips", "steps", "cfg", "width", "height", "sampler", "syntax")
LINK_FIELDS += ("seeds", "rows", "loras")  # rows=prompts: one prompt per line, one row each; loras="name:w, …"
LINK_NAMED_KEYS = 3  # unknown keys a note names; the rest are counted
LINK_SKIPS = 64  # the skips a link's `skips` may list; the rest are left out with a note
COPY_LINK_JS = """(prompt, negative_prompt, seed, skips, steps, cfg, width, height, sampler, syntax, seeds, rows,
  more, loras) => {
  const url = new URL(window.location.href.split("?")[0]);
  const columns = [...skips, ...more.split(",").map((part) => part.trim()).filter(Boolean)].join(",");
  const values = {prompt, negative_prompt, seed, skips: columns, steps, cfg, width, height, sampler, syntax};
  if (seeds.trim()) values.seeds = seeds;
  if (rows) values.rows = "prompts";
  if (loras) values.loras = loras;
  for (const [key, value] of Object.entries(values)) url.searchParams.set(key, String(value));
  if (url.search.length > 12000) return "Too long for a link: shorten the prompts";
  navigator.clipboard?.writeText(url.toString());
  return "Link copied ✓";
}"""


def link_settings(params) -> tuple[dict, list[str]]:
    """The form values a link to the page carries (`COPY_LINK_JS` writes them), each checked as a stranger's; what
    fails is left out with a note naming it. Only LINK_FIELDS are read, each at most 2,000 characters; other keys
    (but Gradio's own, like `__theme`) are named in a note, and a key given twice is taken at its last value."""
    values = FormValues()
    keys = list(params.keys()) if hasattr(params, "keys") else []
    given = {key: params.get(key) for key in LINK_FIELDS if isinstance(params.get(key), str)}
    unknown = [key for key in dict.fromkeys(keys) if key not in LINK_FIELDS and not str(key).startswith("__")]
    unknown = [key for key in unknown if key != "view"]  # Gradio's ?view=api
    if unknown:
        named = ", ".join(shown(key) for key in unknown[:LINK_NAMED_KEYS])
        more = f" and {len(unknown) - LINK_NAMED_KEYS:,} more" if len(unknown) > LINK_NAMED_KEYS else ""
        reads = ", ".join(LINK_FIELDS)
        values.notes.append(f"the link's {named}{more} are not settings of this page (it reads {reads})")
    if twice := [key for key in LINK_FIELDS if len(getattr(params, "getlist", lambda _: [])(key)) > 1]:
        values.notes.append(f"the link gives {', '.join(twice)} more than once; the last is used")
    for key, value in list(given.items()):
        if len(value) > MAX_PROMPT_CHARS:
            values.notes.append(f"the link's {key} ({len(value):,} characters) was left out: it is too long")
            del given[key]
    values.text("prompt", "prompt", given.get("prompt"))
    values.text("negative_prompt", "negative prompt", given.get("negative_prompt"))
    values.number("seed", "seed", given.get("seed"), RANDOM_SEED, MAX_SEED)  # -1: a new random seed
    values.number("steps", "steps", given.get("steps"))
    values.number("guidance_scale", "cfg", given.get("cfg"))
    sides = [side for side in ("width", "height") if side in given]
    if len(sides) == 2:
        values.size("width and height", given["width"], given["height"])
    elif sides:  # one side: the other stays the model's
        (side,) = sides
        size = size_of(given[side])
        if size is None:
            values.notes.append(
                f"the link's {side} {shown(given[side])} was left out: a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}"
            )
        else:
            values.form[side] = size
    if (skips := given.get("skips")) is not None:
        try:
            parts = skip_texts(skips, "the link's skips")
            if len(parts) > LINK_SKIPS:
                values.notes.append(f"the link's skips past the first {LINK_SKIPS} were left out")
                parts = parts[:LINK_SKIPS]
            preset = [part for part in parts if part.strip().lower() == A1111_SDXL]  # "More columns" takes it as is
            columns = [parse_skip(part) for part in parts if part not in preset]
            if twice := [str(skip) for skip, n in Counter(skip.json for skip in columns).items() if n > 1]:
                values.notes.append(f"the link lists skip {', '.join(twice)} more than once: one column each")
            whole = sorted({skip.json for skip in columns if skip.whole})
            values.form["skips"] = whole
            more = [*(str(skip) for skip in columns if not skip.whole), *preset[:1]]
            if more := ", ".join(dict.fromkeys(more)):
                values.form["more_skips"] = more
        except ValueError:
            values.notes.append(
                f"the link's skips {shown(skips)} were left out: they are values like 1,2,3 or 1.5,L1/G2"
            )
    if (sampler := given.get("sampler")) is not None:
        values.sampler(sampler if sampler in SAMPLERS else None, sampler)
    if (syntax := given.get("syntax")) is not None:
        if syntax in SYNTAXES:
            values.form["prompt_syntax"] = syntax
        else:
            values.notes.append(f"the link's syntax {shown(syntax)} was left out: one of {', '.join(SYNTAXES)}")
    if (seeds := given.get("seeds")) is not None:
        try:
            seed_list(seeds)
            values.form["seeds"] = seeds
        except ValueError as error:
            values.notes.append(f"the link's seeds were left out: {error}")
    if (rows := given.get("rows")) is not None:
        if rows == "prompts" and "seeds" in values.form:
            values.notes.append("the link's rows=prompts was left out: rows are several seeds or several prompts, "
                                "and it gives seeds")  # fmt: skip
        elif rows == "prompts":
            values.form["prompt_rows"] = True
        else:
            values.notes.append(f"the link's rows {shown(rows)} was left out: it is rows=prompts or nothing")
    if (loras := given.get("loras")) is not None:
        values.form["loras"] = loras  # read against the server's LoRAs where they are known (`link_loras`)
    return values.form, values.notes


def link_loras(text: str, server: dict[str, float]) -> tuple[dict[str, float] | None, str | None]:
    """A link's `loras` over the server's starting weights (see `lora_weights`), or None and a note saying why it was
    left out."""
    if not server:
        return None, "the link's LoRA weights were left out: this server has no LoRAs"
    try:
        return lora_weights(text, server), None
    except ValueError as error:
        return None, f"the link's LoRA weights were left out: {error}"


def refusal(message: str, title: str) -> gr.Error:
    """A visitor's mistake: shown on the page, logged as one line, not as a traceback."""
    log.info("refused (%s): %s", title, message)
    return gr.Error(sentence(message), title=title, print_exception=False)


def build_demo(
    models: Sequence[str],
    load: Callable[[str], object],
    max_batch: int | None = None,
    cache: CellCache | None = None,
    concurrency: int = 1,
    first_model: Future | None = None,
    loras: Sequence[tuple[str, float]] = (),
) -> gr.Blocks:
    """The app over `models` (the only ones it offers), each loaded by `load` on first use and shared by all;
    `max_batch` and `cache` go to every comparison, and at most `concurrency` renders run at once. `first_model`, the
    first model's load when it runs in the background (see `serve`): until it is done, what only shows the form waits
    for it without holding a worker thread, or shows the form it had while loading. `loras` are the (name, starting
    weight) of the LoRAs every model was loaded with (`--lora`), each shown with a slider."""
    names = public_names(models)
    default = next(iter(names))
    server_loras = dict(loras)
    gate = RenderGate(concurrency)
    steps_at = RenderSteps()
    downloads = Path(get_upload_folder()) / "clipskip-downloads"  # in Gradio's cache: served without a copy

    def offered(model) -> str:
        """`model` when it is one of the server's names (a client may send anything), else the first."""
        return model if isinstance(model, str) and model in names else default

    unusable: dict[str, str] = {}  # models whose files could not be loaded: answered at once, never loaded again

    def loaded(name: str):
        if name in unusable:
            raise refusal(unusable[name], "This model cannot be used")
        try:
            return load(names[name])
        except ValueError as error:
            from .loading import ModelLoadError  # a load was tried: torch is imported already
            from .loras import LoraError

            reason = str(error).replace(names[name], name)
            if isinstance(error, (ModelLoadError, LoraError)):  # the files are wrong: every later load would fail
                unusable[name] = reason + " (fix it and restart the server)"
            raise refusal(reason, "This model cannot be used") from None

    views: dict[str, ModelView] = {}  # each model's form, once it has been loaded

    def model_view(model) -> ModelView:
        """The form for `model` (see `offered`), loading it (or waiting for its load) the first time."""
        model = offered(model)
        if model not in views:
            views[model] = describe(model, loaded(model))
        return views[model]

    view = loading_view(default, names[default])  # the server listens before the model is loaded

    def loading(model=default) -> bool:
        """Whether `model` (see `offered`) is the first model and its load in the background is not done."""
        return offered(model) == default and first_model is not None and not first_model.done()

    def shown_view(model) -> ModelView:
        """`model_view`, but the form shown while loading when the first model is not in yet: never waits for it."""
        return view if loading(model) else model_view(model)

    @on_zero_gpu
    def render(pipe, *args, **kwargs):
        return compare(pipe, *args, **kwargs)

    async def rendered(
        prompt,
        negative_prompt,
        seed,
        skips,
        steps,
        guidance_scale,
        width,
        height,
        scheduler,
        model=default,
        seeds="",
        prompt_rows=False,
        reference=0,
        prompt_syntax=DEFAULT_SYNTAX,
        loras="",
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008 (Gradio's way)
        more_skips="",
    ):
        """`run_compare`'s render, and its bundle begun: the comparison and its folder, holding grid.png so far.
        `more_skips` is the page's "More columns" text, after Gradio's request and progress so that /compare's
        parameters stay as they were (API clients give every column in `skips`, as text where it is not whole)."""
        session = request.session_hash if request is not None else None

        def report(step: int, total: int) -> None:
            progress((step, total), desc="Denoising all cells together", unit="steps")
            if session is not None:
                steps_at.set(session, step, total)

        if not isinstance(model, str) or model not in names:  # the server's list only: nobody names a path
            raise refusal(
                f"unknown model {short_repr(model)}; this server offers: {', '.join(names)}", "Unknown model"
            )
        try:
            prompts, row_seeds = rows_from_form(prompt, seed, seeds, prompt_rows)
            skips = merged_skips(skips, more_skips)  # "More columns": 1.5, L1/G2
            weights = lora_weights(loras, server_loras)
        except ValueError as error:
            raise refusal(str(error), "Please change a setting") from None
        progress(0, desc=f"Loading {model}")
        pipe = await asyncio.to_thread(loaded, model)
        progress(0, desc="Waiting for a free slot" if gate.busy() else "Encoding the prompt")
        stop, alive = threading.Event(), current_event_alive()
        scoped = cache.scoped(request.session_hash) if cache is not None and request is not None else None

        def should_stop() -> bool:
            return stop.is_set() or not alive()

        def work():
            return render(
                pipe,
                prompts,
                negative_prompt=negative_prompt,
                seed=row_seeds,
                skips=skips,
                steps=steps,
                guidance_scale=guidance_scale,
                width=width,
                height=height,
                scheduler=scheduler,
                reference=reference or None,
                prompt_syntax=prompt_syntax,
                loras=weights,
                max_batch=max_batch,
                cache=scoped,
                progress=report,
                should_stop=should_stop,
                model_name=model,
            )

        def work_and_files():
            result = work()
            return result, start_bundle(result, downloads)  # the grid first: finish_bundle writes the rest

        from . import comparison  # imported with the pipeline above

        def run():  # in a worker thread, holding a render slot: the render, then its grid
            return gate.run(work_and_files, should_stop, lambda: comparison.Stopped("stopped"))

        try:
            result, folder = await asyncio.to_thread(run)
        except asyncio.CancelledError:  # the Stop button, or a client's /cancel: the render ends after this step
            stop.set()
            raise  # its step stays for Stop's message
        except comparison.Stopped:
            steps_at.pop(session)
            raise refusal("the render was stopped.", "Stopped") from None
        except ValueError as error:
            steps_at.pop(session)
            raise refusal(str(error), "Please change a setting") from None
        steps_at.pop(session)
        return result, folder

    @wraps(rendered)  # its parameters are the endpoint's
    async def run_compare(*args, **kwargs):
        """Render the prompt at each CLIP skip value (columns), for one seed, several seeds or several prompts (rows).

        Returns the grid, the cells with captions and the metadata (and the folder of their files)."""
        result, folder = await rendered(*args, **kwargs)
        await asyncio.to_thread(finish_bundle, result, folder)
        # the files, not the images: they carry their settings (the grid its manifest, each cell its parameters)
        return str(folder / "grid.png"), gallery_items(folder, result.metadata), result.metadata, str(folder)

    def count_tokens(text, syntax, model, negative: bool = False) -> str:
        """ "23/75 tokens" for a prompt box, or why its syntax refuses it."""
        if not isinstance(text, str) or not isinstance(syntax, str) or syntax not in SYNTAXES:
            return ""
        if len(text) > MAX_PROMPT_BOX_CHARS:
            return f"{len(text):,} characters: too long"
        if loading(model):  # counted again when the page has the model (page_opened)
            return "" if text else EMPTY_COUNT
        from .encoding import vocabulary

        model = offered(model)
        pipe = loaded(model)
        vocabulary_ = vocabulary(pipe.tokenizer, getattr(pipe, "clipskip_embeddings", {}))
        try:
            used, available = token_count(text, syntax, vocabulary_, negative)
        except ValueError as error:
            return f"⚠ {sentence(str(error))}"
        count = f"{used}/{available} tokens"
        if names[model] == EMBEDDED and (words := unknown_words_text(text)):
            count += f" · ⚠ the built-in model does not know {words}"
        return count

    def switch_model(model, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        """Show the chosen model's skip values, native size and description; loads it on first use."""
        if not isinstance(model, str) or model not in names:
            raise refusal(f"unknown model; this server offers: {', '.join(names)}", "Unknown model")
        progress(0, desc=f"Loading {model}")
        chosen = model_view(model)
        references = [("native", 0)] + [(label, n) for label, n in chosen.choices]
        return (
            gr.CheckboxGroup(choices=chosen.choices, value=chosen.skips),
            gr.Dropdown(choices=references, value=0),
            chosen.width,
            chosen.height,
            chosen.note,
            *family_menus(chosen),
        )

    def load_settings(file, current_skips, current_model):
        """Fill the form from a PNG made by this app or another tool (raw values: `file` is Gradio's file data).

        The form becomes the image's: its model when offered (the skip numbering follows that model's family), one
        row, no prompt rows, reference native; another tool's skip joins the ticked ones, to compare against."""
        path = uploaded_path(file)
        if path is None:
            return [gr.skip()] * (len(FORM_FIELDS) + 1)
        try:
            return form_from_image(path, current_skips, current_model) + [None]
        except ValueError as error:  # the form stays as it was; the reason stays beside Generate
            reason = sentence(str(error))
            log.info("refused (No settings in this image): %s", reason)
            why = message(f"**No settings in this image.** {as_text(reason)}")
            return [why if field == "status" else gr.skip() for field in FORM_FIELDS] + [None]

    def form_from_image(path: Path, current_skips, current_model) -> list:
        """The form's FORM_FIELDS from a PNG's settings (see load_settings); ValueError when it has none."""
        found = read_image(path)
        chosen = match_model(found.form["model"], names) if "model" in found.form else None
        model = chosen or offered(current_model)
        pipe = loaded(model)
        form, notes = form_for(found, detect_family(pipe))
        if "model" in found.form and chosen is None:
            notes.append(f"its model {shown(found.form['model'])} is not offered here; {model!r} is used")
        form["model"] = model
        if "prompt_rows" not in form:  # another tool's image (or one cell): one row, reference native
            ticked = [s for s in current_skips if isinstance(s, int)] if isinstance(current_skips, list) else []
            columns = {from_number(s) for s in ticked[:64]} | {parse_skip(s) for s in form.get("skips", [])}
            form.update(skips=[skip.json for skip in sorted(columns)], seeds="", prompt_rows=False)
            form["reference"] = 0
        from .encoding import encoder_layers

        layers = encoder_layers(pipe)
        fits = [skip for skip in form["skips"] if all(100 <= h <= 100 * layers for h in parse_skip(skip).hundredths)]
        if beyond := [skip for skip in form["skips"] if skip not in fits]:
            notes.append(f"CLIP skip {beyond[0]} was left out: this model's text encoder has {layers} layers")
            form["skips"] = fits or [1]
            if form.get("reference") in beyond:
                form["reference"] = 0
        view_ = model_view(model)
        form.update(image_menus(view_, form, notes))
        ticked, form["more_skips"] = split_columns(form["skips"])
        form["reference"] = gr.Dropdown(
            choices=reference_choices(view_, ticked, form["more_skips"]), value=form["reference"]
        )
        form["skips"] = gr.CheckboxGroup(choices=view_.choices, value=ticked)
        form["note"] = view_.note
        loaded_from = f"Settings loaded from {found.format}" + (": " + "; ".join(notes) + "." if notes else ".")
        form["status"] = message(as_text(loaded_from), "note")
        return [form[field] if field in form else gr.skip() for field in FORM_FIELDS]

    def restored_folder(saved) -> tuple[Path, dict, list] | None:
        """The visitor's last comparison (`saved`: its folder's name from the browser's storage, a stranger's value,
        so only the name of a folder this server wrote is used), its metadata and cells; None when it is gone or
        partly cleaned up."""
        folder = saved_bundle(downloads, saved)
        metadata_ = bundle_metadata(str(folder)) if folder is not None else None
        cells = gallery_items(folder, metadata_) if metadata_ is not None else []
        files = [folder / "grid.png", folder / "difference.png", zip_path(folder)] if folder is not None else []
        if metadata_ is None or not all(Path(path).is_file() for path in files + [path for path, _ in cells]):
            return None
        return folder, metadata_, cells

    @wraps(rendered)  # the same inputs as /compare
    async def generate(*args, **kwargs):
        """The page's Generate: the render `/compare` makes, its grid shown as soon as grid.png is written, then the
        cells and the rest. A refusal leaves every input and the last results as they were and says why beside
        Generate, until the next action."""
        fresh = gr.update(elem_classes=[])
        try:
            result, folder = await rendered(*args, **kwargs)
        except gr.Error as error:
            why = message(f"**{error.title}.** {as_text(error.message)}")
            yield fresh, fresh, gr.skip(), gr.skip(), None, why, ready_button(), idle_stop()
            return
        yield (gr.update(value=str(folder / "grid.png"), elem_classes=[]),) + (gr.skip(),) * 7  # the grid first
        await asyncio.to_thread(finish_bundle, result, folder)
        metadata_, folder = result.metadata, str(folder)
        gallery_ = gallery_items(Path(folder), metadata_)
        gallery_ = gr.update(value=gallery_, elem_classes=[], columns=min(len(metadata_["skips"]), 6))
        said = " ".join(
            as_text(sentence(warning)) + ("" if warning.endswith(".") else ".") for warning in metadata_["warnings"]
        )
        yield gr.skip(), gallery_, metadata_, folder, folder, message(said, "note"), ready_button(), idle_stop()

    def stopped(request: gr.Request = None):
        """Stop's answer: the step the render reached; the form and the last results stay."""
        at = steps_at.pop(request.session_hash if request is not None else None)
        text = f"Stopped at step {at[0]} of {at[1]}; nothing was changed." if at else "Nothing was rendering."
        fresh = gr.update(elem_classes=[])
        return message(text, "note"), ready_button(), fresh, fresh, idle_stop()

    def follow_skips(ticked, reference, model, more=""):
        """The reference menu offers the skips ticked and More columns' (and native); one no longer there goes back to
        native."""
        choices = reference_choices(shown_view(model), ticked, more)
        value = reference if any(reference == n for _, n in choices) else 0
        return gr.Dropdown(choices=choices, value=value)

    async def page_opened(saved, request: gr.Request):
        """When a page opens: the model's own form once it is loaded (the page says it is loading until then), then
        the settings a link carries (`?prompt=…&skips=1,4`), or else, after a reload (Gradio's theme switch reloads
        the page), the visitor's last comparison read back from its files and its settings (`saved`: the folder's
        name from the browser's storage). Where the model's form is the one shown while it
        loaded (the built-in model's), nothing is replaced: what the visitor set meanwhile stays."""
        try:
            if loading():  # the first model loads while the server listens: wait without a worker thread
                await asyncio.wrap_future(first_model)
            view_ = views.get(default) or await asyncio.to_thread(model_view, default)
        except (gr.Error, ValueError) as error:  # ValueError: the first model did not load, the server is closing
            if isinstance(error, gr.Error):
                title, reason = error.title, error.message
            else:
                title, reason = "This model cannot be used", sentence(str(error))
            why = message(f"**{title}.** {as_text(reason)}")
            return [gr.skip()] * 13 + [why] + [gr.skip()] * (5 + 1 + 5 + 2 + len(lora_sliders))
        form, notes = link_settings(request.query_params if request is not None else {})
        from_link = bool(form or notes)
        weights, results = None, [gr.skip()] * 5
        found = None if from_link else restored_folder(saved)
        if found is not None:  # after a reload: the last comparison, and its settings in the form
            folder, metadata_, cells = found
            results = [str(folder / "grid.png"), cells, metadata_, str(folder), str(folder)]
            try:
                form = dict(
                    zip(
                        FORM_FIELDS,
                        await asyncio.to_thread(form_from_image, folder / "grid.png", [], metadata_["model"]),
                        strict=True,
                    )
                )
                form["status"] = message("Your last comparison and its settings, kept across the reload.", "note")
            except ValueError:
                found = None
        if "loras" in form:
            weights, why_not = link_loras(form.pop("loras"), server_loras)
            notes += [why_not] if why_not else []
        if found is None and ("skips" in form or view_ != replace(view, note=view_.note, family=view_.family)):
            ticked = [skip for skip in form.get("skips", view_.skips) if any(skip == n for _, n in view_.choices)]
            if "skips" in form and (left := [str(skip) for skip in form["skips"] if skip not in ticked]):
                notes.append(
                    f"the link's skips {', '.join(left)} were left out: this model takes 1 to {len(view_.choices)}"
                )
            more = form.get("more_skips", "")
            form["skips"] = gr.CheckboxGroup(choices=view_.choices, value=ticked or ([] if more else view_.skips))
            form["reference"] = gr.Dropdown(
                choices=reference_choices(view_, ticked or ([] if more else view_.skips), more), value=0
            )
        if found is None and (view_.width, view_.height) != (view.width, view.height):
            form.setdefault("width", view_.width)
            form.setdefault("height", view_.height)
        if from_link:
            text = "Settings from the link." + (" " + sentence("; ".join(notes)) + "." if notes else "")
            form["status"] = message(as_text(text), "note")
        if "seeds" in form or "prompt_rows" in form:  # the rows' labels too: no later event may touch the form
            seed_label, form["rows"] = rows_state(form.get("seeds", ""), form.get("prompt_rows", False))
            form["seed"] = seed_label | ({"value": form["seed"]} if "seed" in form else {})
        sampler, syntax, preset = family_menus(view_)
        if found is None and (view_.plain_only or DEFAULT_SAMPLER not in view_.samplers):  # SD 3: its own menus
            form = {"scheduler": sampler, "prompt_syntax": syntax} | form  # a link's own values stay (refused later)
        form |= {"generate": ready_button(), "preset": preset} | ({} if found else {"note": view_.note})
        fields = ["prompt", "negative_prompt", "seed", "skips", "steps", "guidance_scale", "width", "height"]
        fields += ["scheduler", "prompt_syntax", "seeds", "prompt_rows", "reference", "status", "note", "generate"]
        fields += ["more_skips", "preset", "rows", "model"]
        sliders = [gr.skip()] * (2 + len(lora_sliders))  # the LoRAs' box, the hidden text /compare reads, each slider
        if weights is not None:  # the text too: a folded slider's own change may not be reported
            sliders = [gr.Accordion(open=True), lora_text(list(weights), list(weights.values())), *weights.values()]
        return [form[field] if field in form else gr.skip() for field in fields] + results + sliders

    def check_size(width, height, model) -> str:
        return size_note(shown_view(model), width, height)

    with gr.Blocks(title="clipskip: CLIP skip, side by side", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(LEAD)
        note = gr.Markdown(view.note, elem_classes="caption")
        result_state = gr.State(time_to_live=STATE_TTL_S)  # the folder of the session's latest comparison
        fresh_state = gr.State()  # the folder of a render that just finished; None after a refusal
        saved = gr.BrowserState(None)  # the latest comparison's folder name, kept across a reload (see page_opened)
        # set by the examples above them, so made first and placed below
        width = gr.Slider(MIN_SIZE, MAX_SIZE, view.width, step=8, label="Width", min_width=140, render=False)
        height = gr.Slider(MIN_SIZE, MAX_SIZE, view.height, step=8, label="Height", min_width=140, render=False)
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                model = gr.Dropdown(list(names), value=default, label="Model", visible=len(names) > 1)
                prompt = gr.Textbox(label="Prompt", lines=2, placeholder="describe the picture, or pick an example")
                prompt_tokens = gr.Markdown(EMPTY_COUNT, elem_classes="caption tokens")
                negative_prompt = gr.Textbox(label="Negative prompt", lines=1, placeholder="what to avoid")
                negative_tokens = gr.Markdown(EMPTY_COUNT, elem_classes="caption tokens")
                skips = gr.CheckboxGroup(
                    view.choices,
                    value=view.skips,
                    label="CLIP skip values (one column each)",
                    info="skip N uses the N-th layer from the end of each text encoder",
                )
                with gr.Row(equal_height=True):
                    seed = gr.Number(RANDOM_SEED, label=SEED_LABEL, scale=3, min_width=120)
                    dice = gr.Button("Random", scale=0, min_width=80, size="sm")
                    reuse = gr.Button("Reuse last", scale=0, min_width=80, size="sm")
                    seed_used = gr.Textbox("", label="Seed used", interactive=False, scale=3, min_width=120)
                with gr.Row():
                    generate_button = gr.Button(  # until the first model is loaded (see page_opened)
                        "Loading the model…", variant="primary", elem_id="generate", scale=3, interactive=False
                    )
                    stop = gr.Button("Stop", variant="stop", scale=1, interactive=False)  # while a render runs
                status = gr.Markdown("", elem_id="status", visible=False)
                if names[default] == EMBEDDED:  # examples for the model shown first
                    gr.Examples(
                        EMBEDDED_EXAMPLES,
                        inputs=[prompt, negative_prompt, seed, skips, width, height],
                        label="Examples: click one, then Generate",
                        example_labels=EMBEDDED_EXAMPLE_LABELS,
                    )
                else:
                    gr.Examples(
                        CHECKPOINT_EXAMPLES,
                        inputs=[prompt, negative_prompt, seed, skips],
                        label="Examples: click one, then Generate",
                        example_labels=CHECKPOINT_EXAMPLE_LABELS,
                    )
                with gr.Row():
                    gr.Markdown(KEYS_HINT, elem_classes="caption")
                    copy_link = gr.Button("Copy a link to these settings", size="sm", scale=0, min_width=200)
                with gr.Row(equal_height=True):  # under the examples: a laptop's first screen shows them
                    more_skips = gr.Textbox(
                        "",
                        label=MORE_LABEL,
                        placeholder="1.5, 2.25, L1/G2",
                        scale=4,
                        min_width=200,
                    )
                    preset = gr.Button(
                        "AUTOMATIC1111 SDXL", size="sm", scale=0, min_width=150, visible=view.family == SDXL.name
                    )
                prompt_syntax = gr.Dropdown(
                    SYNTAX_CHOICES,
                    value=DEFAULT_SYNTAX,
                    label="Prompt syntax",
                    info="how both prompts are read: weights (word:1.2), [word], BREAK, long prompts in chunks",
                )
                with gr.Row():
                    scheduler = gr.Dropdown(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Sampler", min_width=140)
                    steps = gr.Slider(1, MAX_STEPS, DEFAULT_STEPS, step=1, label="Steps", min_width=140)
                with gr.Row():
                    guidance_scale = gr.Slider(0, MAX_GUIDANCE, DEFAULT_GUIDANCE, step=0.5, label="CFG scale")
                with gr.Row():
                    width.render()
                    height.render()
                size_warning = gr.Markdown("", elem_classes="caption")
                with gr.Accordion(ROWS_LABEL, open=False) as rows:
                    seeds = gr.Textbox(
                        "",
                        label="Seeds, one row each",
                        placeholder="42, 43, 44  or  random:3",
                        info=f"replaces the seed above; up to {MAX_ROWS} rows",
                    )
                    prompt_rows = gr.Checkbox(False, label="One prompt per line of the prompt box, one row each")
                    reference = gr.Dropdown(
                        reference_choices(view, view.skips),
                        value=0,
                        label="Reference column for the difference view",
                    )
                with gr.Accordion("LoRAs", open=False, visible=bool(server_loras)) as lora_box:
                    gr.Markdown(
                        "Each weight applies to every row; 0 is off. `<lora:name:weight>` in a prompt sets it for "
                        "that prompt's row (AUTOMATIC1111 syntax).",
                        elem_classes="caption",
                    )
                    lora_sliders = [
                        gr.Slider(-MAX_LORA_WEIGHT, MAX_LORA_WEIGHT, weight, step=0.05, label=name, min_width=140)
                        for name, weight in server_loras.items()
                    ]
                    lora_values = gr.Textbox(lora_text(list(server_loras), list(server_loras.values())), visible=False)
                for lora_slider in lora_sliders:
                    lora_slider.change(
                        lambda *weights: lora_text(list(server_loras), weights),
                        lora_sliders,
                        lora_values,
                        queue=False,
                        api_visibility="private",
                    )
                settings_file = gr.File(
                    label="Load settings from an image (PNG from AUTOMATIC1111, Forge, ComfyUI, Fooocus, InvokeAI, "
                    "NovelAI or clipskip)",
                    elem_id="load-settings",
                    height=120,
                )
                settings_file.data_model = RawValue  # see RawValue
                with gr.Accordion("What the numbers mean", open=False):
                    gr.Markdown(NUMBERS)
            with gr.Column(scale=3, min_width=400):
                grid = image_output("Grid", "grid")
                gallery = gr.Gallery(
                    label="Cells (click one to compare it with its row's reference in A/B)",
                    format="png",
                    columns=min(len(view.skips), 6),
                    fit_columns=False,  # one cell stays cell-sized instead of filling the row
                    height="auto",
                    object_fit="contain",
                    interactive=False,
                    allow_preview=False,  # a click picks the cell for A/B, whose slider shows it large
                    elem_id="cells",
                )
                download = gr.File(
                    label="Everything as a zip: grid, difference grid, cells with settings, JSON",
                    interactive=False,
                    visible=False,  # until there is a comparison to download
                )
                with gr.Tabs() as tabs:
                    with gr.Tab("Difference"):
                        difference = image_output("Difference from the reference column", "difference")
                        metrics = gr.Dataframe(
                            headers=METRICS_HEADERS, label="Per cell", interactive=False, wrap=True, elem_id="metrics"
                        )
                    with gr.Tab("Embeddings"):
                        similarity = gr.Plot(
                            label="How close each layer's conditioning is to the native one (all layers, real tokens)",
                            format="png",
                            elem_id="similarity",
                        )
                    with gr.Tab("A/B", id="ab"):
                        with gr.Row():
                            pick_a = gr.Dropdown(label="A (left)")
                            pick_b = gr.Dropdown(label="B (right)")
                        slider = gr.ImageSlider(
                            label="Drag to compare", type="filepath", format="png", elem_id="slider"
                        )
                        parameters = gr.Textbox(
                            label="A's settings as AUTOMATIC1111 writes them (paste into its prompt box, or PNG Info)",
                            lines=3,
                            interactive=False,
                            buttons=["copy"],
                            elem_id="parameters",
                        )
                    with gr.Tab("Metadata"):
                        metadata = gr.JSON(label="Metadata (reproduces every cell)", max_height=480)

        inputs = [prompt, negative_prompt, seed, skips, steps, guidance_scale, width, height, scheduler, model]
        inputs += [seeds, prompt_rows, reference, prompt_syntax, lora_values]
        # /compare for API clients: a refusal is an error they receive (the page's Generate is `generate`)
        api_call = gr.Button(visible=False)

        @wraps(run_compare)  # its parameters are the endpoint's
        async def api_compare(*args, **kwargs):
            """`/compare`: `run_compare`, with the render's warnings sent to the client as Gradio warnings."""
            outputs = await run_compare(*args, **kwargs)
            for warning in outputs[2]["warnings"]:  # a toast shows HTML: the prompt's own words are escaped
                gr.Warning(html.escape(sentence(warning)))
            return outputs

        api_call.click(
            api_compare,
            inputs,
            [grid, gallery, metadata, result_state],
            api_name="compare",
            preprocess=False,  # raw values reach the handler, so every bad one gets this app's own clear message
        )
        busy = gr.on(
            [generate_button.click, prompt.submit, negative_prompt.submit],
            lambda: (
                (busy_button(), gr.update(elem_classes=["stale"]), gr.update(elem_classes=["stale"]), message(""))
                + (gr.update(interactive=True),)
            ),
            None,
            [generate_button, grid, gallery, status, stop],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
        rendering = busy.then(
            generate,
            [*inputs, more_skips],  # after Gradio's request and progress: see `rendered`
            [grid, gallery, metadata, result_state, fresh_state, status, generate_button, stop],
            show_progress_on=grid,
            api_visibility="private",
            preprocess=False,
        )
        # Stop cancels the event, which stops its render after the current step; a closed tab or a dropped
        # connection ends the event's stream, which the render sees as well (run_compare's should_stop)
        stop.click(None, None, None, cancels=[rendering], queue=False, api_visibility="private")
        stop.click(  # then says where it stopped (the step stays recorded after the cancellation)
            stopped, None, [status, generate_button, grid, gallery, stop], queue=False, api_visibility="private"
        )
        rendering.success(None, js=SHOW_RESULTS_JS)
        rendering.success(
            lambda folder: Path(folder).name if folder else gr.skip(), fresh_state, saved, api_visibility="private"
        )
        analysis = [difference, metrics, similarity, download, pick_a, pick_b, slider, parameters, seed_used]
        rendering.success(show_fresh_analysis, fresh_state, analysis, api_visibility="private")
        for picker in (pick_a, pick_b):
            picker.change(
                pick_cells,
                [result_state, pick_a, pick_b],
                [slider, parameters],
                api_visibility="private",
                preprocess=False,  # raw values: the handler checks them
            )
        gallery.select(
            pick_from_gallery, result_state, [pick_a, pick_b, slider, parameters, tabs], api_visibility="private"
        )
        model.input(  # a visitor's choice only: loading settings sets the model and its skips together
            switch_model,
            model,
            [skips, reference, width, height, note, scheduler, prompt_syntax, preset],
            api_visibility="private",
            preprocess=False,
        )
        for columns in (skips, more_skips):
            columns.change(
                follow_skips, [skips, reference, model, more_skips], reference, queue=False, api_visibility="private"
            )
        preset.click(
            lambda model_: a1111_sdxl_columns(shown_view(model_).family),
            model,
            [skips, more_skips, status],
            queue=False,
            api_visibility="private",
        )
        for side in (width, height):
            side.change(
                check_size, [width, height, model], size_warning, queue=False, show_progress="hidden",
                api_visibility="private",
            )  # fmt: skip
        # the rows' labels follow the seed rows and prompt rows: as the visitor edits them, and once a link, a reload
        # or an image has filled the form (the rows' boxes sit in a folded accordion, whose boxes may not be drawn
        # yet to report a change)
        show_rows = dict(
            fn=rows_state, inputs=[seeds, prompt_rows], outputs=[seed, rows], queue=False, show_progress="hidden",
            api_visibility="private",
        )  # fmt: skip
        for rows_input in (seeds, prompt_rows):
            rows_input.change(**show_rows)
        form_fields = [prompt, negative_prompt, seed, seeds, prompt_rows, skips, steps, guidance_scale, width, height]
        form_fields += [scheduler, model, reference, prompt_syntax, note, status, more_skips]
        settings_file.upload(
            load_settings,
            [settings_file, skips, model],
            [*form_fields, settings_file],
            api_visibility="private",
            preprocess=False,  # raw values: the handler checks them
        ).then(**show_rows)
        copy_link.click(
            None,
            [prompt, negative_prompt, seed, skips, steps, guidance_scale, width, height, scheduler, prompt_syntax]
            + [seeds, prompt_rows, more_skips, lora_values],
            copy_link,
            js=COPY_LINK_JS,
        )
        # one event fills the form when a page opens (the model's form, a link's settings, or the last comparison's
        # after a reload), rows' labels included: no later event touches the form, and what a visitor types while the
        # first model loads stays where the event answers `gr.skip()`
        opened = demo.load(
            page_opened,
            saved,
            [prompt, negative_prompt, seed, skips, steps, guidance_scale, width, height, scheduler, prompt_syntax]
            + [seeds, prompt_rows, reference, status, note, generate_button, more_skips, preset, rows, model]
            + [grid, gallery, metadata, result_state, fresh_state, lora_box, lora_values]
            + lora_sliders,
            queue=False,
            show_progress="hidden",
            api_visibility="private",
            preprocess=False,  # the browser's stored value, raw: `restored_folder` checks it
        )
        # the token count under each prompt, as AUTOMATIC1111 shows it: tokenizing only, no model pass, no queue; also
        # once the page has the model, for what was typed while it loaded
        for box, count, negative in ((prompt, prompt_tokens, False), (negative_prompt, negative_tokens, True)):
            counting = dict(
                fn=partial(count_tokens, negative=negative), inputs=[box, prompt_syntax, model], outputs=count,
                queue=False, show_progress="hidden", api_visibility="private", preprocess=False,
            )  # fmt: skip
            gr.on([box.change, prompt_syntax.change, model.change], trigger_mode="always_last", **counting)
            opened.then(**counting)
        opened.success(show_fresh_analysis, fresh_state, analysis, api_visibility="private")
        dice.click(lambda: RANDOM_SEED, None, seed, api_visibility="private")
        reuse.click(reuse_seed, seed_used, seed, api_visibility="private", preprocess=False)
    # this Blocks' own: Gradio's method stays as it is elsewhere. Before Gradio's own check and preprocessing, with
    # the session's state: a menu's choices are the session's own (the skips follow the model, the reference the skips)
    demo.preprocess_data = partial(checked_first, demo.preprocess_data)
    return demo


async def checked_first(preprocess, block_fn, inputs: list, state=None, explicit_call: bool = False):
    """Gradio's `Blocks.preprocess_data`, after `exact_inputs`."""
    exact_inputs(block_fn, inputs, state)
    return await preprocess(block_fn, inputs, state, explicit_call)


def exact_inputs(block_fn, inputs: list, state=None) -> None:
    """Gradio's input check, made exact: an event sent more or fewer values than it takes is refused, naming the
    endpoint and its values (`/compare`: prompt, negative_prompt, …). Gradio's own lets extra values through, and
    answers too few with an empty error while it logs every value received (a stranger's, up to the body limit).
    Where Gradio preprocesses the values (every event but those whose handlers check their own, preprocess=False),
    each must be what its box holds (`refused_value`), checked against the box as the session has it (`state`):
    Gradio's preprocessing failed on others with an empty error and a traceback. An event that runs only in the
    page (no Python function) is refused: Gradio preprocessed its values, then failed with a traceback."""
    wanted = len(block_fn.inputs)
    names = value_names(block_fn)
    endpoint = f"/{block_fn.api_name}" if is_public(block_fn) else "this event"  # a private one's name is no route
    if len(inputs) != wanted:
        listed = f" ({', '.join(names)})" if names and wanted else ""
        raise refusal(f"{endpoint} takes {wanted} values{listed}, not {len(inputs):,}", "Wrong number of values")
    if block_fn.fn is None:
        raise refusal(f"{endpoint} runs in the page only", "Not an event of the server")
    if not block_fn.preprocess:
        return
    for i, (block, value) in enumerate(zip(block_fn.inputs, inputs, strict=True)):
        if block.stateful or i in block_fn.component_prop_inputs:  # the session's own value, or Gradio's props
            continue
        if state is not None and block._id in state:  # as Gradio's preprocessing reads it
            block = state[block._id]
        if (takes := refused_value(block, value)) is not None:
            name = names[i] if names else f"value {i + 1}"
            raise refusal(f"{endpoint}'s {name} must be {takes}, not {short_repr(value)}", "Wrong value")


def value_names(block_fn) -> list[str] | None:
    """The names of an event's values: its function's parameters (`*weights`: weights[0], weights[1], …)."""
    wanted = len(block_fn.inputs)
    try:
        parameters = inspect.signature(block_fn.fn).parameters.values() if block_fn.fn is not None else []
    except (TypeError, ValueError):  # a callable without a signature Python can read
        return None
    names = []
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            names += [f"{parameter.name}[{n}]" for n in range(wanted - len(names))]
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(parameter.name.rstrip("_"))  # `model_`: a name taken in the function's scope
    return names[:wanted] if len(names) >= wanted else None


def refused_value(block, value) -> str | None:
    """What `block` takes from a client, where `value` is not that (None where it is): what Gradio's preprocessing
    of the box reads without failing and the page itself sends. Boxes of other kinds are left to Gradio."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    number = whole or isinstance(value, float) and math.isfinite(value)
    if isinstance(block, gr.Textbox | gr.Markdown):
        fits = value is None or isinstance(value, str) and len(value) <= MAX_PROMPT_BOX_CHARS and is_text(value)
        return None if fits else f"text (valid UTF-8) of at most {MAX_PROMPT_BOX_CHARS:,} characters"
    if isinstance(block, gr.Checkbox):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(block, gr.Number | gr.Slider):
        low, high = block.minimum, block.maximum
        fits = number and (low is None or value >= low) and (high is None or value <= high)
        empty = " or null" if isinstance(block, gr.Number) else ""
        bounds = f" from {low:g} to {high:g}" if low is not None and high is not None else ""
        return None if fits or empty and value is None else f"a number{bounds}{empty}"
    if isinstance(block, gr.Dropdown | gr.Radio | gr.CheckboxGroup):
        choices, custom = [choice for _, choice in block.choices], getattr(block, "allow_custom_value", False)
        listed = short_repr(choices, 120) + (" or any text" if custom else "")

        def one(item) -> bool:
            return is_choice(item, choices) or custom and isinstance(item, str) and is_text(item)

        if isinstance(block, gr.CheckboxGroup) or getattr(block, "multiselect", False):
            return None if isinstance(value, list) and all(map(one, value)) else f"a list of values from {listed}"
        return None if value is None or one(value) else f"one of {listed}"
    if isinstance(block, gr.Dataset):
        fits = whole and 0 <= value < len(block.raw_samples)
        return None if fits else f"the number of one of its {len(block.raw_samples)} examples"  # None fails too
    return None


def is_choice(value, choices: list) -> bool:
    """Whether `value` is one of `choices`: equal as JSON values (2 is 2.0, as the page sends it), never True for 1."""
    return isinstance(value, str | int | float) and any(
        value == choice and isinstance(value, bool) == isinstance(choice, bool) for choice in choices
    )


def is_text(value: str) -> bool:
    """Whether `value` can be written as UTF-8: only lone surrogates (U+D800 to U+DFFF) cannot, and an answer that
    holds one breaks the event stream."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def serve(settings: AppSettings, *, prevent_thread_lock: bool = False) -> gr.Blocks:
    """Serve the app on `settings.host:settings.port` at once and load the first model meanwhile: the page says it is
    loading, and requests wait for it. The demo's `first_model` is that load (a Future of the pipeline).

    Unless `prevent_thread_lock`, waits for the first model, then serves until the server is closed; raises
    ValueError (having closed the server) when the first model cannot load, and OSError when the port is taken."""
    load = partial(load_pipeline, device=settings.device, dtype=settings.dtype, options=settings.options)
    cache = CellCache(settings.cache_mb * 2**20) if settings.cache_mb else None
    first_model: Future = Future()  # loaded in a thread once the server listens
    demo = build_demo(
        settings.models, load, settings.max_batch, cache, settings.concurrency, first_model, settings.lora_weights
    )
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.max_queue)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        prevent_thread_lock=True,
        quiet=True,  # Gradio's own hint names launch() arguments; ours names the flags
        css=CSS,
        js=KEYS_JS,
        max_file_size=MAX_UPLOAD_BYTES,
        # every body bounded before it is parsed; an event that names no event of the page refused
        app_kwargs={"middleware": [Middleware(BodyLimit), Middleware(KnownEvents, events=demo.fns)]},
        state_session_capacity=STATE_SESSIONS,
    )
    load_in_background(load, settings.models[0], settings.max_loaded, first_model)
    demo.first_model = first_model
    prune_gradio_cache()
    url, first = demo.share_url or demo.local_url, model_name(settings.models[0])
    print(f"clipskip: serving {', '.join(settings.models)} at {url} (loading {first}…)", flush=True)
    if not settings.share:
        print("clipskip: add --share for a public link, --host 0.0.0.0 to listen on every interface", flush=True)
    if not prevent_thread_lock:
        wait_for_first_model(demo)
        demo.block_thread()
    return demo


def load_in_background(load: Callable[[str], object], model: str, max_loaded: int, first: Future) -> None:
    """`load(model)` in a thread (torch and diffusers are imported there), so the server answers meanwhile; its
    pipeline or its error goes to `first`."""

    def run():
        from .loading import pipelines

        pipelines.max_loaded = max_loaded
        started = time.perf_counter()
        try:
            first.set_result(load(model))
        except BaseException as error:  # noqa: BLE001 (handed to whoever waits: main says it and exits)
            first.set_exception(error)
            return
        print(f"clipskip: {model_name(model)} loaded in {time.perf_counter() - started:.1f} s", flush=True)

    threading.Thread(target=run, name="clipskip-first-model", daemon=True).start()


def wait_for_first_model(demo: gr.Blocks) -> None:
    """Returns when the first model is loaded; closes the server and raises when it cannot load."""
    try:
        demo.first_model.result()
    except BaseException:
        demo.close()
        raise


_pruning = threading.Event()


def prune_gradio_cache() -> None:
    """Gradio's file cache (uploads, and the bundles written into it) kept under its age and size bound: now, and
    every half minute from one thread per process."""
    root = Path(get_upload_folder())
    prune(root)
    if not _pruning.is_set():
        _pruning.set()
        keep_pruned(root, threading.Event())


def main(argv: list[str] | None = None) -> int:
    """`python app.py`: exits with status 2 and the reason when the port is taken or the first model cannot load."""
    settings = app_settings(argv)
    busy = f"clipskip: error: port {settings.port} is in use; give another --port, or stop the server listening on it"
    if port_in_use(settings.host, settings.port):  # one line, rather than the traceback of a failed start
        print(busy, file=sys.stderr)
        return 2
    try:
        demo = serve(settings, prevent_thread_lock=True)
        wait_for_first_model(demo)
    except ValueError as error:
        print(f"clipskip: error: {error}", file=sys.stderr)
        return 2
    except OSError:  # Gradio's "Cannot find empty port": taken since it was checked
        if not port_in_use(settings.host, settings.port):
            raise
        print(busy, file=sys.stderr)
        return 2
    demo.block_thread()
    return 0
