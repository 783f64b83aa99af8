"""A comparison on disk: PNGs that carry their own settings, the JSON manifest, a zip; and settings read back.

Every cell PNG has an AUTOMATIC1111-compatible `parameters` text (so AUTOMATIC1111's PNG Info, Civitai and this app
read it); the grid PNG carries the whole manifest as JSON under `clipskip`. Pure PIL and Python.
"""

import json
import shutil
import time
import zipfile
from pathlib import Path

from PIL import Image, PngImagePlugin

from .infotext import form_settings, write_parameters
from .metadata import to_json
from .samplers import SAMPLERS

MANIFEST_KEY = "clipskip"
BUNDLE_MAX_AGE_S = 3600  # bundles older than this are removed when the next one is written
BUNDLE_MAX_TOTAL_BYTES = 512 * 2**20  # and the oldest go while all of them together are larger than this


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
            "Version": f"clipskip {m['clipskip_version']}",
        },
    )


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
    """Remove bundles older than `max_age_s`, then the oldest while together they pass `max_total_bytes`."""
    bundles = sorted(root.glob("clipskip-*/"), key=lambda path: path.stat().st_mtime)
    sizes = {bundle: sum(f.stat().st_size for f in bundle.iterdir()) for bundle in bundles}
    total = sum(sizes.values())
    for old in bundles:
        if old != keep and (time.time() - old.stat().st_mtime > max_age_s or total > max_total_bytes):
            total -= sizes[old]
            shutil.rmtree(old, ignore_errors=True)


def write_bundle(
    result, root: Path, max_age_s: float = BUNDLE_MAX_AGE_S, max_total_bytes: int = BUNDLE_MAX_TOTAL_BYTES
) -> Path:
    """A new folder under `root` with what `write_outputs` writes plus all of it as one zip (named like the
    folder); older bundles under `root` are cleaned up (see `clean_up`), so a server's disk never fills."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{result.metadata['seed']}-{time.monotonic_ns() % 10**6:06d}"
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
    """The form settings an image carries (this app's manifest, else AUTOMATIC1111's `parameters`), and notes."""
    try:
        with Image.open(path) as image:
            info = dict(image.info)
    except (OSError, ValueError):
        raise ValueError(
            "this file is not an image that can be read; use a PNG made by clipskip or AUTOMATIC1111"
        ) from None
    if MANIFEST_KEY in info:
        return manifest_settings(json.loads(info[MANIFEST_KEY]))
    if "parameters" in info:
        return form_settings(info["parameters"], SAMPLERS)
    raise ValueError(
        "this image carries no generation settings (no 'parameters' or 'clipskip' text); images re-saved by "
        "editors or sent through chat apps and some sites lose them"
    )


def manifest_settings(metadata: dict) -> tuple[dict, list[str]]:
    rows = metadata["rows"]
    by_prompt = metadata["rows_by"] == "prompt"
    form = {
        "prompt": "\n".join(row["prompt"] for row in rows) if by_prompt else metadata["prompt"],
        "prompt_rows": by_prompt,
        "negative_prompt": metadata["negative_prompt"],
        "seed": metadata["seed"],
        "seeds": "" if by_prompt or len(rows) == 1 else ", ".join(str(row["seed"]) for row in rows),
        "skips": metadata["skips"],
        "steps": metadata["steps"],
        "guidance_scale": metadata["guidance_scale"],
        "width": metadata["width"],
        "height": metadata["height"],
        "model": metadata["model"],
        "reference": metadata["reference_skip"],
    }
    notes = []
    if metadata["sampler"] in SAMPLERS:
        form["scheduler"] = metadata["sampler"]
    else:
        notes.append(f"sampler {metadata['sampler']!r} is the model's own, not one of the sampler menu's")
    return form, notes
