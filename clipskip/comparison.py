"""Prompts x seeds x CLIP skips: each text encoded once, every cell denoised together as one batch, laid out as grids.

Columns are skip values; rows are several seeds (one prompt) or several prompts (one seed). Every cell gets its own
generator seeded with its row's seed, so it starts from the same noise, and is the same image, as when rendered alone.
"""

import copy
import functools
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import torch
from PIL import Image

from . import __version__
from .analysis import Difference, colour_bar, differences, heat_image, heat_scale
from .cache import CellCache, ScopedCache
from .encoding import Encoding, encode, encoder_layers, extended, layer_choice, layer_similarity, token_window
from .families import denoiser, detect_family
from .grid import blocked_cell, caption_size, grid_width, render_grid
from .loading import free_device_bytes, free_memory
from .loras import check_defaults, held, row_weights, tag_text, use
from .metadata import caption_lines, cell_header, difference_badge, row_labels
from .prompts.a1111 import lora_tags
from .provenance import library_versions, weights_hash, weights_identity
from .request import (
    DEFAULT_GUIDANCE,
    DEFAULT_SKIPS,
    DEFAULT_STEPS,
    DEFAULT_SYNTAX,
    MAX_SEED,
    RANDOM_SEED,
    ComparisonRequest,
    check_max_batch,
)
from .samplers import check_model_sampler, make_scheduler, sampler_label
from .skips import Skip

Progress = Callable[[float, int], None]  # (denoising steps done, steps in all); fractional only in uneven chunks
BLOCKED = "the checkpoint's safety checker flagged this image as NSFW"


@dataclass
class Row:
    prompt: str
    seed: int
    images: dict[int | Skip, Image.Image]  # skip -> image, in the order asked: an int for a whole one (Skip.key)


@dataclass
class Comparison:
    rows: list[Row]
    metadata: dict  # JSON-serialisable: every setting, the seeds used, each cell's layer, metrics and fate
    warnings: list[str]
    draw_grid: Callable[[], Image.Image] = field(repr=False, compare=False)
    draw_difference_grid: Callable[[], Image.Image] = field(repr=False, compare=False)

    @cached_property
    def grid(self) -> Image.Image:
        """The labelled grid, drawn when first read: callers who want only the images do not pay for it."""
        return self.draw_grid()

    @cached_property
    def difference_grid(self) -> Image.Image:
        """Each cell's heat map against its row's reference cell, drawn when first read."""
        return self.draw_difference_grid()

    @property
    def images(self) -> dict[int | Skip, Image.Image]:
        """The first row's images by skip value: all of them when there is one prompt and one seed."""
        return self.rows[0].images


def native_size(pipe) -> tuple[int, int]:
    size = denoiser(pipe).config.sample_size * pipe.vae_scale_factor
    return size, size


def check_size_for(pipe, width: int, height: int) -> None:
    """Refuse a size the denoiser cannot take (ValueError naming both): SD 3's transformer reads the latent in
    patch_size² patches, so diffusers asks for multiples of 8·2 = 16 there; a UNet takes any multiple of 8."""
    multiple = pipe.vae_scale_factor * getattr(denoiser(pipe).config, "patch_size", 1)
    if width % multiple or height % multiple:
        raise ValueError(
            f"width and height must be multiples of {multiple} for this {detect_family(pipe).name} model (its "
            f"transformer reads the image in {multiple}-pixel patches), not {width}×{height}"
        )


def vae_tiles(pipe, width: int, height: int) -> bool:
    """Whether the VAE decodes in blended tiles, as it does past its native size (see loading.prepare)."""
    latent = max(width, height) // pipe.vae_scale_factor
    return getattr(pipe.vae, "use_tiling", False) and latent > pipe.vae.tile_latent_min_size


def truncation_warning(which: str, pipe, dropped: str) -> str:
    window = token_window(pipe.tokenizer, pipe.text_encoder)
    if detect_family(pipe).t5 is not None:
        return (
            f"the {which} is longer than CLIP-L's and CLIP-G's {window}-token window; dropped from them (T5 reads up "
            f"to 256 tokens): “{dropped}”"
        )
    return f"the {which} is longer than the text encoder's {window}-token window; dropped: “{dropped}”"


