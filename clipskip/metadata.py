"""What a comparison's metadata says, turned into the words on the grid and in the gallery. Pure Python."""

import json


def cell_header(cell: dict) -> list[str]:
    """Header lines over one column: the skip, the layer it selects, and the other tools' names for it."""
    norm = "final norm" if cell["final_norm"] else "no final norm"
    diffusers = cell["diffusers_clip_skip"]
    return [
        f"CLIP skip {cell['skip']}",
        f"layer {cell['layer']} of {cell['layers']} · {norm}",
        f"ComfyUI {cell['comfyui']} · diffusers {'unset' if diffusers is None else f'clip_skip={diffusers}'}",
    ]


def cell_caption(cell: dict) -> str:
    """A short line for a gallery cell; the grid's header and the metadata say the rest."""
    return f"CLIP skip {cell['skip']} · layer {cell['layer']}/{cell['layers']}"


def settings_line(metadata: dict) -> str:
    m = metadata
    return (
        f"seed {m['seed']} · {m['steps']} steps · CFG {m['guidance_scale']:g} · {m['sampler']} · "
        f"{m['width']}×{m['height']} · model {m['model']}"
    )


def caption_lines(metadata: dict) -> list[str]:
    """The grid's caption: prompt, negative prompt, settings."""
    lines = [f"Prompt: {metadata['prompt'] or '(empty)'}"]
    if metadata["negative_prompt"]:
        lines.append(f"Negative prompt: {metadata['negative_prompt']}")
    lines.append(settings_line(metadata))
    return lines


def to_json(metadata: dict) -> str:
    return json.dumps(metadata, indent=2, ensure_ascii=False)
