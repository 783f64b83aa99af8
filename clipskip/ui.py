"""The Gradio Blocks app: inputs, one `/compare` endpoint, outputs. No image or model logic lives here."""

import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from .cache import CellCache
from .comparison import Comparison, Stopped, compare, native_size
from .embedded import NAME as EMBEDDED
from .encoding import encoder_layers
from .families import detect_family
from .loading import load_pipeline, pipelines
from .metadata import cell_caption, metrics_rows
from .outputs import cell_name, read_settings, write_bundle, zip_path
from .request import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    MAX_ROWS,
    MAX_SIZE,
    MAX_STEPS,
    MIN_SIZE,
    RANDOM_SEED,
    seed_list,
)
from .samplers import DEFAULT_SAMPLER, SAMPLERS
from .settings import AppSettings, app_settings

DOWNLOADS = Path(tempfile.gettempdir()) / "clipskip-downloads"
EXAMPLES = [  # the embedded model's world first (shapes, colours, places), then prompts for real checkpoints
    ["a large white triangle at the top and a large black circle at the bottom, on a red background", "", 7],
    ["a large orange star in the centre, on a purple background", "", 3],
    ["a large green triangle in the centre, on a black background", "", 42],
    ["a watercolor painting of a fox in a snowy forest, highly detailed", "blurry, lowres", 42],
    ["portrait of an astronaut, oil painting, dramatic lighting", "", 7],
]
INTRO = """# clipskip: CLIP skip, side by side
One prompt, one seed, several CLIP skip values, rendered together from the same noise. Skip *N* conditions the image
on the text encoder's *N*-th layer from the end (skip 1 = the last layer): AUTOMATIC1111's "Clip skip" *N*,
ComfyUI's `CLIPSetLastLayer` −*N*, diffusers' `clip_skip` = *N*−1 (*N*−2 on SDXL). The negative prompt is skipped
alike. The built-in model, `embedded`, is a tiny SD 1.x trained by this project on 64×64 scenes: it knows circles,
squares, triangles and stars in red, green, blue, yellow, white, black, orange and purple, small or large, on the
left, right, top, bottom or in the centre, on a coloured background (see the first examples)."""
CSS = """
#generate {min-height: 3.2em}
.caption {font-size: 0.9em; opacity: 0.8}
#grid .image-container, #difference .image-container {padding-top: 2.6em}  /* label and buttons off the headers */
#cells .grid-wrap {min-height: 0; height: auto}  /* one row of cells, no empty band under it */
#cells img, #slider img {image-rendering: pixelated}  /* small cells enlarged crisp, as in the grid */
"""
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


def describe(name: str, pipe) -> ModelView:
    family, layers = detect_family(pipe), encoder_layers(pipe)
    native = family.native_skip
    counts = " and ".join(str(getattr(pipe, encoder).config.num_hidden_layers) for encoder, _ in family.encoders)
    note = f"Model: **{name}** · {family.name} · text encoder layers: {counts} · native CLIP skip {native}"
    if name == EMBEDDED:
        note += " · the built-in model, trained here on coloured shapes: it knows only the scene words of the examples"
    first = max(1, native - 1)  # the native value and its neighbours, four in all where the encoder has them
    width, height = native_size(pipe)
    return ModelView(
        note=note,
        choices=[(f"{n} (native)" if n == native else str(n), n) for n in range(1, min(layers, 12) + 1)],
        skips=list(range(first, min(layers, first + 3) + 1)),
        width=width,
        height=height,
    )


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def reuse_seed(used: str) -> int:
    """The seed box after ♻️: the last render's (first) seed, or random when there was none."""
    first = (used or "").split(",")[0].strip()
    return int(first) if first.isdigit() else RANDOM_SEED


def short_row_labels(metadata: dict) -> list[str]:
    by = metadata["rows_by"]
    return [f"seed {row['seed']}" if by == "seed" else f"prompt {i}" for i, row in enumerate(metadata["rows"], 1)]


def cell_choices(result: Comparison) -> list[tuple[str, str]]:
    """Every cell, for the A/B pickers: (label, "row:skip")."""
    labels = short_row_labels(result.metadata)
    return [(f"{labels[r]} · skip {skip}", f"{r}:{skip}") for r, row in enumerate(result.rows) for skip in row.images]


