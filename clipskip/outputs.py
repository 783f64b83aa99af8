"""A comparison on disk: PNGs that carry their own settings, the JSON manifest, a zip.

Every cell PNG has an AUTOMATIC1111-compatible `parameters` text (so AUTOMATIC1111's PNG Info, Civitai and this app
read it) and ComfyUI's two graphs (dropped on ComfyUI, they rebuild the cell with its own nodes; none for a fractional
or per-encoder column, which ComfyUI has no setting for); the grid PNG
carries the whole manifest as JSON under `clipskip`. Reading them back is `clipskip.formats`. Pure PIL and Python.

A page shows the grid first: `start_bundle` writes only grid.png, `finish_bundle` the rest; `write_bundle` does both.
"""

import contextlib
import os
import re
import secrets
import shutil
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from PIL import PngImagePlugin

from .formats.a1111 import OWN_SKIP, write_parameters
from .formats.comfyui import FAMILIES, cell_graphs
from .formats.manifest import KEY as MANIFEST_KEY
from .formats.numbering import setting
from .metadata import to_json
from .skips import parse_skip

BUNDLE_MAX_AGE_S = 3600  # bundles older than this are removed when the next one is written
BUNDLE_MAX_TOTAL_BYTES = 512 * 2**20  # and the oldest go while all of them together are larger than this
BUNDLE_NAME = re.compile(r"clipskip-\d{8}-\d{6}-seed\d{1,10}-[0-9a-f]{16}")  # a bundle folder's name (start_bundle)
# How PNGs are compressed (the pixels are the same whatever it is: PNG is lossless). zlib's run-length strategy for
# renders and the grid: at 1024x1024 a cell encodes 2.2x as fast as at Pillow's default (level 6) into a file of the
# same size, the grid 2.7x as fast into one 14 % larger. Heat maps have few runs: zlib's fastest level, 2.2x as fast
# into a file 12 % larger (benchmarks/RESULTS.md).
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_RLE}
HEAT_PNG_OPTIONS = {"compress_level": 1}


def clip_skip_fields(metadata: dict, skip) -> dict:
    """AUTOMATIC1111's "Clip skip" for a cell: the skip itself when whole (written even when 1, unlike AUTOMATIC1111).
    A fractional or per-encoder column has no whole number: "Clip skip" then holds what the tool that has the setting
    would read (AUTOMATIC1111's N for `LN/G2` on SDXL, with "Clip skip SDXL: CLIP-L too" on; SD.Next's fraction) or
    is left out, and this app's own field (`formats.a1111.OWN_SKIP`) always holds the exact column."""
    column = parse_skip(skip)
    if column.whole:
        return {"Clip skip": column.json}
    family = FAMILIES[metadata["family"]]
    theirs = setting("AUTOMATIC1111", family, column) or setting("SD.Next", family, column)
    return ({"Clip skip": theirs.split(" (")[0]} if theirs else {}) | {OWN_SKIP: str(column)}


