"""This app's own manifest (the grid PNG's `clipskip` text: a comparison's whole metadata), read back into the form.
Pure Python."""

from ..families import SD1, SD2, SD3, SDXL
from ..request import MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_ROWS, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE, check_syntax
from ..samplers import SAMPLERS
from ..skips import Skip, from_number, parse_skip
from .fields import MAX_CLIP_SKIP, MAX_NAME_CHARS, ImageSettings, checked, checked_text, shown
from .png import parse_json


def manifest_skip(name: str, value) -> Skip:
    """A skip as the manifest writes it: an int from 1 to MAX_CLIP_SKIP, or the text of a fractional or per-encoder
    one ("1.5", "L1/G2"; `clipskip.skips.parse_skip`), each encoder's value in that range."""
    if isinstance(value, str):
        skip = parse_skip(value, name, shown)
        if skip.whole or not all(100 <= h <= 100 * MAX_CLIP_SKIP for h in skip.hundredths):
            raise ValueError(
                f"{name} must be a fraction or a skip per encoder from 1 to {MAX_CLIP_SKIP}, not {shown(value)}"
            )
        return skip
    return from_number(checked(name, value, int, 1, MAX_CLIP_SKIP))


KEY = "clipskip"
FAMILY_NAMES = (SD1.name, SD2.name, SDXL.name, SD3.name)
MAX_BYTES = 512 * 2**10  # 8 rows of 2,000-character prompts, each written twice, in CJK: about 150 KB
MAX_DEPTH = 16  # a manifest nests 5 deep
MAX_BRACKETS = 2**14  # one of 8 rows and 64 skips has about 2,000; json.loads takes 0.3 µs each
TEXTS = {KEY: MAX_BYTES}
FIELDS = ("rows_by", "rows", "prompt", "negative_prompt", "seed", "skips", "reference_skip", "steps")
FIELDS += ("guidance_scale", "width", "height", "model", "sampler")


def read(texts: dict[str, str]) -> ImageSettings | None:
    """The settings of a grid this app wrote: every one of them, rows and skips included."""
    if KEY not in texts:
        return None
    try:
        metadata = parse_json(texts[KEY], "a manifest nests 5 deep", MAX_DEPTH, MAX_BRACKETS)
        form, notes = manifest_settings(metadata)
    except ValueError as error:
        raise ValueError(f"this image's clipskip settings are not valid: {error}") from None
    family = metadata.get("family")  # a name the app knows, or none: it only adds a note when it differs
    return ImageSettings("a clipskip grid", form, notes, family=family if family in FAMILY_NAMES else None)


def manifest_settings(metadata: dict) -> tuple[dict, list[str]]:
    """The form settings in a manifest (a comparison's metadata), each checked against the app's limits.

    A ValueError names the first field that is missing, of the wrong type or out of range.
    """
    # 1. The fields the form uses are there, with rows the form can hold
    m = checked("the manifest", metadata, dict)
    for name in FIELDS:
        if name not in m:
            raise ValueError(f"{name} is missing")
    if m["rows_by"] not in ("seed", "prompt"):
        raise ValueError(f"rows_by must be 'seed' or 'prompt', not {shown(m['rows_by'])}")
    by_prompt = m["rows_by"] == "prompt"
    rows = checked("rows", m["rows"], list)
    if not 1 <= len(rows) <= MAX_ROWS:
        raise ValueError(f"rows must hold 1 to {MAX_ROWS} rows, not {len(rows):,}")
    for number, row in enumerate(rows, 1):
        for name in ("prompt", "seed"):
            if name not in checked(f"row {number}", row, dict):
                raise ValueError(f"row {number}'s {name} is missing")
        checked_text(f"row {number}'s prompt", row["prompt"], MAX_PROMPT_CHARS)
        checked(f"row {number}'s seed", row["seed"], int, 0, MAX_SEED)
        if by_prompt and (len(row["prompt"].splitlines()) != 1 or not row["prompt"].strip()):
            raise ValueError(f"row {number}'s prompt must be one line of text: the prompt box holds a row per line")
    # 2. The skips: the UI later limits them to the chosen model's layers
    skips = checked("skips", m["skips"], list)
    if not 1 <= len(skips) <= MAX_CLIP_SKIP:
        raise ValueError(f"skips must list 1 to {MAX_CLIP_SKIP} values, not {len(skips):,}")
    skips = [manifest_skip("each skip", skip) for skip in skips]
    if len(set(skips)) < len(skips):
        raise ValueError("skips lists a value twice")
    if manifest_skip("reference_skip", m["reference_skip"]) not in skips:
        raise ValueError(f"reference_skip must be one of the skips, not {shown(m['reference_skip'])}")
    skips = [skip.json for skip in skips]  # whole skips as ints, the others as their text ("1.5", "L1/G2")
    # 3. Every other setting, in the app's range
    for side in ("width", "height"):
        if checked(side, m[side], int, MIN_SIZE, MAX_SIZE) % 8:
            raise ValueError(f"{side} must be a multiple of 8, not {m[side]}")
    # a row's LoRAs from the page or --lora are in its lora_prompt as <lora:…> tags, the way AUTOMATIC1111 gets them
    prompts = [
        checked_text(f"row {n}'s lora_prompt", row["lora_prompt"], MAX_PROMPT_CHARS) if "lora_prompt" in row else None
        for n, row in enumerate(rows, 1)
    ]
    if by_prompt:
        prompt = "\n".join(tagged or row["prompt"] for tagged, row in zip(prompts, rows, strict=True))
    else:
        prompt = prompts[0] or checked_text("prompt", m["prompt"], MAX_PROMPT_CHARS)
    form = {
        "prompt": prompt,
        "prompt_rows": by_prompt,
        "negative_prompt": checked_text("negative_prompt", m["negative_prompt"], MAX_PROMPT_CHARS),
        "seed": checked("seed", m["seed"], int, 0, MAX_SEED),
        "seeds": "" if by_prompt or len(rows) == 1 else ", ".join(str(row["seed"]) for row in rows),
        "skips": skips,
        "steps": checked("steps", m["steps"], int, 1, MAX_STEPS),
        "guidance_scale": float(checked("guidance_scale", m["guidance_scale"], float, 0, MAX_GUIDANCE)),
        "width": m["width"],
        "height": m["height"],
        "model": checked_text("model", m["model"], MAX_NAME_CHARS),
        "reference": parse_skip(m["reference_skip"]).json,
    }
    # older manifests have none: their prompts were read as written
    form["prompt_syntax"] = check_syntax(m["prompt_syntax"]) if "prompt_syntax" in m else "plain"
    notes = []
    if any("loras" in row for row in rows):
        notes.append(
            "its rows' LoRAs are <lora:…> tags in their prompts: set the LoRA sliders to 0 to render it as it was"
        )
    if checked_text("sampler", m["sampler"], MAX_NAME_CHARS) in SAMPLERS:
        form["scheduler"] = m["sampler"]
    else:
        notes.append(f"sampler {shown(m['sampler'])} is the model's own, not one of the sampler menu's")
    return form, notes
