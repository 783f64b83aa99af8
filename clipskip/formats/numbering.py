"""Every tool's number for a CLIP skip, per model family, both ways: the one table that cell labels, the metadata,
README and every reader of other tools' files use. Pure Python.

clipskip's skip N selects `hidden_states[-N]` of each text encoder (the final norm where the family applies it), on
the encoder as diffusers checkpoints have it (SD 2.x: 23 layers). Each tool's rule, from its own source
(`../shared/clip-skip-layers.md`, `../shared/prompt-syntax.md`):

- AUTOMATIC1111 (`modules/sd_hijack_clip.py`): "Clip skip" N is clipskip's N on SD 1.x. On SD 2.x it has no effect
  (the OpenCLIP wrapper always takes the penultimate of OpenCLIP-H's 24 layers, the last of diffusers' 23: skip 1).
  On SDXL it only touches CLIP-L, and only with the option "Clip skip SDXL: CLIP-L too"; without it every SDXL image
  is conditioned on both encoders' penultimate layer: skip 2.
- Forge (`backend/text_processing/classic_engine.py`, `backend/diffusion_engine/sd20.py`): N on SD 1.x and on SD
  2.x's diffusers encoder; max(N, 2) on SDXL, both encoders, so its 1 and 2 are the same.
- ComfyUI (`CLIPSetLastLayer`): −N on SD 1.x and SDXL; −(N+1) on SD 2.x, whose OpenCLIP-H keeps all 24 layers, so
  ComfyUI −1 there has no clipskip equivalent. Without the node: −1 on SD 1.x, −2 on SD 2.x and SDXL.
- diffusers (`encode_prompt`): `clip_skip` k selects `hidden_states[-(k+1)]` on SD 1.x/2.x and `[-(k+2)]` on SDXL.
- InvokeAI: `clip_skip` s removes s layers: N − 1, and N − 2 on SDXL (it then takes the penultimate layer).
- SD.Next: its clip skip N is clipskip's N on SD 1.x/2.x; on SDXL it selects `hidden_states[-(N+1)]`: N − 1.
- SD 3 / 3.5 (diffusers' `pipeline_stable_diffusion_3.py`, `../shared/prompt-syntax.md`): CLIP-L and CLIP-G both at
  `hidden_states[-N]`, no final norm, native 2. ComfyUI's CLIPSetLastLayer −N sets both (−2 without the node);
  diffusers' `clip_skip` k selects `[-(k+2)]` (unset: −2). What AUTOMATIC1111, Forge, InvokeAI and SD.Next do with
  their clip skip on SD 3 is not in the sources gathered: no equivalent is claimed for them.
- Fractional skips (N + f) are SD.Next's alone (its float slider, `hidden_states[-(N+1)]` counted as on SDXL above);
  a skip per encoder (`L3/G2`) is AUTOMATIC1111's Clip skip 3 on SDXL with "Clip skip SDXL: CLIP-L too" on, where
  CLIP-G stays at 2 and CLIP-L's value is whole. Every other tool has none.
- Read only: Fooocus counts as ComfyUI does (its N is CLIPSetLastLayer −N; default 2); NovelAI records none (its
  models condition on the penultimate layer, the origin of "clip skip 2").
"""

import re
from dataclasses import dataclass

from ..families import SD1, SD2, SD3, SDXL, Family
from ..skips import Skip, number_text

TOOLS = ("AUTOMATIC1111", "Forge", "ComfyUI", "diffusers", "InvokeAI", "SD.Next")
FAMILIES = (SD1, SD2, SDXL, SD3)
SD3_KNOWN = ("ComfyUI", "diffusers")  # the tools whose clip skip on SD 3 the sources gathered describe


@dataclass(frozen=True)
class ToolSkip:
    """One tool's CLIP skip setting as an image's metadata records it."""

    tool: str  # one of TOOLS, or "Fooocus" or "NovelAI"
    value: int | Skip | None  # the tool's own number (a Skip: SD.Next's fraction, this app's own notation); None
    # when the file leaves it out (the tool's default then)


def offset(family: Family) -> int:
    """How far clipskip's skip is from diffusers' and InvokeAI's count: 1, or 2 on SDXL (both start at the
    penultimate layer there)."""
    return family.diffusers_offset


def setting(tool: str, family: Family, skip: int | Skip) -> str | None:
    """What `tool` calls clipskip's `skip` on `family`, as its UI shows it; None where it has no equivalent. `skip` is
    an int or a `clipskip.skips.Skip` (fractional, or one per encoder: `other_setting`).

    Raises KeyError for a tool not in TOOLS.
    """
    if family.name == SD3.name and tool in TOOLS and tool not in SD3_KNOWN:
        return None
    if isinstance(skip, Skip):
        if not skip.whole:
            return other_setting(tool, family, skip)
        skip = skip.json
    sd2, sdxl = family.name == SD2.name, family.name == SDXL.name
    if tool == "AUTOMATIC1111":
        if sd2:
            return "any (no effect on SD 2.x)" if skip == 1 else None
        if sdxl:
            return "any (CLIP-L too: off)" if skip == 2 else None
        return str(skip)
    if tool == "Forge":
        if sdxl:
            return None if skip == 1 else "1 or 2" if skip == 2 else str(skip)
        return str(skip)
    if tool == "ComfyUI":
        return str(-(skip + 1) if sd2 else -skip)
    if tool in ("diffusers", "InvokeAI"):
        k = skip - offset(family)
        if k < 0:
            return None  # neither can select SDXL's last layer
        if tool == "diffusers":
            return "unset" if k == 0 else f"clip_skip={k}"
        return str(k)
    if tool == "SD.Next":
        return str(skip - 1 if sdxl else skip)
    raise KeyError(tool)


