"""A comparison on disk: PNGs that carry their own settings, the JSON manifest, a zip.

Every cell PNG has an AUTOMATIC1111-compatible `parameters` text (so AUTOMATIC1111's PNG Info, Civitai and this app
read it) and ComfyUI's two graphs (dropped on ComfyUI, they rebuild the cell with its own nodes); the grid PNG
carries the whole manifest as JSON under `clipskip`. Reading them back is `clipskip.formats`. Pure PIL and Python.
"""

import contextlib
import re
import secrets
import shutil
import time
import zipfile
from pathlib import Path

from PIL import PngImagePlugin

from .formats.a1111 import write_parameters
from .formats.comfyui import cell_graphs
from .formats.manifest import KEY as MANIFEST_KEY
from .metadata import to_json

BUNDLE_MAX_AGE_S = 3600  # bundles older than this are removed when the next one is written
BUNDLE_MAX_TOTAL_BYTES = 512 * 2**20  # and the oldest go while all of them together are larger than this
BUNDLE_NAME = re.compile(r"clipskip-\d{8}-\d{6}-seed\d{1,10}-[0-9a-f]{16}")  # a bundle folder's name (write_bundle)


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
    """grid.png (with the manifest), difference.png, one PNG per cell (with AUTOMATIC1111's `parameters` and ComfyUI's
    `prompt` and `workflow` graphs), comparison.json."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = to_json(result.metadata)
    paths = [folder / "grid.png", folder / "difference.png"]
    result.grid.save(paths[0], pnginfo=png_text(**{MANIFEST_KEY: manifest}))
    result.difference_grid.save(paths[1], pnginfo=png_text(**{MANIFEST_KEY: manifest}))
    for r, (row, meta_row) in enumerate(zip(result.rows, result.metadata["rows"], strict=True)):
        for skip, image in row.images.items():
            path = folder / cell_name(result.metadata, r, skip)
            graph, editor = cell_graphs(result.metadata, meta_row, skip)
            parameters = cell_parameters(result.metadata, meta_row, skip)
            image.save(path, pnginfo=png_text(parameters=parameters, prompt=graph, workflow=editor))
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
