"""The Gradio Blocks app: inputs, one `/compare` endpoint, outputs. No image or model logic lives here."""

import gradio as gr

from .comparison import compare, native_size
from .encoding import encoder_layers, native_skip
from .loading import load_pipeline
from .metadata import cell_caption
from .request import (
    DEFAULT_GUIDANCE,
    DEFAULT_SKIPS,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    MAX_SIZE,
    MAX_STEPS,
    MIN_SIZE,
    RANDOM_SEED,
)
from .samplers import DEFAULT_SAMPLER, SAMPLERS
from .settings import AppSettings

MAX_QUEUE = 20  # waiting requests; more are refused rather than left hanging
EXAMPLES = [
    ["a watercolor painting of a fox in a snowy forest, highly detailed", "blurry, lowres", 42],
    ["portrait of an astronaut, oil painting, dramatic lighting", "", 7],
    ["a small red circle on the left and a blue square on the right, on a yellow background", "", 1234],
]
INTRO = """# clipskip: CLIP skip, side by side
One prompt, one seed, several CLIP skip values, rendered together from the same noise. Skip *N* conditions the image
on the text encoder's *N*-th layer from the end (skip 1 = the last layer): AUTOMATIC1111's "Clip skip" *N*,
ComfyUI's `CLIPSetLastLayer` −*N*, diffusers' `clip_skip` = *N*−1. The negative prompt is skipped alike."""
CSS = """
#generate {min-height: 3.2em}
.caption {font-size: 0.9em; opacity: 0.8}
#grid .image-container {padding-top: 2.6em}  /* keep the floating label and buttons off the column headers */
#cells .grid-wrap {min-height: 0; height: auto}  /* one row of cells, no empty band under it */
"""


def skip_choices(layers: int, native: int) -> list[tuple[str, int]]:
    return [(f"{n} (native)" if n == native else str(n), n) for n in range(1, min(layers, 12) + 1)]


def build_demo(pipe) -> gr.Blocks:
    """The app around one loaded pipeline, shared by every request through Gradio's queue."""
    layers, native = encoder_layers(pipe), native_skip(pipe)
    width, height = native_size(pipe)
    model_note = f"Model: **{pipe.name_or_path}** · text encoder with {layers} layers · native CLIP skip {native}"
    if pipe.name_or_path == "embedded":
        model_note += " · the built-in untrained model: it draws patterns, not pictures, but skips work as on SD 1.x"

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
        progress=gr.Progress(),  # noqa: B008 (Gradio's way)
    ):
        """Render the prompt at each CLIP skip value; returns the grid, the cells with captions and the metadata."""

        def report(step: int, total: int) -> None:
            progress((step, total), desc="Denoising all cells together", unit="steps")

        progress(0, desc="Encoding the prompt")
        try:
            result = compare(
                pipe,
                prompt,
                negative_prompt=negative_prompt,
                seed=seed,
                skips=skips,
                steps=steps,
                guidance_scale=guidance_scale,
                width=width,
                height=height,
                scheduler=scheduler,
                progress=report,
            )
        except ValueError as error:
            raise gr.Error(str(error)[:1].upper() + str(error)[1:], title="Please change a setting") from None
        for warning in result.warnings:
            gr.Warning(warning[:1].upper() + warning[1:])
        gallery = [(result.images[cell["skip"]], cell_caption(cell)) for cell in result.metadata["cells"]]
        return result.grid, gallery, result.metadata

    with gr.Blocks(title="clipskip: CLIP skip, side by side") as demo:
        gr.Markdown(INTRO)
        gr.Markdown(model_note, elem_classes="caption")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder="what to draw")
                negative_prompt = gr.Textbox(label="Negative prompt", lines=2, placeholder="what to avoid")
                skips = gr.CheckboxGroup(
                    skip_choices(layers, native),
                    value=[n for n in DEFAULT_SKIPS if n <= layers],
                    label="CLIP skip values (one column each)",
                    info=f"skip N uses layer {layers}−N+1 of {layers}",
                )
                with gr.Row(equal_height=True):
                    seed = gr.Number(RANDOM_SEED, label="Seed (−1 = random)", scale=3, min_width=120)
                    dice = gr.Button("🎲", scale=0, min_width=48)
                    reuse = gr.Button("♻️", scale=0, min_width=48)
                    seed_used = gr.Number(label="Seed used", interactive=False, scale=3, min_width=120)
                with gr.Row():
                    scheduler = gr.Dropdown(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Sampler", min_width=140)
                    steps = gr.Slider(1, MAX_STEPS, DEFAULT_STEPS, step=1, label="Steps", min_width=140)
                with gr.Row():
                    guidance_scale = gr.Slider(0, MAX_GUIDANCE, DEFAULT_GUIDANCE, step=0.5, label="CFG scale")
                with gr.Row():
                    width_box = gr.Slider(MIN_SIZE, MAX_SIZE, width, step=8, label="Width", min_width=140)
                    height_box = gr.Slider(MIN_SIZE, MAX_SIZE, height, step=8, label="Height", min_width=140)
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=3, min_width=400):
                grid = gr.Image(
                    label="Grid",
                    type="pil",
                    format="png",
                    interactive=False,
                    buttons=["download", "fullscreen"],
                    elem_id="grid",
                )
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
                metadata = gr.JSON(label="Metadata (reproduces every cell)", max_height=360)
        gr.Examples(EXAMPLES, inputs=[prompt, negative_prompt, seed], label="Examples")

        inputs = [prompt, negative_prompt, seed, skips, steps, guidance_scale, width_box, height_box, scheduler]
        gr.on(
            [generate.click, prompt.submit],
            run_compare,
            inputs,
            [grid, gallery, metadata],
            api_name="compare",
            show_progress_on=grid,
        ).success(lambda meta: meta["seed"], metadata, seed_used, api_visibility="private")
        dice.click(lambda: RANDOM_SEED, None, seed, api_visibility="private")
        reuse.click(lambda used: RANDOM_SEED if used is None else used, seed_used, seed, api_visibility="private")
    return demo


def serve(settings: AppSettings, *, prevent_thread_lock: bool = False) -> gr.Blocks:
    """Load the model once, then serve the app on `settings.host:settings.port`."""
    pipe = load_pipeline(settings.model, settings.device, settings.dtype)
    demo = build_demo(pipe)
    demo.queue(default_concurrency_limit=1, max_size=MAX_QUEUE)  # one render at a time: each fills the device
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        prevent_thread_lock=True,
        quiet=True,  # Gradio's own hint names launch() arguments; ours names the flags
        css=CSS,
    )
    print(f"clipskip: serving {settings.model} at {demo.share_url or demo.local_url}", flush=True)
    if not settings.share:
        print("clipskip: add --share for a public link, --host 0.0.0.0 to listen on every interface", flush=True)
    if not prevent_thread_lock:
        demo.block_thread()
    return demo
