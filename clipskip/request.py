"""One comparison's settings, checked before any work: a bad value raises a short ValueError saying what to change.

Every check is linear in what was sent and looks at lengths before contents, and every message that shows a bad
value shows it cut short (`short_repr`), so no input can hold the server or fill a page with its echo.
"""

import math
import numbers
import re
import reprlib
from dataclasses import dataclass

from .families import SDXL, Family
from .prompts import SYNTAXES  # how a prompt is read; re-exported for the checks and flags
from .samplers import SAMPLERS
from .skips import A1111_SDXL, Skip, a1111_sdxl, parse_skip

RANDOM_SEED = -1
MAX_SEED = 2**32 - 1
SEED_DIGITS = len(str(MAX_SEED))  # 10: no seed needs more
MAX_STEPS = 150
MIN_SIZE, MAX_SIZE = 64, 2048
MAX_GUIDANCE = 30.0
MAX_PROMPT_CHARS = 2000
DEFAULT_SKIPS = (1, 2, 3, 4)
DEFAULT_SYNTAX = "a1111"
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.5
MAX_ROWS = 8
MAX_PROMPT_BOX_CHARS = MAX_ROWS * (MAX_PROMPT_CHARS + 1)  # one prompt per line: MAX_ROWS full rows and newlines
MAX_SEEDS_CHARS = 200  # "4294967295, " is 12 characters: MAX_ROWS of them, with room for spaces
SHOWN_CHARS = 40  # a bad value shown in a message is cut to this many characters


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, or its first characters and "…" when it is longer than `limit`."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def huge_int(value: int) -> str | None:
    """A few words for an int too long to write out (past 4,300 digits Python refuses to), else None."""
    bits = int(value).bit_length()
    if bits <= 128:  # up to 39 digits
        return None
    sign = "negative " if value < 0 else ""
    return f"a {sign}number about {bits * math.log10(2):,.0f} digits long"


class ShortRepr(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 2, SHOWN_CHARS, SHOWN_CHARS, SHOWN_CHARS
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 6
        self.maxdict = 4

    def repr_int(self, x, level):
        return huge_int(x) or super().repr_int(x, level)

    def repr_instance(self, x, level):
        try:
            return cut(repr(x))
        except Exception:  # a broken __repr__ must not hide the message it was to appear in
            return f"<{type(x).__name__}>"


SHORT_REPR = ShortRepr()


def short_repr(value, limit: int = SHOWN_CHARS) -> str:
    """`value` as Python writes it, cut to `limit` characters: "'xxxx…'", "[1, 1, 1, 1, 1, 1, ...]"."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and (words := huge_int(value)):
        return words
    if isinstance(value, str):
        return cut(repr(value[: limit + 1]), limit)  # only the start is shown: the rest is not written out
    return cut(SHORT_REPR.repr(value), limit)


def as_int(name: str, value) -> int:
    """`value` as an int if it is a whole number (20 or 20.0, never True), else a ValueError naming the setting."""
    if not isinstance(value, bool) and isinstance(value, numbers.Integral):
        return int(value)
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        try:
            whole = int(value)
        except (OverflowError, ValueError):  # infinities, NaN
            whole = None
        if whole is not None and whole == value:
            return whole
    raise ValueError(f"{name} must be a whole number, not {short_repr(value)}")


def as_float(name: str, value, low: float, high: float) -> float:
    """`value` as a float if it is a finite number from `low` to `high` (never True); compared before converting,
    so an int too large for a float is out of range rather than an OverflowError."""
    finite = isinstance(value, numbers.Rational) or (isinstance(value, numbers.Real) and math.isfinite(value))
    if isinstance(value, bool) or not finite:
        raise ValueError(f"{name} must be a finite number, not {short_repr(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low:g} to {high:g}, not {short_repr(value)}")
    return float(value)


def as_text(name: str, value, limit: int = MAX_PROMPT_CHARS) -> str:
    """`value` if it is text of at most `limit` characters that can be written as UTF-8; None is empty text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value):,} characters long; shorten it to at most {limit:,}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # only lone surrogates (U+D800 to U+DFFF) fail: they are not characters
        raise ValueError(
            f"{name} contains a character that is not valid text (a lone surrogate, U+{ord(value[error.start]):04X}, "
            f"at position {error.start + 1})"
        ) from None
    return value


def check_size(name: str, value) -> int | None:
    if value is None:
        return None
    size = as_int(name, value)
    if not MIN_SIZE <= size <= MAX_SIZE or size % 8:
        raise ValueError(f"{name} must be a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}, not {short_repr(value)}")
    return size


def rows_of(value) -> tuple:
    """A single value, or a list or tuple of at most MAX_ROWS of them (counted before anything is copied), as a
    tuple."""
    if not isinstance(value, (list, tuple)):
        return (value,)
    if len(value) > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows; got {len(value):,}")
    return tuple(value)