class Stopped(Exception):
    """The render was stopped on request (a Stop button, a closed tab)."""


class Overflowed(Exception):
    """A cell's latents became infinite or NaN in the denoiser: its image would be black. `cell` is its index among
    the cells of the `denoise` call, `step` the step (from 1)."""

    def __init__(self, cell: int, step: int):
        super().__init__(f"cell {cell} overflowed at step {step}")
        self.cell, self.step = cell, step


class OutOfMemory(ValueError):
    """Not even one cell fits in memory; the message says what to make smaller."""


OUT_OF_MEMORY = (MemoryError, torch.OutOfMemoryError)  # CPU allocations, and CUDA's (torch.cuda.OutOfMemoryError)


# Bytes of UNet activations per latent pixel, per channel of its first block and per byte of precision, for one
# image in the batch (two with CFG): 26.1 measured at the peak of SD 1.5's UNet in float16 on an H100 at 512 to 1024
# px (25.4 for the embedded model), rounded up (benchmarks/RESULTS.md). Activations grow with the latent's area and
# the UNet's width; the weights do not.
ACTIVATION_BYTES_FACTOR = 32
HEADROOM = 0.8  # the share of free memory a batch may plan to use: the rest absorbs the estimate's error


def cell_bytes(latent_height: int, latent_width: int, channels: int, element_size: int, guided: bool) -> int:
    """Memory one more cell adds to a denoising batch: its activations in the UNet (twice with CFG, which runs the
    negative prompt in the same batch)."""
    images = 2 if guided else 1
    return ACTIVATION_BYTES_FACTOR * latent_height * latent_width * channels * element_size * images


