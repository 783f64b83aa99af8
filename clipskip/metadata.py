"""What a comparison's metadata says, turned into the words on the grid and in the gallery. Pure Python."""

import json


def layers_text(cell: dict, of: str = " of ", plus: str = " + ") -> str:
    """'layer 11 of 12' for one text encoder; 'layers 11/12 + 31/32' for SDXL's two; 'CLIP-L and CLIP-G layers
    11/12 + 31/32' on SD 3 (whose T5 `cell_header` names). A fractional skip blends two layers: 'between layers 11 and
    10 of 12', 'layers 11–10/12 + 31–30/32'; a column with a skip per encoder names each: 'layers L 12/12 +
    G 31/32'."""
    encoders = cell["encoders"]
    if len(encoders) == 1:
        e = encoders[0]
        if "next_layer" in e and of == "/":  # the compact form, for captions: "layers 12–11/12"
            return f"layers {e['layer']}–{e['next_layer']}/{e['layers']}"
        if "next_layer" in e:
            return f"between layers {e['layer']} and {e['next_layer']}{of}{e['layers']}"
        return f"layer {e['layer']}{of}{e['layers']}"
    parts = [
        f"{e['layer']}–{e['next_layer']}/{e['layers']}" if "next_layer" in e else f"{e['layer']}/{e['layers']}"
        for e in encoders
    ]
    prefix = "CLIP-L and CLIP-G layers " if "t5" in cell else "layers "
    if any("skip" in e for e in encoders):
        return prefix + plus.join(f"{e['skip'][0]} {part}" for e, part in zip(encoders, parts, strict=True))
    return prefix + plus.join(parts)


def cell_header(cell: dict) -> list[str]:
    """Header lines over one column: the skip, the layer it selects, and the other tools' names for it (for a
    fractional or per-encoder skip, the tools that have one: SD.Next, AUTOMATIC1111 with "CLIP-L too"); on SD 3 what
    its pooled embedding and T5 give."""
    norm = "final norm" if cell["final_norm"] else "no final norm"
    equivalents = cell["equivalents"]
    sd3 = "t5" in cell  # what AUTOMATIC1111 does on SD 3 is not known: no label rather than a guess
    if isinstance(cell["skip"], str):  # fractional, or one per encoder
        tools = [tool_text(tool, setting) for tool, setting in equivalents.items() if setting is not None]
        tools = tools or ["no other tool has it"]
    else:
        tools = [
            f"ComfyUI {equivalent_text(equivalents['ComfyUI'])}",
            f"diffusers {equivalent_text(equivalents['diffusers'])}",
        ]
        if equivalents["AUTOMATIC1111"] != str(cell["skip"]) and not sd3:  # SD 2.x, SDXL: its Clip skip is not ours
            tools.append(f"A1111 {equivalent_text(equivalents['AUTOMATIC1111'])}")
    lines = [f"CLIP skip {cell['skip']}" + (" (native)" if cell["native"] else ""), f"{layers_text(cell)} · {norm}"]
    if sd3:
        lines.append("pooled and T5 unchanged" if cell["t5"] == "unchanged" else f"pooled unchanged · T5 {cell['t5']}")
    return [*lines, " · ".join(tools)]


def tool_text(tool: str, setting: str) -> str:
    """'A1111 3, CLIP-L too' for AUTOMATIC1111's Clip skip with its SDXL option on; else 'SD.Next 1.5'."""
    name = "A1111" if tool == "AUTOMATIC1111" else tool
    if setting.endswith("(CLIP-L too: on)"):
        return f"{name} {equivalent_text(setting)}, CLIP-L too"
    return f"{name} {equivalent_text(setting)}"


def equivalent_text(setting: str | None) -> str:
    """A tool's setting as a label shows it: without its explanation in brackets; "—" where it has none."""
    return "—" if setting is None else setting.split(" (")[0].replace("-", "−")


def cell_caption(cell: dict) -> str:
    """A short line for a gallery cell; the grid's header and the metadata say the rest."""
    return f"skip {cell['skip']} · {layers_text(cell, of='/', plus='+')}"


def seeds_text(metadata: dict) -> str:
    seeds = [row["seed"] for row in metadata["rows"]]
    return f"seed {seeds[0]}" if len(set(seeds)) == 1 else "seeds " + ", ".join(map(str, seeds))


def settings_line(metadata: dict) -> str:
    m = metadata
    return (
        f"{seeds_text(m)} · {m['steps']} steps · CFG {m['guidance_scale']:g} · {m['sampler']} · "
        f"{m['width']}×{m['height']} · model {m['model']} ({m['family']})"
    )


def caption_lines(metadata: dict) -> list[str]:
    """The grid's caption: prompt, negative prompt, settings."""
    if metadata["rows_by"] == "prompt":
        lines = ["Prompts: one per row, as labelled"]
    else:
        lines = [f"Prompt: {metadata['prompt'] or '(empty)'}"]
    if metadata["negative_prompt"]:
        lines.append(f"Negative prompt: {metadata['negative_prompt']}")
    lines.append(settings_line(metadata))
    if line := syntax_line(metadata):
        lines.append(line)
    return lines


SYNTAX_NAMES = {
    "a1111": "as AUTOMATIC1111 reads it",
    "a1111-no-norm": "as AUTOMATIC1111 reads it, 'No norm' emphasis",
    "comfyui": "as ComfyUI reads it",
    "plain": "as written",
}


def syntax_line(metadata: dict) -> str | None:
    """How the prompts were read, when that is not plain to see: a syntax other than AUTOMATIC1111's, more than one
    chunk, textual inversions."""
    syntax, chunks = metadata.get("prompt_syntax", "a1111"), metadata.get("conditioning_chunks", {})
    longest = max([*chunks.get("prompts", [1]), chunks.get("negative_prompt") or 1])
    inversions = metadata.get("textual_inversions") or {}
    if syntax == "a1111" and longest == 1 and not inversions:
        return None
    line = f"prompts read {SYNTAX_NAMES[syntax]}"
    if longest > 1:
        line += f" · {longest} chunks of 77 tokens"
    if inversions:
        line += " · textual inversions: " + ", ".join(inversions)
    return line


def row_labels(metadata: dict) -> list[str]:
    """A label per row: its seed, or its prompt."""
    if metadata["rows_by"] == "prompt":
        return [f"Prompt {i}: {row['prompt'] or '(empty)'}" for i, row in enumerate(metadata["rows"], 1)]
    return [f"seed {row['seed']}" for row in metadata["rows"]]


def difference_badge(mean_abs_diff: float, ssim: float) -> str:
    return f"MAD {mean_abs_diff:.1f} · SSIM {ssim:.3f}"


def metrics_rows(metadata: dict) -> list[list]:
    """One table row per cell: row label, skip, layer, mean absolute difference, SSIM, and a note."""
    labels = row_labels(metadata) if len(metadata["rows"]) > 1 else ["1"]
    columns = {column["skip"]: column for column in metadata["columns"]}
    table = []
    for label, row in zip(labels, metadata["rows"], strict=True):
        for cell in row["cells"]:
            skip = cell["skip"]
            notes = ["reference"] if skip == metadata["reference_skip"] else []
            notes += [f"same as skip {cell['same_as']}"] if "same_as" in cell else []
            notes += ["blocked by the safety checker"] if "blocked" in cell else []
            layer = layers_text(columns[skip], of="/", plus="+")
            table.append([label, skip, layer, cell.get("mean_abs_diff"), cell.get("ssim"), ", ".join(notes)])
    return table


def to_json(metadata: dict) -> str:
    return json.dumps(metadata, indent=2, ensure_ascii=False)