def check_seed(value) -> int:
    seed = as_int("seed", value)
    if seed != RANDOM_SEED and not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be -1 (random) or 0 to {MAX_SEED}, not {short_repr(value)}")
    return seed


def seed_list(text: str, most: int = MAX_ROWS) -> list[int]:
    """Row seeds from text: "42, 43, 44", or "random:3" (also "3 random") for three drawn ones (-1 each); at most
    `most` of them (a comparison's rows by default; a sweep allows more).

    The text's length, the number of seeds and each one's digits are checked before any is converted."""
    if not isinstance(text, str):
        raise ValueError(f'seeds must be text, like "42, 43, 44" or "random:3", not {short_repr(text)}')
    limit = max(MAX_SEEDS_CHARS, most * (SEED_DIGITS + 2))
    if len(text) > limit:
        raise ValueError(
            f"seeds is {len(text):,} characters long; at most {limit:,} (up to {most} seeds, like 42, 43, 44, or "
            "random:3)"
        )
    text = text.strip()
    if match := re.fullmatch(r"random:\s*([0-9]+)|([0-9]+)\s+random", text):
        count = match[1] or match[2]  # fewer than `limit` digits: int() is quick
        if not 1 <= int(count) <= most:
            raise ValueError(f"random seeds: ask for 1 to {most}, not {cut(count)}")
        return [RANDOM_SEED] * int(count)
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if len(parts) > most:
        raise ValueError(f"at most {most} {'rows' if most == MAX_ROWS else 'seeds'}; got {len(parts)} seeds")
    seeds = []
    for part in parts:
        if not re.fullmatch(r"[+-]?[0-9]+", part):
            raise ValueError(
                "seeds must be whole numbers separated by commas, like 42, 43, 44, or random:3; "
                f"got {short_repr(text)}"
            )
        if len(part.lstrip("+-").lstrip("0")) > SEED_DIGITS:
            raise ValueError(f"seed must be -1 (random) or 0 to {MAX_SEED}, not {cut(part)}")
        seeds.append(check_seed(int(part)))
    return seeds


def rows_from_form(prompt, seed, seeds, prompt_rows) -> tuple[str | list[str], int | list[int]]:
    """The app's prompt box, seed, seeds box and "one prompt per line" tick as compare's `prompt` and `seed`.

    `seeds` is text ("42, 43, 44", "random:3") that replaces `seed` unless it is None or blank; with `prompt_rows`
    (True or False, nothing else) each non-blank line of the prompt box, stripped, is a row. Otherwise `prompt` and
    `seed` pass through unchanged, for compare to check."""
    if not isinstance(prompt_rows, bool):
        raise ValueError(f"prompt_rows must be true or false, not {short_repr(prompt_rows)}")
    if seeds is not None and not isinstance(seeds, str):
        raise ValueError(f'seeds must be text, like "42, 43, 44" or "random:3", not {short_repr(seeds)}')
    rows_of_seeds = seed_list(seeds) if seeds is not None and seeds.strip() else seed
    if not prompt_rows:
        return prompt, rows_of_seeds
    box = as_text("prompt (one per line)", prompt, limit=MAX_PROMPT_BOX_CHARS)
    prompts = [line.strip() for line in box.splitlines() if line.strip()]
    if not prompts:
        raise ValueError("prompt (one per line) is blank: write one prompt per line, one row each")
    return prompts, rows_of_seeds


def check_rows(prompts: tuple, seeds: tuple) -> None:
    if not prompts or not seeds:
        raise ValueError("give at least one prompt and one seed")
    if len(prompts) > 1 and len(seeds) > 1:
        raise ValueError(
            f"rows are either several seeds or several prompts, not both: got {len(prompts)} prompts and "
            f"{len(seeds)} seeds"
        )


