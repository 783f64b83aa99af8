"""A sweep's work: one unit per (model, prompt, seed), all of its skips rendered in one batch exactly as `compare`
renders a comparison, grouped by model so that each model loads once per worker; and where each cell's file goes.
Pure Python."""

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..request import MAX_SEED, RANDOM_SEED

MAX_PROMPTS = 10_000  # lines of a sweep's prompts file
MAX_PROMPTS_FILE_BYTES = 4 * 2**20
MAX_SEEDS = 1_000
MAX_MODELS = 16
MAX_UNITS = 1_000_000  # models × prompts × seeds


@dataclass(frozen=True)
class Unit:
    """One comparison of a sweep: a model, a prompt (its line in the prompts, from 0) and a seed."""

    model: str  # as given: `embedded`, a file, a folder or a Hub id
    prompt_index: int
    prompt: str
    seed: int


def plan(models: list[str], prompts: list[str], seeds: list[int]) -> list[Unit]:
    """Every unit, model by model (a worker loads each model once), then prompt by prompt, then seed by seed.

    Raises ValueError when there would be more than MAX_UNITS."""
    count = len(models) * len(prompts) * len(seeds)
    if count > MAX_UNITS:
        raise ValueError(
            f"the sweep would be {count:,} comparisons ({len(models)} models × {len(prompts):,} prompts × "
            f"{len(seeds)} seeds); at most {MAX_UNITS:,}: split it"
        )
    return [
        Unit(model, index, prompt, seed) for model in models for index, prompt in enumerate(prompts) for seed in seeds
    ]


def drawn_seeds(seeds: list[int]) -> list[int]:
    """The seeds with each RANDOM_SEED (-1) replaced by a drawn one, all different: drawn once, when a sweep starts,
    and kept in its settings so that a resumed sweep renders the same cells."""
    rng, used, result = random.SystemRandom(), {seed for seed in seeds if seed != RANDOM_SEED}, []
    for seed in seeds:
        if seed == RANDOM_SEED:
            seed = rng.randint(0, MAX_SEED)
            while seed in used:  # a drawn seed never repeats another
                seed = rng.randint(0, MAX_SEED)
        used.add(seed)
        result.append(seed)
    return result


def model_folder(model: str) -> str:
    """A model's folder in the output: its public name made safe for any file system, and a short hash of what was
    given, so two models of one name (two `model.safetensors` in different folders) never share a folder."""
    from ..settings import model_name  # settings reads the flags, and a sweep's limits from here

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name(model)).strip("._") or "model"
    return f"{safe[:48]}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def skip_text(skip) -> str:
    """A skip as a file name holds it: its label, with any `/` (a skip per encoder, `L1/G2`) as `-`."""
    return str(skip).replace("/", "-")


def cell_path(unit: Unit, skip) -> PurePosixPath:
    """Where a cell's PNG goes, relative to the sweep's folder: cells/<model>/p<prompt>-seed<seed>/skip-<skip>.png."""
    return PurePosixPath(
        "cells", model_folder(unit.model), f"p{unit.prompt_index:05d}-seed{unit.seed}", f"skip-{skip_text(skip)}.png"
    )
