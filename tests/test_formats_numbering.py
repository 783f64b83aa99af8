"""The numbering table against each tool's own definition, restated here from `../shared/clip-skip-layers.md` and
`../shared/prompt-syntax.md`: which layer of the diffusers text encoder a tool's setting conditions on."""

import re
from pathlib import Path

import pytest

from clipskip.families import SD1, SD2, SD3, SDXL
from clipskip.formats.numbering import TOOLS, equivalents, markdown_table, setting, skip_for

LAYERS = {SD1.name: 12, SD2.name: 23, SDXL.name: 12, SD3.name: 12}  # diffusers' (SD 2.x: OpenCLIP-H less its last)
SETTINGS = {  # each tool's own range of settings; None: left out / unset
    "AUTOMATIC1111": [None, *range(1, 13)],
    "Forge": [None, *range(1, 13)],
    "ComfyUI": [None, *range(-24, 0)],
    "diffusers": [None, *range(1, 23)],
    "InvokeAI": [None, *range(0, 23)],
    "SD.Next": [None, *range(0, 13)],
}


def layer_used(tool: str, family, value) -> int | None:
    """The index into the diffusers encoder's hidden_states that the tool conditions on for its setting `value`, or
    None where that layer is not in the diffusers encoder. Each line restates one tool's rule."""
    sd2, sdxl = family is SD2, family is SDXL or family is SD3  # SD 3 counts as SDXL: CLIP-L and CLIP-G, no norm
    if family is SD3 and tool not in ("ComfyUI", "diffusers"):
        return None  # what its clip skip does on SD 3 is not in the sources gathered: no layer is claimed
    if tool == "AUTOMATIC1111":
        if sd2:
            return -1  # always OpenCLIP-H's penultimate of 24 layers: the last of diffusers' 23
        if sdxl:
            return -2  # both encoders' penultimate, whatever the setting (option "CLIP-L too" off)
        return -(value or 1)  # 1: last_hidden_state; N: hidden_states[-N], normed
    if tool == "Forge":
        return -max(value or 1, 2) if sdxl else -(value or 1)
    if tool == "ComfyUI":
        if value is None:
            value = -1 if family is SD1 else -2  # CLIPSetLastLayer absent: each family's default
        if sd2:  # ComfyUI's OpenCLIP-H has all 24 layers; its -1 is the layer diffusers dropped
            return None if value == -1 else value + 1
        return value
    if tool == "diffusers":
        return -((value or 0) + (2 if sdxl else 1))  # clip_skip k: hidden_states[-(k+1)], SDXL [-(k+2)]
    if tool == "InvokeAI":  # s layers removed, then the last (the penultimate on SDXL) of those left
        return -((value or 0) + (2 if sdxl else 1))
    if tool == "SD.Next":
        value = 1 if value is None else value
        return -(value + 1) if sdxl else -value
    raise KeyError(tool)


def settings_named(text: str | None, tool: str) -> list:
    """The tool's settings that one entry of the table stands for."""
    if text is None:
        return []
    if text == "unset":
        return [None]
    if text.startswith("any"):
        return SETTINGS[tool]
    if match := re.fullmatch(r"clip_skip=(\d+)", text):
        return [int(match[1])]
    return [int(part) for part in text.split(" or ")]


@pytest.mark.parametrize("family", [SD1, SD2, SDXL, SD3], ids=lambda f: f.name)
@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_setting_in_the_table_conditions_on_clipskips_layer(tool, family):
    for skip in range(1, LAYERS[family.name] + 1):
        named = settings_named(setting(tool, family, skip), tool)
        assert all(layer_used(tool, family, value) == -skip for value in named), (skip, named)
        if not named:  # "no equivalent": truly none of the tool's settings selects this layer
            assert all(layer_used(tool, family, value) != -skip for value in SETTINGS[tool]), skip


@pytest.mark.parametrize("family", [SD1, SD2, SDXL, SD3], ids=lambda f: f.name)
@pytest.mark.parametrize("tool", TOOLS)
def test_reading_a_tools_setting_gives_the_layer_it_used(tool, family):
    for value in SETTINGS[tool]:
        skip, note = skip_for(tool, family, value)
        used = layer_used(tool, family, value)
        assert skip == (None if used is None else -used), value
        assert (note is not None) >= (skip is None)  # no equivalent is always explained


def test_the_facts_users_ask_about():
    assert equivalents(SD1, 2) == {
        "AUTOMATIC1111": "2",
        "Forge": "2",
        "ComfyUI": "-2",
        "diffusers": "clip_skip=1",
        "InvokeAI": "1",
        "SD.Next": "2",
    }  # ComfyUI −2 = A1111 2 = diffusers 1
    assert setting("ComfyUI", SD2, 1) == "-2"  # SD 2.x: −(N+1)
    assert skip_for("ComfyUI", SD2, -1) == (None, skip_for("ComfyUI", SD2, -1)[1])
    assert "does not have" in skip_for("ComfyUI", SD2, -1)[1]
    assert skip_for("AUTOMATIC1111", SDXL, None)[0] == 2  # SDXL without Clip skip: the penultimate layer
    assert skip_for("Forge", SDXL, 1) == (2, "Forge uses skip 2 on SDXL for its Clip skip 1")
    assert skip_for("Fooocus", SDXL, None) == (2, None) and skip_for("Fooocus", SD1, 3) == (3, None)
    assert skip_for("NovelAI", SD1, None)[0] == 2
    assert "CLIP-L alone used layer −4" in skip_for("AUTOMATIC1111", SDXL, 4)[1]
    # SD 3: diffusers' clip_skip k is hidden_states[-(k + 2)], ComfyUI −N; the others' SD 3 numbering is not known
    assert equivalents(SD3, 3) == dict.fromkeys(TOOLS) | {"ComfyUI": "-3", "diffusers": "clip_skip=1"}
    assert skip_for("ComfyUI", SD3, None) == (2, None) and skip_for("diffusers", SD3, None) == (2, None)
    assert skip_for("Forge", SD3, 3)[0] is None and "not known here" in skip_for("Forge", SD3, 3)[1]


def test_readmes_tables_are_the_numbering_tables():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for family in (SD1, SD2, SDXL, SD3):
        assert markdown_table(family, range(1, 5)) in readme, family.name


def test_a_tools_number_past_this_apps_range_is_left_out_with_a_note():
    from clipskip.formats import form_for
    from clipskip.formats.fields import ImageSettings
    from clipskip.formats.numbering import ToolSkip

    form, notes = form_for(ImageSettings("InvokeAI", {}, [], ToolSkip("InvokeAI", 64)), SDXL)
    assert form["skips"] == [] and notes == ["its CLIP skip is 66 here, beyond any text encoder's 64 layers"]