def check_skips(skips, max_skip: int, family: Family | None = None) -> tuple[Skip, ...]:
    """The skips (`clipskip.skips.Skip`; a whole one equals its int), in the order given: a list, tuple or range of
    at most `max_skip` values (counted before any is read), each one of `parse_skip`'s notations ("2", 1.5, "L1/G2",
    {"L": 1, "G": 2}) or the preset "a1111-sdxl" (its four columns, SDXL only), each encoder's value from 1 to
    `max_skip`, each column once (`L2/G2` is 2). A per-encoder skip needs a `family` with both CLIP encoders
    (`Family.labels` ("L", "G")), and is refused otherwise."""
    if not isinstance(skips, (list, tuple, range)):
        raise ValueError(f"the CLIP skip values must be a list of whole numbers, not {short_repr(skips)}")
    if not skips:
        raise ValueError(f"choose at least one CLIP skip value (1 to {max_skip})")
    if len(skips) > max_skip:
        raise ValueError(
            f"give at most {max_skip} CLIP skip values (each of 1 to {max_skip} once), not {len(skips):,}"
        )
    if any(isinstance(skip, str) and skip.strip().lower() == A1111_SDXL for skip in skips):
        if family is None or family.name != SDXL.name:
            raise ValueError(
                f"the {A1111_SDXL} preset (AUTOMATIC1111's Clip skip 1 to 4 with 'Clip skip SDXL: CLIP-L too') is for "
                f"SDXL models; this one is {family.name if family else 'not SDXL'}"
            )
        preset = a1111_sdxl()
        skips = [
            s
            for skip in skips
            for s in (preset if isinstance(skip, str) and skip.strip().lower() == A1111_SDXL else [skip])
        ]
        if len(skips) > max_skip:
            raise ValueError(
                f"give at most {max_skip} CLIP skip values, not {len(skips):,} (the {A1111_SDXL} preset is four "
                "columns: L1/G2, 2, L3/G2, L4/G2)"
            )
    values, seen = [], set()
    labels = family.labels if family is not None else ()
    for given in skips:
        skip = parse_skip(given, "each CLIP skip", short_repr)
        if not all(100 <= h <= 100 * max_skip for h in skip.hundredths):
            shown = short_repr(given) if isinstance(given, numbers.Real) else str(skip)
            raise ValueError(
                f"CLIP skip {shown} is out of range: this text encoder has {max_skip} layers, so use 1 to {max_skip}"
            )
        if labels:
            skip.parts(labels)  # a per-encoder skip on a family without both CLIP encoders is refused
        if skip in seen:
            raise ValueError(f"CLIP skip {skip} is listed twice; list each value once")
        seen.add(skip)
        values.append(skip)
    return tuple(values)


def check_steps(value) -> int:
    steps = as_int("steps", value)
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be 1 to {MAX_STEPS}, not {short_repr(value)}")
    return steps


def check_reference(value, skips: tuple[Skip, ...], native_skip: int) -> Skip:
    """The skip every other column is compared with: one of `skips` (any of `parse_skip`'s notations); None is the
    native skip if compared, else the first."""
    if value is None:
        return next((skip for skip in skips if skip == native_skip), skips[0])
    reference = parse_skip(value, "reference skip", short_repr)
    if reference not in skips:
        shown = short_repr(value) if isinstance(value, numbers.Real) else str(reference)
        skips_text = "(" + ", ".join(str(skip) for skip in skips) + ("," if len(skips) == 1 else "") + ")"
        raise ValueError(f"the reference skip {shown} is not among the skips compared ({skips_text})")
    return skips[skips.index(reference)]


def check_max_batch(value) -> int | None:
    """None (no bound) or a whole number of cells, 1 or more: an int, never a bool, a float or text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"max_batch must be a whole number, 1 or more, or None (no bound), not {short_repr(value)}")
    return int(value)


def check_sampler(value) -> str | None:
    names = ", ".join(SAMPLERS)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"sampler must be text, one of: {names}; not {short_repr(value)}")
    if value is not None and value not in SAMPLERS:
        raise ValueError(f"unknown sampler {short_repr(value)}; choose one of: {names}")
    return value


def check_syntax(value) -> str:
    if not isinstance(value, str) or value not in SYNTAXES:
        raise ValueError(f"prompt_syntax must be one of: {', '.join(SYNTAXES)}; not {short_repr(value)}")
    return value


@dataclass(frozen=True)
class ComparisonRequest:
    """Validated settings; `width`/`height` None means the model's native size, `scheduler` None its own sampler.

    Rows are several prompts (one seed) or several seeds (one prompt); columns are the skips.
    """

    prompts: tuple[str, ...]
    negative_prompt: str
    seeds: tuple[int, ...]
    skips: tuple[Skip, ...]  # the columns; a whole skip equals its int
    steps: int
    guidance_scale: float
    width: int | None
    height: int | None
    scheduler: str | None
    reference: Skip  # the column the difference view compares every other column with
    prompt_syntax: str = DEFAULT_SYNTAX

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
        prompt_syntax=DEFAULT_SYNTAX,
        family: Family | None = None,
    ) -> "ComparisonRequest":
        """`prompt` and `seed` are one value or a list (rows); `reference` None is the native skip if asked for;
        `family` is the model's (per-encoder skips and the a1111-sdxl preset need SDXL: `check_skips`)."""
        prompts = tuple(as_text("prompt", p) for p in rows_of(prompt))
        seeds = tuple(check_seed(s) for s in rows_of(seed))
        check_rows(prompts, seeds)
        skips = check_skips(skips, max_skip, family)
        return cls(
            prompts=prompts,
            negative_prompt=as_text("negative prompt", negative_prompt),
            seeds=seeds,
            skips=skips,
            steps=check_steps(steps),
            guidance_scale=as_float("CFG scale", guidance_scale, 0, MAX_GUIDANCE),
            width=check_size("width", width),
            height=check_size("height", height),
            scheduler=check_sampler(scheduler),
            reference=check_reference(reference, skips, native_skip),
            prompt_syntax=check_syntax(prompt_syntax),
        )
