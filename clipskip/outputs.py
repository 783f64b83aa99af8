"""A comparison on disk: PNGs that carry their own settings, the JSON manifest, a zip; and settings read back.

Every cell PNG has an AUTOMATIC1111-compatible `parameters` text (so AUTOMATIC1111's PNG Info, Civitai and this app
read it); the grid PNG carries the whole manifest as JSON under `clipskip`. Pure PIL and Python.
"""

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import struct
import time
import zipfile
import zlib
from itertools import accumulate
from pathlib import Path

from PIL import PngImagePlugin

from .infotext import (
    MAX_CLIP_SKIP,
    MAX_DIGITS,
    MAX_NAME_CHARS,
    MAX_PARAMETERS_CHARS,
    SURROGATE,
    form_settings,
    shown,
    write_parameters,
)
from .metadata import to_json
from .request import MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_ROWS, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE, check_syntax
from .samplers import SAMPLERS

MANIFEST_KEY = "clipskip"
BUNDLE_MAX_AGE_S = 3600  # bundles older than this are removed when the next one is written
BUNDLE_MAX_TOTAL_BYTES = 512 * 2**20  # and the oldest go while all of them together are larger than this

# Reading settings back from a stranger's file: every size is bounded before it is read
MAX_FILE_BYTES = 64 * 2**20  # above an upscaled 4096² AUTOMATIC1111 PNG; only the chunks before the pixels are read
MAX_CHUNKS = 1000  # chunks before the pixel data; real PNGs have a handful
MAX_KEYWORD_BYTES = 79  # the PNG specification's limit
TEXT_CHUNK_FIELDS_BYTES = 1024  # room in a text chunk for its keyword and iTXt's language tag and translated keyword
MAX_MANIFEST_BYTES = 512 * 2**10  # 8 rows of 2,000-character prompts, each written twice, in CJK: about 150 KB
MAX_MANIFEST_DEPTH = 16  # a manifest nests 5 deep
MAX_MANIFEST_BRACKETS = 2**14  # one of 8 rows and 64 skips has about 2,000; json.loads takes 0.3 µs each
MANIFEST_FIELDS = ("rows_by", "rows", "prompt", "negative_prompt", "seed", "skips", "reference_skip", "steps")
MANIFEST_FIELDS += ("guidance_scale", "width", "height", "model", "sampler")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
STRING = re.compile(r'"(?:[^"\\]++|\\[\s\S])*+"?')  # a JSON string, or an unclosed one to the end; never retried
NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
NESTING = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def cell_parameters(metadata: dict, row: dict, skip: int) -> str:
    m = metadata
    return write_parameters(
        row["prompt"],
        m["negative_prompt"],
        {
            "Steps": m["steps"],
            "Sampler": m["sampler"],
            "CFG scale": f"{m['guidance_scale']:g}",
            "Seed": row["seed"],
            "Size": f"{m['width']}x{m['height']}",
            "Model hash": m["weights_sha256"][:10],
            "Model": m["model"],
            "Clip skip": skip,  # written even when 1, unlike AUTOMATIC1111
            **syntax_fields(m.get("prompt_syntax", "plain")),
            **(
                {"TI hashes": ", ".join(f"{n}: {h}" for n, h in m["textual_inversions"].items())}
                if m.get("textual_inversions")
                else {}
            ),
            "Version": f"clipskip {m['clipskip_version']}",
        },
    )


def syntax_fields(syntax: str) -> dict:
    """How AUTOMATIC1111's infotext says a prompt syntax: its `Emphasis` field ("Original", its default, is left out,
    as AUTOMATIC1111 leaves it out); ComfyUI's has no AUTOMATIC1111 name, so this app writes its own field."""
    return {
        "a1111": {},
        "a1111-no-norm": {"Emphasis": "No norm"},
        "plain": {"Emphasis": "None"},
        "comfyui": {"Prompt syntax": "comfyui"},
    }[syntax]