def cells_that_fit(free_bytes: int, per_cell: int, cells: int) -> int:
    """How many of `cells` to denoise at once, given the device's free memory: at least one (running out of memory
    then halves nothing, and says what to shrink), at most all."""
    return max(1, min(cells, int(free_bytes * HEADROOM) // per_cell))


def denoiser_channels(network) -> int:
    """The width `cell_bytes` scales with: a UNet's first block's channels; for SD 3's transformer its inner width
    (heads × head size) per latent pixel, each token covering patch_size² of them. The transformer's figure is an
    estimate by analogy (a UNet's first block is where its activations peak), not measured like the UNet's."""
    config = network.config
    if "block_out_channels" in config:
        return config.block_out_channels[0]
    return -(-config.num_attention_heads * config.attention_head_dim // config.patch_size**2)


def memory_bound(run, device: torch.device, cells: int, settings: dict) -> int | None:
    """The batch size the free CUDA memory allows, or None where it is not measured (CPU, MPS)."""
    free = free_device_bytes(device)
    if free is None:
        return None
    scale = run.vae_scale_factor
    network = denoiser(run)
    per_cell = cell_bytes(
        settings["height"] // scale,
        settings["width"] // scale,
        denoiser_channels(network),
        network.dtype.itemsize,
        settings["guidance_scale"] > 1,
    )
    return cells_that_fit(free, per_cell, cells)


def denoise(run, conditioning: dict, seeds: list[int], settings: dict, max_batch, progress, should_stop):
    """Images and safety flags for every cell, in chunks of at most `max_batch` cells; then the size of each chunk
    and how often the size halved. When a chunk runs out of memory, the memory is released and the chunk size halves;
    each cell's own generator makes the images the same whatever the chunking."""
    cells = len(seeds)
    size = min(max_batch or cells, cells)
    images, flagged, sizes, halvings = [], [], [], 0
    while len(images) < cells:
        chunk = slice(len(images), len(images) + size)
        done = len(images)  # cells finished before this chunk, for the progress fraction
        count = len(seeds[chunk])

        def report(_pipe, step, _timestep, tensors, done=done, count=count):
            if should_stop is not None and should_stop():
                raise Stopped("stopped")
            latents = tensors.get("latents")
            if latents is not None and not torch.isfinite(latents).all():  # black cells: stop at once, say why
                finite = torch.isfinite(latents.reshape(len(latents), -1)).all(dim=1)
                raise Overflowed(done + int((~finite).nonzero()[0]), step + 1)
            if progress is not None:  # steps done, as a share of the whole job, in units of steps
                steps_done = Fraction(done * settings["num_inference_steps"] + (step + 1) * count, cells)
                whole = steps_done.denominator == 1  # always, unless memory ran short and chunks are uneven
                progress(int(steps_done) if whole else float(steps_done), settings["num_inference_steps"])
            return tensors

        try:
            output = run(
                **{name: tensor[chunk] for name, tensor in conditioning.items()},
                **settings,
                generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds[chunk]],
                callback_on_step_end=report,
            )
        except OUT_OF_MEMORY:
            free_memory()
            if size == 1:
                raise OutOfMemory(
                    f"not enough memory for even one {settings['width']}×{settings['height']} image on "
                    f"{run._execution_device}; make the width and height smaller (fewer cells or steps do not help)"
                ) from None
            size //= 2
            halvings += 1
            continue
        images += output.images
        flagged += getattr(output, "nsfw_content_detected", None) or [False] * count
        sizes.append(count)
    return images, flagged, sizes, halvings


def group_conditioning(cells, rows, positives, negative, zero_negative, empty, length, family) -> dict:
    """The denoiser's conditioning for cells whose prompt and negative prompt are, or are extended to, `length`
    chunks: each row's prompt at its cell's skip, the negative prompt at the same skip (or zeros), pooled on SDXL and
    SD 3 (whose T5 sequence follows the CLIP layers: `Encoding.conditioning`)."""
    prompts = [extended(positives[rows[r][0]], length, empty) for r, _ in cells]
    conditioning = {"prompt_embeds": torch.cat([e.conditioning(k) for e, (_, k) in zip(prompts, cells, strict=True)])}
    if negative is not None:
        negative = extended(negative, length, empty)
        conditioning["negative_prompt_embeds"] = torch.cat([negative.conditioning(k) for _, k in cells])
    elif zero_negative:
        conditioning["negative_prompt_embeds"] = torch.zeros_like(conditioning["prompt_embeds"])
    if family.pooled:
        conditioning["pooled_prompt_embeds"] = torch.cat([e.pooled for e in prompts])
        if negative is not None:
            conditioning["negative_pooled_prompt_embeds"] = negative.pooled.repeat(len(cells), 1)
        elif zero_negative:
            conditioning["negative_pooled_prompt_embeds"] = torch.zeros_like(conditioning["pooled_prompt_embeds"])
    return conditioning


def part_of(progress: Progress | None, before: int, count: int, cells: int, steps: int) -> Progress | None:
    """Progress of a denoising pass over `count` of `cells` cells, `before` of them done in earlier passes, as a
    share of the whole job, in units of steps."""
    if progress is None:
        return None

    def report(done: float, total: int) -> None:
        whole = Fraction(before * steps, cells) + Fraction(done).limit_denominator(10**6) * count / cells
        progress(int(whole) if whole.denominator == 1 else float(whole), total)

    return report


def row_loras(text: str, weights) -> dict:
    """A row's LoRAs for the manifest ({name: weight}, [text encoder, UNet] where they differ) and, when some come
    from the defaults rather than the prompt's tags, the prompt with their tags added, as AUTOMATIC1111 needs it."""
    if not weights:
        return {}
    tagged = {args.split(":")[0].strip() for args in lora_tags(text)}
    added = tag_text(tuple(w for w in weights if w[0] not in tagged))
    return {
        "loras": {n: te if te == unet else [te, unet] for n, te, unet in weights},
        **({"lora_prompt": f"{text} {added}" if text else added} if added else {}),
    }


def same_conditioning(positive: Encoding, negative: Encoding | None, skip: int, earlier: int) -> bool:
    same = torch.equal(positive.embeddings[skip], positive.embeddings[earlier])
    return same and (negative is None or torch.equal(negative.embeddings[skip], negative.embeddings[earlier]))


def holding_loras(function):
    """`function(pipe, …)` run under the pipeline's LoRA lock, its adapters off again after (`loras.held`)."""

    @functools.wraps(function)
    def run(pipe, *args, **kwargs):
        with held(pipe):
            return function(pipe, *args, **kwargs)

    return run


@holding_loras
@torch.no_grad()
def compare(
    pipe,
    prompt: str | list[str],
    *,
    negative_prompt: str = "",
    seed: int | list[int],
    skips=DEFAULT_SKIPS,
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    width: int | None = None,
    height: int | None = None,
    scheduler: str | None = None,
    reference: int | None = None,
    max_batch: int | None = None,
    cache: CellCache | ScopedCache | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    model_name: str | None = None,
    prompt_syntax: str = DEFAULT_SYNTAX,
    embeddings: Mapping | None = None,
    loras: Mapping[str, float] | None = None,
) -> Comparison:
    """Render each (prompt, seed) row at each CLIP skip in `skips`, all cells as one batch; seed -1 draws one.

    `prompt` or `seed` may be a list (the rows); `reference` is the column the difference view compares with
    (default: the model's native skip when it is among `skips`, else the first). `max_batch` bounds how many cells
    go through the denoiser at once (the images are the same; on CUDA, without it, the free memory sets the bound);
    cells found in `cache` are not rendered again, and
    new ones are added to it; `should_stop` is asked after every step, and a true answer ends the render with
    `Stopped`. `model_name` is how the metadata, the grid and the PNGs name the model (default: the name
    `load_pipeline` gives it, `loading.model_name`, else the pipeline's `name_or_path`, else its class name; the app
    passes its public name, so that a server's paths never reach a visitor). `prompt_syntax`
    is how both prompts are read (`clipskip.prompts.SYNTAXES`: "a1111", the default, "a1111-no-norm", "comfyui",
    "plain"); `embeddings` are the textual inversions prompts may name (default: those loaded with the pipeline).
    On SD 3 each cell's conditioning is its skip's CLIP-L and CLIP-G layers, padded, then T5's unchanged sequence
    (`Encoding.conditioning`); it takes `prompt_syntax="plain"` and the Euler sampler (or the model's own) only and
    raises ValueError for the others before any work.
    `loras` ({name: weight}, each from -4 to 4, 0 off) applies LoRAs loaded with the pipeline to every row; a
    prompt's `<lora:name:w>` tags (in the AUTOMATIC1111 syntaxes) override them for its row, as AUTOMATIC1111 reads
    them. Rows with different LoRAs are denoised in consecutive batches, each cell as it renders alone; the shared
    pipeline's adapters are set under its lock and switched off again before this returns, also on errors."""
    # 1. Check inputs
    max_batch = check_max_batch(max_batch)
    family = detect_family(pipe)
    layers = encoder_layers(pipe)
    request = ComparisonRequest.from_inputs(
        prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        skips=skips,
        steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        scheduler=scheduler,
        reference=reference,
        max_skip=layers,
        native_skip=family.native_skip,
        prompt_syntax=prompt_syntax,
        family=family,
    )
    syntax = request.prompt_syntax
    check_model_sampler(request.scheduler, pipe.scheduler)  # SD 3's flow matching takes its own samplers only
    embeddings = getattr(pipe, "clipskip_embeddings", {}) if embeddings is None else embeddings
    known_loras = getattr(pipe, "clipskip_loras", {})
    lora_defaults = check_defaults(loras, known_loras)
    default_w, default_h = native_size(pipe)
    width, height = request.width or default_w, request.height or default_h
    check_size_for(pipe, width, height)
    rows = [(text, random.randint(0, MAX_SEED) if s == RANDOM_SEED else s) for text, s in request.rows]
    guided = request.guidance_scale > 1  # diffusers runs the negative branch only then
    device = pipe._execution_device  # found once: diffusers walks every module to find it

    # 2. Encode each prompt once (every whole layer, which the similarity view needs, and the fractional and
    #    per-encoder columns, from the same pass) and the negative prompt once per set of LoRAs, with those LoRAs set
    #    in the text encoders
    warnings = []
    every_layer = [*range(1, layers + 1), *(skip for skip in request.skips if not skip.whole)]
    lora_sets, lora_notes = {}, []
    for text in dict.fromkeys(text for text, _ in rows):
        tags = lora_tags(text) if syntax.startswith("a1111") else []  # other syntaxes have no LoRA tags
        if not tags and not syntax.startswith("a1111") and re.search(r"<(?:lora|lyco):", text, re.IGNORECASE):
            note = f"<lora:…> tags are words in the {syntax} syntax, not LoRAs: an AUTOMATIC1111 syntax applies them"
            lora_notes += [note] if note not in lora_notes else []
        lora_sets[text], notes = row_weights(tags, lora_defaults, known_loras)
        lora_notes += [note for note in notes if note not in lora_notes]
    positives, negatives, empties, lengths = {}, {}, {}, {}
    negative_note, zero_negative = "unused: CFG scale is 1 or less", False
    zeros_asked = getattr(pipe.config, "force_zeros_for_empty_prompt", False)  # SDXL's option; SD 3 encodes ""
    if guided and family.pooled and not request.negative_prompt and zeros_asked:
        negative_note = "zeros: an empty negative prompt on a checkpoint that asks for zeros (as diffusers does)"
        zero_negative = True
    elif guided:
        negative_note = "the same layer as the prompt"
    for weights in dict.fromkeys(lora_sets.values()):
        use(pipe, weights)
        texts = [text for text, used in lora_sets.items() if used == weights]
        for text in texts:
            positives[text] = encode(pipe, text, every_layer, device, syntax, embeddings)
            if positives[text].dropped:
                warnings.append(truncation_warning("prompt", pipe, positives[text].dropped))
            warnings += [note for note in positives[text].notes if note not in warnings]
        negative = None
        if guided and not zero_negative:
            negative = encode(pipe, request.negative_prompt, request.skips, device, syntax, embeddings, negative=True)
            if negative.dropped and not negatives:
                warnings.append(truncation_warning("negative prompt", pipe, negative.dropped))
            warnings += [note for note in negative.notes if note not in warnings]
        negatives[weights] = negative
        # prompt and negative prompt of different lengths: the shorter gets chunks of the empty prompt
        # (AUTOMATIC1111's "pad prompt/negative prompt to be same length"), so a cell's conditioning is as long as
        # the longer of the two
        longer = {text: max(positives[text].chunks, negative.chunks if negative is not None else 0) for text in texts}
        lengths |= longer
        if any(positives[text].chunks != longer[text] for text in texts) or (
            negative is not None and negative.chunks != max(longer.values())
        ):
            empties[weights] = encode(pipe, "", every_layer, device, syntax, embeddings)
    warnings += lora_notes
    positives = {text: positives[text] for text in lora_sets}  # back in the rows' order
    negative = next(iter(negatives.values()))  # as long, whatever the LoRAs: for the metadata
    empty = next(iter(empties.values()), None)

    # 3. The cells to denoise: within a row, a skip whose conditioning equals an earlier skip's is rendered once
    same_as, unique = {}, []
    for r, (text, _) in enumerate(rows):
        rendered_here = []
        for skip in request.skips:
            twin = next(
                (k for k in rendered_here if same_conditioning(positives[text], negatives[lora_sets[text]], skip, k)),
                None,
            )
            if twin is None:
                unique.append((r, skip))
                rendered_here.append(skip)
            else:
                same_as[(r, skip)] = twin

    # 4. A private view of the shared pipeline: its own scheduler, since schedulers keep per-call state
    run = copy.copy(pipe)
    run.scheduler = make_scheduler(request.scheduler, pipe.scheduler)
    run.set_progress_bar_config(disable=True)

    # 5. Denoise every unique cell not already cached in one batch (or chunks, when memory runs short), each with a
    #    generator seeded with its row's seed
    def cache_key(cell: tuple[int, int]) -> tuple:
        (text, used), skip = rows[cell[0]], cell[1]
        return (
            pipe.name_or_path, weights_identity(pipe), str(device), str(denoiser(pipe).dtype),
            text, request.negative_prompt, used, request.steps, request.guidance_scale, request.scheduler,
            width, height, skip, syntax, tuple(sorted((n, ti.sha256) for n, ti in embeddings.items())),
            tuple((n, known_loras[n].sha256, te, unet) for n, te, unet in lora_sets[text]),
        )  # fmt: skip

    chunking = None
    rendered = {cell: cache.get(cache_key(cell)) for cell in unique} if cache is not None else {}
    cached = {cell for cell, hit in rendered.items() if hit is not None}
    missing = [cell for cell in unique if cell not in cached]
    settings = {
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "width": width,
        "height": height,
    }
    # cells whose conditioning differs in length, or whose LoRAs differ, cannot share a batch: one denoising pass per
    # (LoRAs, length), in order, with the adapters set for its LoRAs
    groups = {}
    for cell in missing:
        text = rows[cell[0]][0]
        groups.setdefault((lora_sets[text], lengths[text]), []).append(cell)
    sizes, halvings, bound, bound_by, done = [], 0, max_batch, "max_batch", 0
    for (weights, length), cells in groups.items():
        use(pipe, weights)
        conditioning = group_conditioning(
            cells, rows, positives, negatives[weights], zero_negative, empties.get(weights), length, family
        )
        seeds = [rows[r][1] for r, _ in cells]
        if max_batch is None:
            bound, bound_by = memory_bound(run, device, len(cells), settings), "free CUDA memory"
        report = part_of(progress, done, len(cells), len(missing), request.steps)
        done += len(cells)
        try:
            fresh, flagged, group_sizes, group_halvings = denoise(
                run, conditioning, seeds, settings, bound, report, should_stop
            )
        except Overflowed as overflow:
            r, skip = cells[overflow.cell]
            where = f"row {r + 1}'s cell" if len(rows) > 1 else "the cell"
            raise ValueError(
                f"{where} at CLIP skip {skip} overflowed in the denoiser at step {overflow.step} of {request.steps} "
                f"({str(denoiser(run).dtype).removeprefix('torch.')}): its image would be black. Weights far above 1 "
                "in the prompt or negative prompt, like (word:1e20), do this: use smaller ones"
            ) from None
        sizes += group_sizes
        halvings += group_halvings
        for cell, image, bad in zip(cells, fresh, flagged, strict=True):
            rendered[cell] = (image, bad)
            if cache is not None:
                cache.put(cache_key(cell), image, bad)
    if len(sizes) > 1:  # recorded only when the cells did not go through the denoiser as one batch
        chunking = {"batch_sizes": sizes}
        if bound is not None and bound < len(missing):
            chunking |= {"bound": bound, "bound_by": bound_by}
        if halvings:
            chunking["halved_after_out_of_memory"] = halvings
        if len({length for _, length in groups}) > 1:
            chunking["conditioning_lengths"] = [77 * length for _, length in groups]
        if len({weights for weights, _ in groups}) > 1:
            chunking["loras"] = [tag_text(weights) for weights, _ in groups]
    blocked = {cell for cell, (_, bad) in rendered.items() if bad}
    images = {cell: blocked_cell(image.size, BLOCKED) if bad else image for cell, (image, bad) in rendered.items()}
    for (r, skip), twin in same_as.items():
        images[(r, skip)] = images[(r, twin)]
        if (r, twin) in blocked:
            blocked.add((r, skip))

    # 6. How far each cell is from its row's reference cell
    measured: dict[tuple[int, int], Difference] = {}
    for r in range(len(rows)):
        if (r, request.reference) not in blocked:
            cells = [(r, skip) for skip in request.skips if (r, skip) not in blocked]
            row = differences([images[cell] for cell in cells], images[(r, request.reference)])
            measured.update(zip(cells, row, strict=True))

    # 7. Metadata
    metadata = {
        "clipskip_version": __version__,
        "model": model_name or getattr(pipe, "clipskip_model_name", None) or pipe.name_or_path or type(pipe).__name__,
        "weights_sha256": weights_hash(pipe),
        "family": family.name,
        "prompt": rows[0][0],
        "negative_prompt": request.negative_prompt,
        "seed": rows[0][1],
        "rows_by": "prompt" if len(request.prompts) > 1 else "seed",
        "skips": [skip.json for skip in request.skips],  # whole skips as ints; "1.5", "L1/G2" as text
        "reference_skip": request.reference.json,
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "sampler": sampler_label(request.scheduler, pipe.scheduler),
        "width": width,
        "height": height,
        "text_encoder_layers": layers,
        "negative_conditioning": negative_note,
        "prompt_syntax": syntax,
        "loras": {n: known_loras[n].short_hash for n in sorted({n for w in lora_sets.values() for n, *_ in w})},
        "textual_inversions": {
            name: embeddings[name].short_hash
            for name in sorted({n for e in [*positives.values(), negative] if e is not None for n in e.used})
        },
        "conditioning_chunks": {
            "prompts": [positives[text].chunks for text, _ in rows],
            "negative_prompt": negative.chunks if negative is not None else None,
            **({"extended_with_empty_prompt_chunks_to": sorted(set(lengths.values()))} if empty is not None else {}),
        },
        "columns": [layer_choice(pipe, skip).as_dict() for skip in request.skips],
        "rows": [
            {
                "prompt": text,
                "seed": used,
                "seed_requested": requested,
                **row_loras(text, lora_sets[text]),
                "cells": [
                    {"skip": skip.json}
                    | ({"cached": True} if (r, skip) in cached else {})
                    | ({"same_as": same_as[(r, skip)].json} if (r, skip) in same_as else {})
                    | ({"blocked": BLOCKED} if (r, skip) in blocked else {})
                    | (
                        {
                            "mean_abs_diff": round(measured[(r, skip)].mean_abs_diff, 4),
                            "ssim": round(measured[(r, skip)].ssim, 6),
                        }
                        if (r, skip) in measured
                        else {}
                    )
                    for skip in request.skips
                ],
            }
            for r, ((text, used), (_, requested)) in enumerate(zip(rows, request.rows, strict=True))
        ],
        "embedding_similarity": [
            {
                "prompt": text,
                "reference_skip": family.native_skip,
                "cosine": [
                    round(c, 6)
                    for layer, c in layer_similarity(encoding, family.native_skip).items()
                    if isinstance(layer, int)  # every whole layer, not the other columns' blends
                ],
            }
            for text, encoding in positives.items()
        ],
        "warnings": warnings,
        "vae_decode": "tiled" if vae_tiles(pipe, width, height) else "whole",
        **({"denoise_chunks": chunking} if chunking else {}),
        "device": str(device),
        "dtype": str(denoiser(pipe).dtype).removeprefix("torch."),
        "versions": library_versions(),
    }

    # 8. The grids, drawn when first read
    labels = row_labels(metadata) if len(rows) > 1 else None
    column = {skip: c for c, skip in enumerate(request.skips)}
    reference = request.reference

    def draw_grid() -> Image.Image:
        return render_grid(
            [[images[(r, skip)] for skip in request.skips] for r in range(len(rows))],
            [cell_header(c) for c in metadata["columns"]],
            caption_lines(metadata),
            warnings,
            row_labels=labels,
            badges={(r, column[skip]): f"same as skip {twin}" for (r, skip), twin in same_as.items()},
        )

    def draw_difference_grid() -> Image.Image:
        vmax = heat_scale(list(measured.values()))
        cell_w = images[(0, reference)].width
        text = caption_size(cell_w, len(request.skips))  # the colour bar's label, as large as the caption
        heat_rows = [  # the reference cell itself, for orientation; blocked cells as they are
            [
                heat_image(measured[(r, skip)].heat, vmax)
                if (r, skip) in measured and skip != reference
                else images[(r, skip)]
                for skip in request.skips
            ]
            for r in range(len(rows))
        ]
        return render_grid(
            heat_rows,
            [
                [f"CLIP skip {skip}", "reference" if skip == reference else f"vs skip {reference}"]
                for skip in request.skips
            ],
            [f"Difference from CLIP skip {reference}, per row", *caption_lines(metadata)[1:]],
            row_labels=labels,
            badges={
                (r, column[skip]): "reference image"
                if skip == reference
                else difference_badge(d.mean_abs_diff, d.ssim)
                for (r, skip), d in measured.items()
            },
            footer=colour_bar(min(grid_width(cell_w, len(request.skips)) - 16, 40 * text), vmax, text),
        )

    result_rows = [
        Row(text, used, {skip.key: images[(r, skip)] for skip in request.skips}) for r, (text, used) in enumerate(rows)
    ]
    return Comparison(result_rows, metadata, warnings, draw_grid, draw_difference_grid)