def cell_parameters(metadata: dict, row: dict, skip) -> str:
    m = metadata
    return write_parameters(
        row.get("lora_prompt", row["prompt"]),  # with tags for the LoRAs the prompt does not tag itself
        m["negative_prompt"],
        {
            "Steps": m["steps"],
            "Sampler": m["sampler"],
            "CFG scale": f"{m['guidance_scale']:g}",
            "Seed": row["seed"],
            "Size": f"{m['width']}x{m['height']}",
            **({"Model hash": m["weights_sha256"][:10]} if m["weights_sha256"] else {}),  # unknown yet: left out
            "Model": m["model"],
            **clip_skip_fields(m, skip),
            **syntax_fields(m.get("prompt_syntax", "plain")),
            **({"Lora hashes": ", ".join(f"{n}: {m['loras'][n]}" for n in row["loras"])} if row.get("loras") else {}),
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


def cell_name(metadata: dict, row_index: int, skip) -> str:
    """skip-2.png, skip-1.5.png, skip-L1-G2.png; rowR-skip-… with several rows. `skip` as the metadata writes it."""
    text = parse_skip(skip).file_text
    return f"skip-{text}.png" if len(metadata["rows"]) == 1 else f"row{row_index + 1}-skip-{text}.png"


def png_text(**chunks: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)  # iTXt, UTF-8, where the text is not Latin-1
    return info


def write_outputs(result, folder: Path) -> list[Path]:
    """grid.png (with the manifest), difference.png, one PNG per cell (with AUTOMATIC1111's `parameters` and ComfyUI's
    `prompt` and `workflow` graphs), comparison.json; their paths, in that order. Written in parallel threads."""
    folder.mkdir(parents=True, exist_ok=True)
    return in_parallel([lambda: write_grid(result, folder), *other_writers(result, folder)])


def write_grid(result, folder: Path) -> Path:
    path = folder / "grid.png"
    result.grid.save(path, pnginfo=png_text(**{MANIFEST_KEY: to_json(result.metadata)}), **PNG_OPTIONS)
    return path


def other_writers(result, folder: Path) -> list[Callable[[], Path]]:
    """A function per file `write_outputs` writes but the grid: difference.png, the cells, comparison.json."""
    metadata = result.metadata
    manifest = to_json(metadata)

    def difference_png() -> Path:
        path = folder / "difference.png"
        result.difference_grid.save(path, pnginfo=png_text(**{MANIFEST_KEY: manifest}), **HEAT_PNG_OPTIONS)
        return path

    def cell_png(r: int, skip: int) -> Path:
        path = folder / cell_name(metadata, r, skip)
        save_cell(result, r, skip, path)
        return path

    def manifest_json() -> Path:
        path = folder / "comparison.json"
        path.write_text(manifest + "\n", encoding="utf-8")
        return path

    cells = [partial(cell_png, r, skip) for r, row in enumerate(result.rows) for skip in row.images]
    return [difference_png, *cells, manifest_json]


def save_cell(result, r: int, skip: int, target) -> None:
    """One cell as a PNG carrying its settings (AUTOMATIC1111's `parameters`; ComfyUI's `prompt` and `workflow` where
    ComfyUI has the skip: not for fractional or per-encoder ones), written to `target`: a path or a binary file."""
    metadata = result.metadata
    parameters = cell_parameters(metadata, metadata["rows"][r], skip)
    graphs = {}
    if setting("ComfyUI", FAMILIES[metadata["family"]], skip) is not None:  # none for fractional, per encoder
        graphs = dict(zip(("prompt", "workflow"), cell_graphs(metadata, metadata["rows"][r], skip), strict=True))
    result.rows[r].images[skip].save(
        target, format="PNG", pnginfo=png_text(parameters=parameters, **graphs), **PNG_OPTIONS
    )


def in_parallel(writers: list[Callable[[], Path]]) -> list[Path]:
    """What each writer returns, in order; run in threads, one per core: Pillow's PNG encoder releases the GIL. The
    longest go first (the grids, first in the list)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="clipskip-files") as pool:
        return list(pool.map(lambda write: write(), writers))


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
    folder); older bundles under `root` are cleaned up (see `clean_up`), so a server's disk never fills. The same as
    `start_bundle` then `finish_bundle`."""
    folder = start_bundle(result, root)
    finish_bundle(result, folder, max_age_s, max_total_bytes)
    return folder


def start_bundle(result, root: Path) -> Path:
    """A new folder under `root` holding only grid.png, with the whole manifest, written as fast as it can be: what
    a page shows first. Its name has a random part: a bundle's files are served to whoever knows their path, so
    nobody may guess another's. `finish_bundle` writes the rest. Raises OSError when the disk refuses."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{result.metadata['seed']}-{secrets.token_hex(8)}"
    folder = root / f"clipskip-{stamp}"
    folder.mkdir(parents=True)
    write_grid(result, folder)
    return folder


def finish_bundle(
    result, folder: Path, max_age_s: float = BUNDLE_MAX_AGE_S, max_total_bytes: int = BUNDLE_MAX_TOTAL_BYTES
) -> Path:
    """The rest of the bundle that `start_bundle(result, ...)` began in `folder`: difference.png, the cell PNGs and
    comparison.json, then the zip of all of them (returned; see `zip_path`), then the clean-up of older bundles
    beside it (see `clean_up`). Raises OSError when the disk refuses."""
    paths = [folder / "grid.png", *in_parallel(other_writers(result, folder))]
    with zipfile.ZipFile(zip_path(folder), "w") as bundle:
        for path in paths:  # PNGs are compressed already: stored as they are, which takes no time
            bundle.write(path, path.name, zipfile.ZIP_STORED if path.suffix == ".png" else zipfile.ZIP_DEFLATED)
    clean_up(folder.parent, folder, max_age_s, max_total_bytes)
    return zip_path(folder)


def zip_path(folder: Path) -> Path:
    return folder / f"{folder.name}.zip"
