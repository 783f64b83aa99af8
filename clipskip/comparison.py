"""One prompt, one seed, several CLIP skips: encoded once, denoised together as one batch, laid out as a grid."""

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version

import torch
from PIL import Image

from . import __version__
from .encoding import Encoding, encode, encoder_layers, layer_choice, token_window
from .families import detect_family
from .grid import blocked_cell, render_grid
from .metadata import caption_lines, cell_header
from .request import DEFAULT_GUIDANCE, DEFAULT_SKIPS, DEFAULT_STEPS, MAX_SEED, RANDOM_SEED, ComparisonRequest
from .samplers import make_scheduler, sampler_label

Progress = Callable[[int, int], None]  # (denoising steps done, steps in all)
BLOCKED = "the checkpoint's safety checker flagged this image as NSFW"


@dataclass
class Comparison:
    images: dict[int, Image.Image]  # skip value -> image, in the order asked
    grid: Image.Image
    metadata: dict  # JSON-serialisable: every setting, the seed used, the layer of each cell
    warnings: list[str]


def native_size(pipe) -> tuple[int, int]:
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return size, size


def vae_tiles(pipe, width: int, height: int) -> bool:
    """Whether the VAE decodes in blended tiles, as it does past its native size (see loading.prepare)."""
    latent = max(width, height) // pipe.vae_scale_factor
    return getattr(pipe.vae, "use_tiling", False) and latent > pipe.vae.tile_latent_min_size


def truncation_warning(which: str, pipe, dropped: str) -> str:
    window = token_window(pipe.tokenizer, pipe.text_encoder)
    return f"the {which} is longer than the text encoder's {window}-token window; dropped: “{dropped}”"


@torch.no_grad()
def compare(
    pipe,
    prompt: str,
    *,
    negative_prompt: str = "",
    seed: int,
    skips=DEFAULT_SKIPS,
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    width: int | None = None,
    height: int | None = None,
    scheduler: str | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Render `prompt` at each CLIP skip in `skips` from the same noise, as one batch; seed -1 draws one."""
    # 1. Check inputs
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
        max_skip=encoder_layers(pipe),
    )
    default_w, default_h = native_size(pipe)
    width, height = request.width or default_w, request.height or default_h
    seed = random.randint(0, MAX_SEED) if request.seed == RANDOM_SEED else request.seed
    guided = request.guidance_scale > 1  # diffusers runs the negative branch only then

    # 2. Encode prompt and negative prompt: one pass of each text encoder per text, every skip taken from it
    family = detect_family(pipe)
    warnings = []
    positive = encode(pipe, request.prompt, request.skips)
    if positive.dropped:
        warnings.append(truncation_warning("prompt", pipe, positive.dropped))
    negative, negative_note = None, "unused: CFG scale is 1 or less"
    if guided and family.pooled and not request.negative_prompt and pipe.config.force_zeros_for_empty_prompt:
        negative_note = "zeros: an empty negative prompt on a checkpoint that asks for zeros (as diffusers does)"
        negative = Encoding(
            {skip: torch.zeros_like(e) for skip, e in positive.embeddings.items()},
            torch.zeros_like(positive.pooled),
            None,
        )
    elif guided:
        negative_note = "the same layer as the prompt"
        negative = encode(pipe, request.negative_prompt, request.skips)
        if negative.dropped:
            warnings.append(truncation_warning("negative prompt", pipe, negative.dropped))

    # 3. A private view of the shared pipeline: its own scheduler, since schedulers keep per-call state
    run = copy.copy(pipe)
    run.scheduler = make_scheduler(request.scheduler, pipe.scheduler)
    run.set_progress_bar_config(disable=True)

    # 4. Denoise every cell in one batch; one generator per cell, all seeded alike, so each cell sees the same
    #    starting noise (and the same per-step noise with ancestral samplers) as when rendered alone
    def report(_pipe, step, _timestep, tensors):
        if progress is not None:
            progress(step + 1, request.steps)
        return tensors

    cells = len(request.skips)
    conditioning = {"prompt_embeds": torch.cat([positive.embeddings[skip] for skip in request.skips])}
    if negative is not None:
        conditioning["negative_prompt_embeds"] = torch.cat([negative.embeddings[skip] for skip in request.skips])
    if family.pooled:
        conditioning["pooled_prompt_embeds"] = positive.pooled.repeat(cells, 1)
        if negative is not None:
            conditioning["negative_pooled_prompt_embeds"] = negative.pooled.repeat(cells, 1)
    output = run(
        **conditioning,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=width,
        height=height,
        generator=[torch.Generator("cpu").manual_seed(seed) for _ in request.skips],
        callback_on_step_end=report,
    )
    flagged = getattr(output, "nsfw_content_detected", None) or [False] * cells
    images = [
        blocked_cell(image.size, BLOCKED) if bad else image for image, bad in zip(output.images, flagged, strict=True)
    ]

    # 5. Metadata, then the grid drawn from it
    metadata = {
        "clipskip_version": __version__,
        "model": pipe.name_or_path,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": seed,
        "seed_requested": request.seed,
        "skips": list(request.skips),
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "sampler": sampler_label(request.scheduler, pipe.scheduler),
        "width": width,
        "height": height,
        "family": family.name,
        "text_encoder_layers": encoder_layers(pipe),
        "negative_conditioning": negative_note,
        "cells": [
            layer_choice(pipe, skip).as_dict() | ({"blocked": BLOCKED} if bad else {})
            for skip, bad in zip(request.skips, flagged, strict=True)
        ],
        "warnings": warnings,
        "vae_decode": "tiled" if vae_tiles(pipe, width, height) else "whole",
        "device": str(pipe._execution_device),
        "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "versions": {name: version(name) for name in ("torch", "diffusers", "transformers")},
    }
    grid = render_grid(images, [cell_header(cell) for cell in metadata["cells"]], caption_lines(metadata), warnings)
    return Comparison(dict(zip(request.skips, images, strict=True)), grid, metadata, warnings)
