"""What a comparison's metadata says, turned into the words on the grid and in the gallery. Pure Python."""

import json


def layers_text(cell: dict, of: str = " of ", plus: str = " + ") -> str:
    """'layer 11 of 12' for one text encoder; 'layers 11/12 + 31/32' for SDXL's two."""
    encoders = cell["encoders"]
    if len(encoders) == 1:
        return f"layer {encoders[0]['layer']}{of}{encoders[0]['layers']}"
    return "layers " + plus.join(f"{e['layer']}/{e['layers']}" for e in encoders)


def cell_header(cell: dict) -> list[str]:
    """Header lines over one column: the skip, the layer it selects, and the other tools' names for it."""
    norm = "final norm" if cell["final_norm"] else "no final norm"
    return [
        f"CLIP skip {cell['skip']}" + (" (native)" if cell["native"] else ""),
        f"{layers_text(cell)} · {norm}",
        f"ComfyUI {cell['comfyui']} · diffusers {cell['diffusers']}",
    ]


def cell_caption(cell: dict) -> str:
    """A short line for a gallery cell; the grid's header and the metadata say the rest."""
    return f"skip {cell['skip']} · {layers_text(cell, of='/', plus='+')}"


def settings_line(metadata: dict) -> str:
    m = metadata
    return (
        f"seed {m['seed']} · {m['steps']} steps · CFG {m['guidance_scale']:g} · {m['sampler']} · "
        f"{m['width']}×{m['height']} · model {m['model']} ({m['family']})"
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
