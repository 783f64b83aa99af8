"""One comparison's settings, checked before any work: a bad value raises a short ValueError saying what to change."""

import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .samplers import SAMPLERS

RANDOM_SEED = -1
MAX_SEED = 2**32 - 1
MAX_STEPS = 150
MIN_SIZE, MAX_SIZE = 64, 2048
MAX_GUIDANCE = 30.0
MAX_PROMPT_CHARS = 2000
DEFAULT_SKIPS = (1, 2, 3, 4)
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.5
MAX_ROWS = 8


def as_int(name: str, value) -> int:
    """`value` as an int if it is a whole number (20 or 20.0), else a ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not (math.isfinite(value) and float(value).is_integer()):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def as_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def as_text(name: str, value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise ValueError(f"{name} is {len(value):,} characters long; shorten it to at most {MAX_PROMPT_CHARS:,}")
    return value


def check_size(name: str, value) -> int | None:
    if value is None:
        return None
    size = as_int(name, value)
    if not MIN_SIZE <= size <= MAX_SIZE or size % 8:
        raise ValueError(f"{name} must be a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}, not {size}")
    return size


def one_or_many(value) -> tuple:
    """A single value, or a list or tuple of them, as a tuple."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def check_seed(seed) -> int:
    seed = as_int("seed", seed)
    if seed != RANDOM_SEED and not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be -1 (random) or 0 to {MAX_SEED}, not {seed}")
    return seed


def seed_list(text: str) -> list[int]:
    """Row seeds from text: "42, 43, 44", or "random:3" (also "3 random") for three drawn ones (-1 each)."""
    text = text.strip()
    if match := re.fullmatch(r"random:\s*(\d+)|(\d+)\s+random", text):
        count = int(match[1] or match[2])
        if not 1 <= count <= MAX_ROWS:
            raise ValueError(f"random seeds: ask for 1 to {MAX_ROWS}, not {count}")
        return [RANDOM_SEED] * count
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"seeds must be whole numbers separated by commas, like 42, 43, 44, or random:3; got {text!r}"
        ) from None


def check_rows(prompts: tuple, seeds: tuple) -> None:
    if not prompts or not seeds:
        raise ValueError("give at least one prompt and one seed")
    if len(prompts) > 1 and len(seeds) > 1:
        raise ValueError(
            f"rows are either several seeds or several prompts, not both: got {len(prompts)} prompts and "
            f"{len(seeds)} seeds"
        )
    if max(len(prompts), len(seeds)) > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows; got {max(len(prompts), len(seeds))}")


def check_skips(skips, max_skip: int) -> tuple[int, ...]:
    if isinstance(skips, (str, bytes)) or not isinstance(skips, Iterable):
        raise ValueError(f"the CLIP skip values must be a list of whole numbers, not {skips!r}")
    values = tuple(as_int("each CLIP skip", skip) for skip in skips)
    if not values:
        raise ValueError(f"choose at least one CLIP skip value (1 to {max_skip})")
    for skip in values:
        if not 1 <= skip <= max_skip:
            raise ValueError(
                f"CLIP skip {skip} is out of range: this text encoder has {max_skip} layers, so use 1 to {max_skip}"
            )
    repeated = sorted({skip for skip in values if values.count(skip) > 1})
    if repeated:
        raise ValueError(f"CLIP skip {repeated[0]} is listed twice; list each value once")
    return values


@dataclass(frozen=True)
class ComparisonRequest:
    """Validated settings; `width`/`height` None means the model's native size, `scheduler` None its own sampler.

    Rows are several prompts (one seed) or several seeds (one prompt); columns are the skips.
    """

    prompts: tuple[str, ...]
    negative_prompt: str
    seeds: tuple[int, ...]
    skips: tuple[int, ...]
    steps: int
    guidance_scale: float
    width: int | None
    height: int | None
    scheduler: str | None
    reference: int  # the column the difference view compares every other column with

    @property
    def rows(self) -> list[tuple[str, int]]:
        """(prompt, seed) per row."""
        if len(self.prompts) > 1:
            return [(prompt, self.seeds[0]) for prompt in self.prompts]
        return [(self.prompts[0], seed) for seed in self.seeds]

    @classmethod
    def from_inputs(
        cls,
        prompt,
        *,
        negative_prompt="",
        seed=RANDOM_SEED,
        skips=DEFAULT_SKIPS,
        steps=DEFAULT_STEPS,
        guidance_scale=DEFAULT_GUIDANCE,
        width=None,
        height=None,
        scheduler=None,
        reference=None,
        max_skip: int,
        native_skip: int = 1,
    ) -> "ComparisonRequest":
        """`prompt` and `seed` are one value or a list (rows); `reference` None is the native skip if asked for."""
        prompts = tuple(as_text("prompt", p) for p in one_or_many(prompt))
        seeds = tuple(check_seed(s) for s in one_or_many(seed))
        check_rows(prompts, seeds)
        skips = check_skips(skips, max_skip)
        if reference is None:
            reference = native_skip if native_skip in skips else skips[0]
        elif as_int("reference skip", reference) not in skips:
            raise ValueError(f"the reference skip {reference} is not among the skips compared ({skips})")
        steps = as_int("steps", steps)
        if not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be 1 to {MAX_STEPS}, not {steps}")
        guidance_scale = as_float("CFG scale", guidance_scale)
        if not 0 <= guidance_scale <= MAX_GUIDANCE:
            raise ValueError(f"CFG scale must be 0 to {MAX_GUIDANCE:g}, not {guidance_scale:g}")
        if scheduler is not None and scheduler not in SAMPLERS:
            raise ValueError(f"unknown sampler {scheduler!r}; choose one of: {', '.join(SAMPLERS)}")
        return cls(
            prompts=prompts,
            negative_prompt=as_text("negative prompt", negative_prompt),
            seeds=seeds,
            skips=skips,
            steps=steps,
            guidance_scale=guidance_scale,
            width=check_size("width", width),
            height=check_size("height", height),
            scheduler=scheduler,
            reference=int(reference),
        )