def other_setting(tool: str, family: Family, skip: Skip) -> str | None:
    """`setting` for a fractional or per-encoder skip: SD.Next's float for a fractional one (one less on SDXL);
    AUTOMATIC1111's Clip skip N with "CLIP-L too" on for `LN/G2` on SDXL (N whole); None for the rest."""
    if tool not in TOOLS:
        raise KeyError(tool)
    sdxl = family.name == SDXL.name
    if skip.uniform:
        return number_text(skip.hundredths[0] - (100 if sdxl else 0)) if tool == "SD.Next" else None
    clip_l, clip_g = skip.hundredths
    if tool == "AUTOMATIC1111" and sdxl and clip_g == 200 and clip_l % 100 == 0:
        return f"{clip_l // 100} (CLIP-L too: on)"
    return None


def equivalents(family: Family, skip: int | Skip) -> dict[str, str | None]:
    """Every tool's setting for clipskip's `skip` on `family` (see `setting`), in TOOLS order."""
    return {tool: setting(tool, family, skip) for tool in TOOLS}


def skip_for(tool: str, family: Family, value: int | Skip | None) -> tuple[int | Skip | None, str | None]:
    """clipskip's skip for a tool's setting `value` on `family` (None: the file leaves it out), and a note where the
    tool did something other than its number says, or where the setting has no equivalent (skip None then).

    The skip may still exceed the chosen model's layers: the caller checks that. Raises KeyError for an unknown tool.
    """
    sd2, sdxl = family.name == SD2.name, family.name == SDXL.name
    if family.name == SD3.name and tool in TOOLS and tool not in SD3_KNOWN:
        return None, f"what {tool}'s clip skip selects on SD 3 models is not known here, so no skip was loaded from it"
    if isinstance(value, Skip) and tool == "clipskip":
        return value, None
    if isinstance(value, Skip) and tool == "SD.Next":  # its fractional skip
        skip = Skip((value.hundredths[0] + (100 if sdxl else 0),))
        if skip.hundredths[0] < 100:
            return None, f"SD.Next's Clip skip {value} is below 1, which selects no layer here"
        return skip, None
    if tool == "AUTOMATIC1111":
        if sd2:
            note = (
                None
                if value in (None, 1)
                else (
                    f"AUTOMATIC1111's Clip skip {value} has no effect on SD 2.x models (it always uses OpenCLIP's "
                    "penultimate layer, skip 1 here), so skip 1 was loaded"
                )
            )
            return 1, note
        if sdxl:
            note = (
                "AUTOMATIC1111 conditions SDXL on both encoders' penultimate layer, skip 2 here, whatever its Clip "
                "skip says"
            )
            if value not in (None, 1, 2):
                note += (
                    f"; with its option 'Clip skip SDXL: CLIP-L too' on, CLIP-L alone used layer −{value}: that is "
                    f"L{value}/G2 here (the AUTOMATIC1111 SDXL preset)"
                )
            return 2, note
        return (1 if value is None else value), None
    if tool == "Forge":
        if sdxl:
            value = 1 if value is None else value
            note = f"Forge uses skip 2 on SDXL for its Clip skip {value}" if value < 2 else None
            return max(value, 2), note
        return (1 if value is None else value), None
    if tool in ("ComfyUI", "Fooocus"):
        if tool == "Fooocus":  # its clip_skip N is ComfyUI's CLIPSetLastLayer −N, 2 by default
            value = -(2 if value is None else value)
        elif value is None:  # no CLIPSetLastLayer: the family's default layer, which is its native skip
            return family.native_skip, None
        if value >= 0:
            return None, f"ComfyUI's stop_at_clip_layer {value} is not a layer (it counts −1, −2, … from the end)"
        if sd2 and value == -1:
            return None, (
                "ComfyUI −1 on SD 2.x is OpenCLIP-H's last layer, which diffusers' SD 2.x text encoder (23 layers) "
                "does not have; the nearest is skip 1 (ComfyUI −2)"
            )
        return (-value - 1 if sd2 else -value), None
    if tool in ("diffusers", "InvokeAI"):
        return (family.native_skip if value is None else value + offset(family)), None
    if tool == "SD.Next":
        value = 1 if value is None else value
        return (value + 1 if sdxl else value), None
    if tool == "clipskip":  # this app's own cells: its numbering
        return (1 if value is None else value), None
    if tool == "NovelAI":
        return 2, "NovelAI records no CLIP skip; its models condition on the penultimate layer, skip 2 here"
    raise KeyError(tool)


FOOOCUS_VERSION = re.compile(r"Fooocus v?([0-9]{1,3})\.([0-9]{1,3})")


def fooocus_absent_skip(version) -> tuple[int, str | None]:
    """Fooocus's clip_skip when its file leaves it out: from 2.3 it writes the setting only above 1, so absent is 1;
    older versions had no setting and used 2. `version` is the file's ("Fooocus v2.5.0"); returns the value and a note
    where the version does not settle it."""
    match = FOOOCUS_VERSION.match(version) if isinstance(version, str) else None
    if match and (int(match[1]), int(match[2])) >= (2, 3):
        return 1, None
    return 2, (
        "it records no clip_skip and no Fooocus version that settles it (2.3 and later leave out 1; older ones used "
        "2): 2 was loaded"
    )


def markdown_table(family: Family, skips) -> str:
    """README's table of every tool's setting for `skips` on `family` ("—": no equivalent)."""
    lines = ["| clipskip | " + " | ".join(TOOLS) + " |", "|---" * (len(TOOLS) + 1) + "|"]
    for skip in skips:
        native = " (native)" if skip == family.native_skip else ""
        cells = ["—" if s is None else "−" + s[1:] if s[0] == "-" else s for s in equivalents(family, skip).values()]
        lines.append(f"| {skip}{native} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