def cell_name(metadata: dict, row_index: int, skip: int) -> str:
    return f"skip-{skip}.png" if len(metadata["rows"]) == 1 else f"row{row_index + 1}-skip-{skip}.png"


def png_text(**chunks: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)  # iTXt, UTF-8, where the text is not Latin-1
    return info


def write_outputs(result, folder: Path) -> list[Path]:
    """grid.png (with the manifest), difference.png, one PNG per cell (with `parameters`), comparison.json."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = to_json(result.metadata)
    paths = [folder / "grid.png", folder / "difference.png"]
    result.grid.save(paths[0], pnginfo=png_text(**{MANIFEST_KEY: manifest}))
    result.difference_grid.save(paths[1], pnginfo=png_text(**{MANIFEST_KEY: manifest}))
    for r, (row, meta_row) in enumerate(zip(result.rows, result.metadata["rows"], strict=True)):
        for skip, image in row.images.items():
            path = folder / cell_name(result.metadata, r, skip)
            image.save(path, pnginfo=png_text(parameters=cell_parameters(result.metadata, meta_row, skip)))
            paths.append(path)
    paths.append(folder / "comparison.json")
    paths[-1].write_text(manifest + "\n", encoding="utf-8")
    return paths


def clean_up(root: Path, keep: Path, max_age_s: float, max_total_bytes: int) -> None:
    """Remove bundles older than `max_age_s`, then the oldest while together they pass `max_total_bytes`. Another
    process may remove or write bundles meanwhile: what vanishes is skipped."""
    bundles = []
    for bundle in root.glob("clipskip-*/"):
        with contextlib.suppress(OSError):
            bundles.append((bundle.stat().st_mtime, sum(f.stat().st_size for f in bundle.iterdir()), bundle))
    bundles.sort()
    total = sum(size for _, size, _ in bundles)
    for mtime, size, old in bundles:
        if old != keep and (time.time() - mtime > max_age_s or total > max_total_bytes):
            total -= size
            shutil.rmtree(old, ignore_errors=True)


def write_bundle(
    result, root: Path, max_age_s: float = BUNDLE_MAX_AGE_S, max_total_bytes: int = BUNDLE_MAX_TOTAL_BYTES
) -> Path:
    """A new folder under `root` with what `write_outputs` writes plus all of it as one zip (named like the
    folder); older bundles under `root` are cleaned up (see `clean_up`), so a server's disk never fills."""
    # a random part: a bundle's files are served to whoever knows their path, so nobody may guess another's
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{result.metadata['seed']}-{secrets.token_hex(8)}"
    folder = root / f"clipskip-{stamp}"
    paths = write_outputs(result, folder)
    with zipfile.ZipFile(zip_path(folder), "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in paths:
            bundle.write(path, path.name)
    clean_up(root, folder, max_age_s, max_total_bytes)
    return folder


def zip_path(folder: Path) -> Path:
    return folder / f"{folder.name}.zip"


def read_settings(path: Path) -> tuple[dict, list[str]]:
    """The form settings a PNG carries (this app's manifest, else AUTOMATIC1111's `parameters`), and notes.

    The file is a stranger's: anything wrong with it is a one-line ValueError saying what, and no part of it costs
    more than time linear in a bounded size. Pixels are never decoded.
    """
    # 1. The two texts, as Pillow's Image.open reads them: from the chunks before the pixel data
    texts = png_texts(path, {MANIFEST_KEY: MAX_MANIFEST_BYTES, "parameters": MAX_PARAMETERS_CHARS})
    # 2. This app's manifest holds every setting; AUTOMATIC1111's text holds one cell's
    if MANIFEST_KEY in texts:
        try:
            return manifest_settings(parse_manifest(texts[MANIFEST_KEY]))
        except ValueError as error:
            raise ValueError(f"this image's clipskip settings are not valid: {error}") from None
    if "parameters" in texts:
        return form_settings(texts["parameters"], SAMPLERS)
    raise ValueError(
        "this image carries no generation settings (no 'parameters' or 'clipskip' text); images re-saved by "
        "editors or sent through chat apps and some sites lose them"
    )


def png_texts(path: Path, wanted: dict[str, int]) -> dict[str, str]:
    """The texts under the keys of `wanted` (each at most that many bytes) from the PNG at `path`.

    Reads the chunks before the first IDAT, as Pillow's Image.open does, skipping the others' data unread.
    """
    not_png = "this file is not a PNG image that can be read; use a PNG made by clipskip or AUTOMATIC1111"
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size > MAX_FILE_BYTES:
                raise ValueError(
                    f"this file is over {MAX_FILE_BYTES // 2**20} MiB; settings are read from smaller ones"
                )
            if file.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise ValueError(not_png)
            texts = {}
            for _ in range(MAX_CHUNKS + 1):  # and the first IDAT
                header = file.read(8)
                if len(header) < 8:
                    break  # cut short: what came before is all there is
                length, kind = struct.unpack(">I4s", header)
                if kind in (b"IDAT", b"IEND"):
                    break
                if kind not in TEXT_CHUNKS:
                    file.seek(length + 4, os.SEEK_CUR)  # data and CRC
                    continue
                keyword = file.read(min(length, MAX_KEYWORD_BYTES + 1))
                key = keyword.split(b"\0", 1)[0].decode("latin-1")
                if key not in wanted:
                    file.seek(length - len(keyword) + 4, os.SEEK_CUR)
                    continue
                if key in texts:
                    raise ValueError(f"this image carries two {key!r} texts; which one holds its settings is unclear")
                if length > wanted[key] + TEXT_CHUNK_FIELDS_BYTES:
                    raise ValueError(f"this image's {key!r} text is over {wanted[key]:,} bytes; it is not read")
                data = keyword + file.read(length - len(keyword))
                if len(data) < length or file.read(4) != struct.pack(">I", zlib.crc32(kind + data)):
                    raise ValueError(f"this image's {key!r} text is damaged (cut short, or its checksum is wrong)")
                texts[key] = chunk_text(kind, data, wanted[key], key)
            else:
                raise ValueError(f"this file has over {MAX_CHUNKS:,} chunks before its pixels; a PNG has a few")
    except OSError:
        raise ValueError(not_png) from None
    return texts


def chunk_text(kind: bytes, data: bytes, max_bytes: int, key: str) -> str:
    """The text of a tEXt (Latin-1), zTXt (compressed Latin-1) or iTXt (UTF-8, maybe compressed) chunk's data."""
    damaged = f"this image's {key!r} text is damaged (it does not decompress or decode)"
    too_long = f"this image's {key!r} text is over {max_bytes:,} bytes; it is not read"
    text = data.split(b"\0", 1)[1] if b"\0" in data else b""  # after the keyword
    compressed, encoding = kind == b"zTXt", "latin-1"
    if kind == b"iTXt":
        fields = text[2:].split(b"\0", 2)  # after the compression flag and method: language tag, translated keyword
        if len(text) < 2 or len(fields) < 3:
            raise ValueError(damaged)
        compressed, encoding, text = text[:1] == b"\1", "utf-8", fields[2]
    elif compressed:
        text = text[1:]  # the compression method
    try:
        if compressed:
            inflate = zlib.decompressobj()
            text = inflate.decompress(text, max_bytes + 1)  # never more than this, however well it packs
            if len(text) <= max_bytes and not inflate.eof:
                raise ValueError(damaged)
        if len(text) > max_bytes:
            raise ValueError(too_long)
        return text.decode(encoding)
    except (zlib.error, UnicodeDecodeError):
        raise ValueError(damaged) from None


def parse_manifest(text: str):
    """The manifest's JSON, refused unparsed if it nests deeper (json.loads recurses) or holds many more lists and
    objects than a manifest does."""
    outside_strings = STRING.sub("", text).encode("utf-8", "surrogatepass")  # brackets in strings do not nest
    brackets = outside_strings.translate(None, NOT_BRACKETS)
    depth = max(accumulate(map(NESTING.__getitem__, brackets[: MAX_MANIFEST_BRACKETS + 1])), default=0)
    if depth > MAX_MANIFEST_DEPTH:
        raise ValueError(f"its JSON is nested more than {MAX_MANIFEST_DEPTH} deep; a manifest nests 5 deep")
    if len(brackets) > MAX_MANIFEST_BRACKETS:
        raise ValueError(f"its JSON has {len(brackets):,} brackets; a manifest has at most {MAX_MANIFEST_BRACKETS:,}")
    try:
        return json.loads(text, parse_int=bounded_number(int), parse_float=bounded_number(float))
    except json.JSONDecodeError as error:
        raise ValueError(f"it is not JSON ({error.msg} at character {error.pos:,})") from None


def bounded_number(kind: type):
    """A json.loads hook that refuses numbers too long to be settings before converting them."""

    def convert(text: str):
        if len(text) > MAX_DIGITS + 2:  # a sign and a decimal point
            raise ValueError(f"it holds a number {len(text):,} characters long")
        return kind(text)

    return convert


def json_kind(value) -> str:
    """What a JSON value is, in words; a number as itself."""
    kinds = {dict: "an object", list: "a list", str: "text", bool: "true or false", type(None): "null"}
    return kinds.get(type(value)) or shown(value)


def checked(name: str, value, kind: type, low=None, high=None):
    """`value` if it is of `kind` (bool is not int; int is float) and within `low`..`high`, else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        words = {int: "a whole number", float: "a number", str: "text", list: "a list", dict: "an object"}[kind]
        raise ValueError(f"{name} must be {words}, not {json_kind(value)}")
    if kind is float and not math.isfinite(value) or low is not None and not low <= value <= high:
        raise ValueError(f"{name} must be {number_text(low)} to {number_text(high)}, not {shown(value)}")
    return value


def number_text(number) -> str:
    return f"{number:,}" if isinstance(number, int) else f"{number:g}"


def checked_text(name: str, value, max_chars: int) -> str:
    checked(name, value, str)
    if len(value) > max_chars:
        raise ValueError(f"{name} is {len(value):,} characters long; at most {max_chars:,}")
    if surrogate := SURROGATE.search(value):
        raise ValueError(f"{name} holds a lone surrogate ({shown(surrogate[0])}), which is not text")
    return value


def manifest_settings(metadata: dict) -> tuple[dict, list[str]]:
    """The form settings in a manifest (a comparison's metadata), each checked against the app's limits.

    A ValueError names the first field that is missing, of the wrong type or out of range.
    """
    # 1. The fields the form uses are there, with rows the form can hold
    m = checked("the manifest", metadata, dict)
    for name in MANIFEST_FIELDS:
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
    for skip in skips:
        checked("each skip", skip, int, 1, MAX_CLIP_SKIP)
    if len(set(skips)) < len(skips):
        raise ValueError("skips lists a value twice")
    if checked("reference_skip", m["reference_skip"], int) not in skips:
        raise ValueError(f"reference_skip must be one of the skips, not {shown(m['reference_skip'])}")
    # 3. Every other setting, in the app's range
    for side in ("width", "height"):
        if checked(side, m[side], int, MIN_SIZE, MAX_SIZE) % 8:
            raise ValueError(f"{side} must be a multiple of 8, not {m[side]}")
    if by_prompt:
        prompt = "\n".join(row["prompt"] for row in rows)
    else:
        prompt = checked_text("prompt", m["prompt"], MAX_PROMPT_CHARS)
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
        "reference": m["reference_skip"],
    }
    # older manifests have none: their prompts were read as written
    form["prompt_syntax"] = check_syntax(m["prompt_syntax"]) if "prompt_syntax" in m else "plain"
    notes = []
    if checked_text("sampler", m["sampler"], MAX_NAME_CHARS) in SAMPLERS:
        form["scheduler"] = m["sampler"]
    else:
        notes.append(f"sampler {shown(m['sampler'])} is the model's own, not one of the sampler menu's")
    return form, notes