def cell_image(rendered: tuple[Comparison, Path] | None, choice: str | None):
    if rendered is None or not choice:
        return None
    r, skip = choice.split(":")
    return rendered[0].rows[int(r)].images[int(skip)]


def similarity_frame(metadata: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"CLIP skip": skip, "cosine similarity": value, "prompt": entry["prompt"][:60] or "(empty)"}
            for entry in metadata["embedding_similarity"]
            for skip, value in enumerate(entry["cosine"], 1)
        ]
    )


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


def build_demo(
    models: Sequence[str], load: Callable[[str], object], max_batch: int | None = None, cache: CellCache | None = None
) -> gr.Blocks:
    """The app over `models` (the only ones it offers), each loaded by `load` on first use and shared by all;
    `max_batch` and `cache` go to every comparison."""
    view = describe(models[0], load(models[0]))
    stops: dict[str, threading.Event] = {}  # per browser session: set by Stop or a closed tab, read after each step

    def stop_session(request: gr.Request) -> None:
        if request is not None and request.session_hash in stops:
            stops[request.session_hash].set()

    @on_zero_gpu
    def render(pipe, *args, **kwargs):
        return compare(pipe, *args, **kwargs)

    def run_compare(
        prompt,
        negative_prompt,
        seed,
        skips,
        steps,
        guidance_scale,
        width,
        height,
        scheduler,
        model,
        seeds="",
        prompt_rows=False,
        reference=0,
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008 (Gradio's way)
    ):
        """Render the prompt at each CLIP skip value (columns), for one seed, several seeds or several prompts (rows).

        Returns the grid, the cells with captions and the metadata."""

        def report(step: int, total: int) -> None:
            progress((step, total), desc="Denoising all cells together", unit="steps")

        if model not in models:  # the server's list only: nobody can name a path or an id from outside
            raise gr.Error(f"Unknown model {model!r}; this server offers: {', '.join(models)}", title="Unknown model")
        progress(0, desc=f"Loading {model}")
        try:
            pipe = load(model)
        except ValueError as error:
            raise gr.Error(sentence(str(error)), title="This model cannot be used") from None
        progress(0, desc="Encoding the prompt")
        session = request.session_hash if request is not None else None
        stop = stops[session] = threading.Event()
        try:
            rows_of_seeds = seed_list(seeds) if isinstance(seeds, str) and seeds.strip() else seed
            prompts = prompt
            if prompt_rows and isinstance(prompt, str):
                prompts = [line.strip() for line in prompt.splitlines() if line.strip()]
            result = render(
                pipe,
                prompts,
                negative_prompt=negative_prompt,
                seed=rows_of_seeds,
                skips=skips,
                steps=steps,
                guidance_scale=guidance_scale,
                width=width,
                height=height,
                scheduler=scheduler,
                reference=reference or None,
                max_batch=max_batch,
                cache=cache,
                progress=report,
                should_stop=stop.is_set,
            )
        except Stopped:
            raise gr.Error("The render was stopped.", title="Stopped") from None
        except ValueError as error:
            raise gr.Error(sentence(str(error)), title="Please change a setting") from None
        finally:
            if stops.get(session) is stop:
                del stops[session]
        for warning in result.warnings:
            gr.Warning(sentence(warning))
        # the files, not the images: they carry their settings (the grid its manifest, each cell its parameters)
        folder = write_bundle(result, DOWNLOADS)
        columns = {column["skip"]: column for column in result.metadata["columns"]}
        gallery = [  # short enough for a thumbnail: the grid and the metadata say the rest
            (
                str(folder / cell_name(result.metadata, r, skip)),
                f"{label} · skip {skip}" if len(result.rows) > 1 else cell_caption(columns[skip]),
            )
            for r, (label, row) in enumerate(zip(short_row_labels(result.metadata), result.rows, strict=True))
            for skip in row.images
        ]
        return str(folder / "grid.png"), gallery, result.metadata, (result, folder)

    def show_analysis(rendered: tuple[Comparison, Path]):
        """The difference grid, metrics, similarity plot, download and A/B pickers for the latest comparison."""
        result, folder = rendered
        choices = cell_choices(result)
        reference = f"0:{result.metadata['reference_skip']}"
        other = next((value for _, value in choices if value != reference), reference)
        return (
            str(folder / "difference.png"),
            pd.DataFrame(metrics_rows(result.metadata), columns=METRICS_HEADERS),
            similarity_frame(result.metadata),
            str(zip_path(folder)),
            gr.Dropdown(choices=choices, value=reference),
            gr.Dropdown(choices=choices, value=other),
            (cell_image(rendered, reference), cell_image(rendered, other)),
            ", ".join(str(seed) for seed in dict.fromkeys(row["seed"] for row in result.metadata["rows"])),
        )

    def switch_model(model, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        """Show the chosen model's skip values, native size and description; loads it on first use."""
        progress(0, desc=f"Loading {model}")
        try:
            chosen = describe(model, load(model))
        except ValueError as error:
            raise gr.Error(sentence(str(error)), title="This model cannot be used") from None
        references = [("native", 0)] + [(label, n) for label, n in chosen.choices]
        return (
            gr.CheckboxGroup(choices=chosen.choices, value=chosen.skips),
            gr.Dropdown(choices=references, value=0),
            chosen.width,
            chosen.height,
            chosen.note,
        )

    def load_settings(path, current_skips, current_model):
        """Fill the form from a PNG made by this app or by AUTOMATIC1111."""
        if not path:
            return [gr.skip()] * 13
        try:
            form, notes = read_settings(Path(path))
        except ValueError as error:
            raise gr.Error(sentence(str(error)), title="No settings in this image") from None
        if "prompt_rows" not in form:  # one AUTOMATIC1111 image: its skip joins the current ones, to compare
            form["skips"] = sorted(set(current_skips or []) | set(form["skips"]))
        if form.get("model") not in models:
            if "model" in form:
                notes.append(f"its model {form['model']!r} is not offered here; {current_model!r} is kept")
            form.pop("model", None)
        gr.Info("Settings loaded" + (": " + "; ".join(notes) if notes else ""))
        names = ["prompt", "negative_prompt", "seed", "seeds", "prompt_rows", "skips", "steps", "guidance_scale"]
        names += ["width", "height", "scheduler", "model", "reference"]
        return [form[name] if name in form else gr.skip() for name in names]

    with gr.Blocks(title="clipskip: CLIP skip, side by side", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        note = gr.Markdown(view.note, elem_classes="caption")
        result_state = gr.State()
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                model = gr.Dropdown(list(models), value=models[0], label="Model", visible=len(models) > 1)
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder=EXAMPLES[0][0])
                negative_prompt = gr.Textbox(label="Negative prompt", lines=2, placeholder="what to avoid")
                skips = gr.CheckboxGroup(
                    view.choices,
                    value=view.skips,
                    label="CLIP skip values (one column each)",
                    info="skip N uses the N-th layer from the end of each text encoder",
                )
                with gr.Row(equal_height=True):
                    seed = gr.Number(RANDOM_SEED, label="Seed (−1 = random)", scale=3, min_width=120)
                    dice = gr.Button("🎲", scale=0, min_width=48)
                    reuse = gr.Button("♻️", scale=0, min_width=48)
                    seed_used = gr.Textbox("", label="Seed used", interactive=False, scale=3, min_width=120)
                with gr.Row():
                    scheduler = gr.Dropdown(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Sampler", min_width=140)
                    steps = gr.Slider(1, MAX_STEPS, DEFAULT_STEPS, step=1, label="Steps", min_width=140)
                with gr.Row():
                    guidance_scale = gr.Slider(0, MAX_GUIDANCE, DEFAULT_GUIDANCE, step=0.5, label="CFG scale")
                with gr.Row():
                    width = gr.Slider(MIN_SIZE, MAX_SIZE, view.width, step=8, label="Width", min_width=140)
                    height = gr.Slider(MIN_SIZE, MAX_SIZE, view.height, step=8, label="Height", min_width=140)
                with gr.Accordion("Rows and reference", open=False):
                    seeds = gr.Textbox(
                        "",
                        label="Seeds, one row each",
                        placeholder="42, 43, 44  or  random:3",
                        info=f"replaces the seed above; up to {MAX_ROWS} rows",
                    )
                    prompt_rows = gr.Checkbox(False, label="One prompt per line of the prompt box, one row each")
                    reference = gr.Dropdown(
                        [("native", 0)] + view.choices,
                        value=0,
                        label="Reference column for the difference view",
                    )
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
                    stop = gr.Button("Stop", variant="stop", scale=1)
                settings_file = gr.File(
                    label="Load settings from an image (PNG from clipskip or AUTOMATIC1111)",
                    file_types=[".png"],
                    elem_id="load-settings",
                )
            with gr.Column(scale=3, min_width=400):
                grid = image_output("Grid", "grid")
                gallery = gr.Gallery(
                    label="Cells",
                    format="png",
                    columns=4,
                    fit_columns=False,  # one cell stays cell-sized instead of filling the row
                    height="auto",
                    object_fit="contain",
                    interactive=False,
                    elem_id="cells",
                )
                download = gr.File(
                    label="Everything as a zip: grid, difference grid, cells with settings, JSON", interactive=False
                )
                with gr.Tab("Difference"):
                    difference = image_output("Difference from the reference column", "difference")
                    metrics = gr.Dataframe(headers=METRICS_HEADERS, label="Per cell", interactive=False)
                with gr.Tab("Embeddings"):
                    similarity = gr.LinePlot(
                        x="CLIP skip",
                        y="cosine similarity",
                        color="prompt",
                        label="How close each layer's conditioning is to the native one (all layers, real tokens)",
                        y_lim=[-1, 1],
                        x_axis_format="d",
                    )
                with gr.Tab("A/B"):
                    with gr.Row():
                        pick_a = gr.Dropdown(label="A (left)")
                        pick_b = gr.Dropdown(label="B (right)")
                    slider = gr.ImageSlider(label="Drag to compare", type="pil", format="png", elem_id="slider")
                with gr.Tab("Metadata"):
                    metadata = gr.JSON(label="Metadata (reproduces every cell)", max_height=480)
        gr.Examples(EXAMPLES, inputs=[prompt, negative_prompt, seed], label="Examples")

        inputs = [prompt, negative_prompt, seed, skips, steps, guidance_scale, width, height, scheduler, model]
        inputs += [seeds, prompt_rows, reference]
        rendering = gr.on(
            [generate.click, prompt.submit],
            run_compare,
            inputs,
            [grid, gallery, metadata, result_state],
            api_name="compare",
            show_progress_on=grid,
            preprocess=False,  # raw values reach the handler, so every bad one gets this app's own clear message
        )
        stop.click(stop_session, None, None, cancels=[rendering], queue=False, api_visibility="private")
        demo.unload(stop_session)  # a closed tab frees the worker within one step
        rendering.success(
            show_analysis,
            result_state,
            [difference, metrics, similarity, download, pick_a, pick_b, slider, seed_used],
            api_visibility="private",
        )
        for picker in (pick_a, pick_b):
            picker.change(
                lambda rendered, a, b: (cell_image(rendered, a), cell_image(rendered, b)),
                [result_state, pick_a, pick_b],
                slider,
                api_visibility="private",
            )
        model.change(switch_model, model, [skips, reference, width, height, note], api_visibility="private")
        settings_file.upload(
            load_settings,
            [settings_file, skips, model],
            [prompt, negative_prompt, seed, seeds, prompt_rows, skips, steps, guidance_scale, width, height]
            + [scheduler, model, reference],
            api_visibility="private",
        )
        dice.click(lambda: RANDOM_SEED, None, seed, api_visibility="private")
        reuse.click(reuse_seed, seed_used, seed, api_visibility="private")
    return demo


def serve(settings: AppSettings, *, prevent_thread_lock: bool = False) -> gr.Blocks:
    """Load the first model, then serve the app on `settings.host:settings.port`."""
    pipelines.max_loaded = settings.max_loaded
    load = partial(load_pipeline, device=settings.device, dtype=settings.dtype, options=settings.options)
    cache = CellCache(settings.cache_mb * 2**20) if settings.cache_mb else None
    demo = build_demo(settings.models, load, settings.max_batch, cache)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.max_queue)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        prevent_thread_lock=True,
        quiet=True,  # Gradio's own hint names launch() arguments; ours names the flags
        css=CSS,
    )
    print(f"clipskip: serving {', '.join(settings.models)} at {demo.share_url or demo.local_url}", flush=True)
    if not settings.share:
        print("clipskip: add --share for a public link, --host 0.0.0.0 to listen on every interface", flush=True)
    if not prevent_thread_lock:
        demo.block_thread()
    return demo


def main(argv: list[str] | None = None) -> int:
    """`python app.py`: exits with status 2 and the reason when the first model cannot be loaded."""
    settings = app_settings(argv)
    try:
        serve(settings)
    except ValueError as error:
        print(f"clipskip: error: {error}", file=sys.stderr)
        return 2
    return 0
