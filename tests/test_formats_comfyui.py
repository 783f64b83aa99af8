"""ComfyUI's graphs: real-shaped API and workflow files fill the form, unmappable ones are refused in one line, hostile
ones answer without hanging, and the graphs written for a cell read back node by node."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipskip.families import SD1, SD2, SDXL
from clipskip.formats import comfyui, form_for, read_image
from clipskip.formats.fields import ImageSettings, model_stem
from clipskip.formats.numbering import ToolSkip, skip_for
from clipskip.outputs import png_text

# ComfyUI's default txt2img graph as its SaveImage writes the `prompt` text, with a CLIPSetLastLayer at −2 between the
# checkpoint's CLIP and both encoders (node ids as the default graph numbers them)
API = {
    "3": {
        "inputs": {
            "seed": 8566257,
            "steps": 28,
            "cfg": 7.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
        "class_type": "KSampler",
        "_meta": {"title": "KSampler"},
    },
    "4": {"inputs": {"ckpt_name": "SD15/anything-v3.safetensors"}, "class_type": "CheckpointLoaderSimple"},
    "5": {"inputs": {"width": 512, "height": 768, "batch_size": 1}, "class_type": "EmptyLatentImage"},
    "6": {
        "inputs": {"text": "masterpiece, 1girl, (cherry blossoms:1.2)", "clip": ["10", 0]},
        "class_type": "CLIPTextEncode",
    },
    "7": {"inputs": {"text": "lowres, bad hands", "clip": ["10", 0]}, "class_type": "CLIPTextEncode"},
    "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode"},
    "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage"},
    "10": {"inputs": {"stop_at_clip_layer": -2, "clip": ["4", 1]}, "class_type": "CLIPSetLastLayer"},
}
FORM = {
    "prompt": "masterpiece, 1girl, (cherry blossoms:1.2)",
    "negative_prompt": "lowres, bad hands",
    "seed": 8566257,
    "steps": 28,
    "guidance_scale": 7.0,
    "scheduler": "DPM++ 2M Karras",
    "model": "SD15/anything-v3.safetensors",
    "width": 512,
    "height": 768,
    "prompt_syntax": "comfyui",
}


def ui_node(node_id, kind, inputs, outputs, widgets, order, **extra) -> dict:
    """A workflow node as ComfyUI's editor saves it: linked inputs, outputs with their links, widget values."""
    return {
        "id": node_id,
        "type": kind,
        "pos": [100 * order, 200],
        "size": {"0": 315, "1": 98},
        "flags": {},
        "order": order,
        "mode": 0,
        "inputs": [{"name": name, "type": kind_, "link": link} for name, kind_, link in inputs],
        "outputs": [
            {"name": name, "type": kind_, "links": links, "slot_index": slot}
            for slot, (name, kind_, links) in enumerate(outputs)
        ],
        "properties": {"Node name for S&R": kind},
        "widgets_values": widgets,
        **extra,
    }


# The same graph as the editor's `workflow` text (the default graph's shape: ids, link table, seed control widget)
WORKFLOW = {
    "last_node_id": 10,
    "last_link_id": 11,
    "nodes": [
        ui_node(4, "CheckpointLoaderSimple", [],
                [("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [10]), ("VAE", "VAE", [8])],
                ["SD15/anything-v3.safetensors"], 0),
        ui_node(10, "CLIPSetLastLayer", [("clip", "CLIP", 10)], [("CLIP", "CLIP", [3, 5])], [-2], 1),
        ui_node(6, "CLIPTextEncode", [("clip", "CLIP", 3)], [("CONDITIONING", "CONDITIONING", [4])],
                ["masterpiece, 1girl, (cherry blossoms:1.2)"], 2),
        ui_node(7, "CLIPTextEncode", [("clip", "CLIP", 5)], [("CONDITIONING", "CONDITIONING", [6])],
                ["lowres, bad hands"], 3),
        ui_node(5, "EmptyLatentImage", [], [("LATENT", "LATENT", [2])], [512, 768, 1], 4),
        ui_node(3, "KSampler", [("model", "MODEL", 1), ("positive", "CONDITIONING", 4),
                                ("negative", "CONDITIONING", 6), ("latent_image", "LATENT", 2)],
                [("LATENT", "LATENT", [7])], [8566257, "randomize", 28, 7, "dpmpp_2m", "karras", 1], 5),
        ui_node(8, "VAEDecode", [("samples", "LATENT", 7), ("vae", "VAE", 8)], [("IMAGE", "IMAGE", [9])], [], 6),
        ui_node(9, "SaveImage", [("images", "IMAGE", 9)], [], ["ComfyUI"], 7),
        {"id": 11, "type": "Note", "pos": [0, 0], "size": [200, 60], "flags": {}, "order": 8, "mode": 0,
         "properties": {}, "widgets_values": ["clip skip 2 for this model"]},
    ],
    "links": [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 5, 0, 3, 3, "LATENT"],
        [3, 10, 0, 6, 0, "CLIP"],
        [4, 6, 0, 3, 1, "CONDITIONING"],
        [5, 10, 0, 7, 0, "CLIP"],
        [6, 7, 0, 3, 2, "CONDITIONING"],
        [7, 3, 0, 8, 0, "LATENT"],
        [8, 4, 2, 8, 1, "VAE"],
        [9, 8, 0, 9, 0, "IMAGE"],
        [10, 4, 1, 10, 0, "CLIP"],
    ],
    "groups": [],
    "config": {},
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}  # fmt: skip


def read_api(graph: dict) -> ImageSettings | None:
    return comfyui.read({"prompt": json.dumps(graph)})


def read_workflow(graph: dict) -> ImageSettings | None:
    return comfyui.read({"workflow": json.dumps(graph)})


def edited(graph: dict, **nodes) -> dict:
    """`graph` with nodes replaced or added (None removes one), by id."""
    graph = copy.deepcopy(graph)
    for key, node in nodes.items():
        if node is None:
            del graph[key]
        else:
            graph[key] = node
    return graph


def node(kind: str, **inputs) -> dict:
    return {"class_type": kind, "inputs": inputs}


# 1. Real-shaped files fill the form


def test_the_api_graph_fills_the_form():
    found = read_api(API)
    assert (found.format, found.form, found.notes) == ("ComfyUI (API prompt graph)", FORM, [])
    assert found.clip_skip == ToolSkip("ComfyUI", -2) and found.family is None


def test_a_workflow_without_the_api_graph_fills_the_same_form():
    found = read_workflow(WORKFLOW)
    assert (found.format, found.form, found.notes) == ("ComfyUI (UI workflow graph)", FORM, [])
    assert found.clip_skip == ToolSkip("ComfyUI", -2)
    # the workflow is converted to the graph ComfyUI's server would run, node by node (and the editor's note)
    assert comfyui.workflow_graph(WORKFLOW) == {**comfyui.api_graph(API), "11": comfyui.Node("Note", {})}


def test_the_api_graph_is_read_when_both_are_there():
    graph = edited(API, **{"10": None, "6": node("CLIPTextEncode", text="from the api graph", clip=["4", 1]),
                           "7": node("CLIPTextEncode", text="lowres, bad hands", clip=["4", 1])})  # fmt: skip
    found = comfyui.read({"prompt": json.dumps(graph), "workflow": json.dumps(WORKFLOW)})
    assert found.format == "ComfyUI (API prompt graph)" and found.form["prompt"] == "from the api graph"
    assert found.clip_skip == ToolSkip("ComfyUI", None)  # no CLIPSetLastLayer: ComfyUI's default layer


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ({}, None),
        ({"prompt": "a photo of a cat"}, None),  # another tool's plain prompt text
        ({"prompt": "{}"}, None),
        ({"prompt": '{"class_type": "KSampler"}'}, None),  # names it, but is not a graph of nodes
        ({"prompt": '["class_type"]', "workflow": '{"nodes": 1}'}, None),
        ({"workflow": '{"nodes": [], "links": []}'}, None),
        ({"workflow": '{"nodes": [{"id": 1}]}'}, None),
    ],
)
def test_texts_that_are_not_comfyui_graphs_are_left_to_other_readers(texts, expected):
    assert comfyui.read(texts) is expected


def test_an_sdxl_encoder_reads_as_one_text_when_both_encoders_get_the_same():
    sdxl = node(
        "CLIPTextEncodeSDXL", width=1024, height=1024, crop_w=0, crop_h=0, target_width=1024, target_height=1024,
        text_g="a lighthouse at dusk", text_l="a lighthouse at dusk", clip=["10", 0],
    )  # fmt: skip
    found = read_api(edited(API, **{"6": sdxl, "5": node("EmptyLatentImage", width=1024, height=1024, batch_size=1)}))
    assert found.form["prompt"] == "a lighthouse at dusk" and found.family == "SDXL" and found.notes == []
    found = read_api(edited(API, **{"6": {**sdxl, "inputs": {**sdxl["inputs"], "text_l": "watercolor"}}}))
    assert found.form["prompt"] == "a lighthouse at dusk"
    assert found.notes == [
        "its prompt gives CLIP-G and CLIP-L different texts (CLIPTextEncodeSDXL 6); this app encodes one text with "
        "both, so CLIP-G's (text_g) was loaded"
    ]


def test_loras_are_noted_and_the_clip_layer_nearest_the_encoders_counts():
    found = read_api(edited(API, **{
        "3": {**API["3"], "inputs": {**API["3"]["inputs"], "model": ["11", 0]}},
        "10": node("CLIPSetLastLayer", stop_at_clip_layer=-2, clip=["11", 1]),
        "11": node("LoraLoader", lora_name="add_detail.safetensors", strength_model=0.8, strength_clip=0.8,
                   model=["4", 0], clip=["12", 0]),
        "12": node("CLIPSetLastLayer", stop_at_clip_layer=-5, clip=["4", 1]),  # overridden by node 10
    }))  # fmt: skip
    assert found.clip_skip == ToolSkip("ComfyUI", -2) and found.form == FORM
    assert found.notes == [
        "its LoRAs (add_detail.safetensors) are not applied from the workflow: set those this server offers in LoRAs "
        "(its LoraLoader nodes' strengths are not read)"
    ]


HIRES = edited(
    API,
    **{
        "11": node("LatentUpscaleBy", upscale_method="nearest-exact", scale_by=1.5, samples=["3", 0]),
        "12": node("KSampler", seed=1, steps=14, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=0.5,
                   model=["4", 0], positive=["6", 0], negative=["7", 0], latent_image=["11", 0]),
        "8": node("VAEDecode", samples=["12", 0], vae=["4", 2]),
    },
)  # fmt: skip


def test_a_hires_fix_chain_is_read_at_its_first_pass():
    found = read_api(HIRES)
    assert found.form == FORM and found.clip_skip == ToolSkip("ComfyUI", -2)
    assert found.notes == ["hires fix (a second KSampler pass at 1.5×) not applied"]
    # through pixels (decode, upscale model, encode) and with a refiner-style pass after it
    pixels = edited(HIRES, **{
        "11": node("VAEEncode", pixels=["14", 0], vae=["4", 2]),
        "13": node("VAEDecode", samples=["3", 0], vae=["4", 2]),
        "14": node("ImageUpscaleWithModel", upscale_model=["15", 0], image=["13", 0]),
        "15": node("UpscaleModelLoader", model_name="4x-UltraSharp.pth"),
        "16": node("KSamplerAdvanced", add_noise="disable", noise_seed=1, steps=20, cfg=7, sampler_name="euler",
                   scheduler="normal", start_at_step=15, end_at_step=20, return_with_leftover_noise="disable",
                   model=["4", 0], positive=["6", 0], negative=["7", 0], latent_image=["12", 0]),
    })  # fmt: skip
    assert read_api(pixels).notes == [
        "hires fix (a second KSampler pass with an upscale model) not applied",
        "a third KSamplerAdvanced pass on the first one's result (such as SDXL's refiner) not applied",
    ]


def test_an_image_to_image_graph_a_batch_and_partial_schedules_are_noted():
    found = read_api(edited(API, **{
        "5": node("VAEEncode", pixels=["11", 0], vae=["4", 2]),
        "11": node("LoadImage", image="photo.png", upload="image"),
        "3": {**API["3"], "inputs": {**API["3"]["inputs"], "denoise": 0.6}},
    }))  # fmt: skip
    assert "width" not in found.form and found.notes == [
        "KSampler 3's denoise 0.6 is not applied: this app denoises fully",
        "it starts from an image (LoadImage 11 through VAEEncode), not from noise; img2img is not offered here, so it "
        "is rendered from noise at the form's size",
    ]
    advanced = node("KSamplerAdvanced", add_noise="enable", noise_seed=8566257, steps=28, cfg=7.0,
                    sampler_name="dpmpp_2m", scheduler="karras", start_at_step=0, end_at_step=20,
                    return_with_leftover_noise="enable", model=["4", 0], positive=["6", 0], negative=["7", 0],
                    latent_image=["5", 0])  # fmt: skip
    found = read_api(
        edited(API, **{"3": advanced, "5": node("EmptyLatentImage", width=512, height=768, batch_size=4)})
    )
    assert found.form == FORM and found.notes == [
        "KSamplerAdvanced 3 runs steps 0 to 20 only; this app runs them all",
        "its batch of 4 images (EmptyLatentImage batch_size) is read as one image",
    ]


def test_values_from_primitive_nodes_are_followed_and_computed_ones_noted():
    # the editor's PrimitiveNode feeding the prompt widget turned into an input
    workflow = copy.deepcopy(WORKFLOW)
    workflow["nodes"][2]["inputs"].append({"name": "text", "type": "STRING", "link": 12, "widget": {"name": "text"}})
    workflow["nodes"].append(ui_node(12, "PrimitiveNode", [], [("STRING", "STRING", [12])], ["from a primitive"], 9))
    workflow["links"].append([12, 12, 0, 6, 1, "STRING"])
    assert read_workflow(workflow).form["prompt"] == "from a primitive"
    # API graphs: a one-value node is a literal; a node that computes its value is not evaluated
    found = read_api(edited(API, **{
        "6": node("CLIPTextEncode", text=["11", 0], clip=["10", 0]),
        "11": node("PrimitiveStringMultiline", value="from a string node"),
        "3": {**API["3"], "inputs": {**API["3"]["inputs"], "seed": ["12", 0]}},
        "12": node("Random Seed", min=0, max=99),
    }))  # fmt: skip
    assert found.form["prompt"] == "from a string node" and "seed" not in found.form
    assert found.notes == ["its seed comes from Random Seed 12, which this app does not evaluate; the form's is kept"]
    # a negative prompt from other nodes (zeroed conditioning) is noted; the form keeps its own
    found = read_api(edited(API, **{"7": node("ConditioningZeroOut", conditioning=["6", 0])}))
    assert "negative_prompt" not in found.form and found.notes == [
        "KSampler 3's negative input comes from ConditioningZeroOut 7, not a CLIP text encoder (CLIPTextEncode); this "
        "app reads a prompt encoded by one; the form's negative prompt is kept"
    ]


def test_values_out_of_the_apps_range_are_left_out_with_notes():
    found = read_api(edited(API, **{
        "3": {**API["3"], "inputs": {**API["3"]["inputs"], "seed": 156680208700286, "sampler_name": "lcm"}},
        "10": node("CLIPSetLastLayer", stop_at_clip_layer="-2", clip=["4", 1]),
    }))  # fmt: skip
    assert "seed" not in found.form and "scheduler" not in found.form
    assert found.clip_skip == ToolSkip("ComfyUI", -2)  # a plain decimal text is a number, as FormValues reads it
    assert found.notes == [
        "KSampler 3's seed 156680208700286 was left out: this app takes a whole number from 0 to 4294967295",
        "sampler 'lcm / karras' is not offered here; the sampler menu's is kept",
    ]
    found = read_api(edited(API, **{"10": node("CLIPSetLastLayer", stop_at_clip_layer=True, clip=["4", 1])}))
    assert found.clip_skip is None  # unreadable: the form keeps its own skips
    assert found.notes == ["CLIPSetLastLayer 10's stop_at_clip_layer True is not a layer"]


# 2. Graphs this app cannot map are refused in one line


def test_two_independent_samplers_are_refused():
    second = {**API["3"], "inputs": {**API["3"]["inputs"], "seed": 2}}
    with pytest.raises(ValueError) as error:
        read_api(edited(API, **{"12": second}))
    assert str(error.value) == (
        "this ComfyUI graph's samplers (KSampler 3, KSampler 12) are not one picture: this app reads a graph with one "
        "sampler, or one whose later samplers each work on the one before's result (a hires fix, a refiner)"
    )
    # two passes on one first pass's latent are two pictures, not a chain
    with pytest.raises(ValueError, match=r"samplers \(KSampler 3, KSampler 12, KSampler 13\) are not one picture"):
        read_api(edited(HIRES, **{"13": {**HIRES["12"], "inputs": {**HIRES["12"]["inputs"], "seed": 3}}}))
    # a muted second sampler does not run
    workflow = copy.deepcopy(WORKFLOW)
    workflow["nodes"].append({**workflow["nodes"][5], "id": 12, "mode": 2})
    assert read_workflow(workflow).form == FORM


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (
            {"3": None},
            "this ComfyUI graph has no KSampler or KSamplerAdvanced node (it samples with other nodes); "
            "this app can read a graph that samples with one of them",
        ),
        (
            {"6": node("ConditioningCombine", conditioning_1=["11", 0], conditioning_2=["7", 0])},
            "KSampler 3's positive input comes from ConditioningCombine 6, not a CLIP text encoder (CLIPTextEncode); "
            "this app reads a prompt encoded by one",
        ),
        (
            {"3": node("KSampler", seed=1, latent_image=["5", 0])},
            "KSampler 3's positive input is not linked; this ComfyUI graph has no prompt",
        ),
        ({"6": None}, "this ComfyUI graph links to a node 6 that it does not have"),
        (
            {"10": node("CLIPSetLastLayer", stop_at_clip_layer=-2, clip=["10", 0])},
            "this ComfyUI graph's links go round in a circle (through node 10)",
        ),
    ],
)
def test_graphs_that_cannot_be_mapped_are_refused_in_one_line(nodes, message):
    with pytest.raises(ValueError) as error:
        read_api(edited(API, **nodes))
    assert str(error.value) == message


# 3. Hostile files answer None, settings or a ValueError, in time linear in their size


def test_a_cycle_of_links_in_a_workflow_is_refused():
    workflow = copy.deepcopy(WORKFLOW)
    workflow["links"][9] = [10, 10, 0, 10, 0, "CLIP"]  # CLIPSetLastLayer 10's clip from its own output
    with pytest.raises(ValueError, match="circle"):
        read_workflow(workflow)
    cycle = edited(API, **{"5": node("LatentUpscaleBy", scale_by=2, samples=["12", 0]),
                           "12": node("LatentUpscaleBy", scale_by=2, samples=["5", 0])})  # fmt: skip
    with pytest.raises(ValueError, match="circle"):
        read_api(cycle)


def clip_chain(length: int) -> dict:
    """API with `length` CLIPSetLastLayer nodes between the checkpoint and the encoders."""
    chain = {
        str(100 + i): node("CLIPSetLastLayer", stop_at_clip_layer=-1, clip=[str(101 + i), 0]) for i in range(length)
    }
    chain[str(100 + length - 1)]["inputs"]["clip"] = ["4", 1]
    chain["100"]["inputs"]["stop_at_clip_layer"] = -3
    return edited(API, **chain, **{"10": node("CLIPSetLastLayer", stop_at_clip_layer=-2, clip=["100", 0])})


def test_long_chains_are_followed_in_one_pass_and_oversized_graphs_refused():
    assert read_api(clip_chain(9_000)).clip_skip == ToolSkip("ComfyUI", -2)
    with pytest.raises(ValueError, match="characters long; at most 2,097,152"):
        read_api(clip_chain(100_000))
    many = {str(i): node("Note") for i in range(comfyui.MAX_NODES + 1)}
    with pytest.raises(ValueError, match="has 10,001 nodes; at most 10,000 are read"):
        read_api(many)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"prompt": '{"class_type": ' + "[" * 100_000 + "]" * 100_000 + "}"}, "nested more than 64 deep"),
        ({"workflow": '{"nodes": ' + "[" * 65 + "]" * 65 + "}"}, "nested more than 64 deep"),
        ({"prompt": '{"class_type": "' + "x" * (2 * 2**20) + '"}'}, "at most 2,097,152"),
        ({"prompt": '{"class_type": [1, 2'}, "is not JSON"),
        ({"prompt": '{"class_type": ' + "9" * 5000 + "}"}, "number 5,000 characters long"),
        ({"workflow": '{"nodes": [' + "{}," * 300_000 + "{}]}"}, "brackets"),
    ],
)
def test_huge_deep_and_broken_texts_are_refused_before_parsing(texts, message):
    with pytest.raises(ValueError, match=message):
        comfyui.read(texts)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["3", "4", "5", "6", "10", 3, 4, -2, "KSampler", "CLIPTextEncode", "Reroute"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | st.sampled_from(
        ["class_type", "inputs", "clip", "positive", "text", "seed", "nodes", "links", "id", "type", "widgets_values",
         "link", "name", "mode", "latent_image", "model"]), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


def paths(graph, prefix=()):
    """Every (path, value) inside a JSON value, to replace one of them."""
    yield prefix, graph
    items = graph.items() if isinstance(graph, dict) else enumerate(graph) if isinstance(graph, list) else ()
    for key, value in items:
        yield from paths(value, (*prefix, key))


def replaced(graph, path, value):
    graph = copy.deepcopy(graph)
    if not path:
        return value
    target = graph
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return graph


def answer(texts: dict):
    try:
        return comfyui.read(texts)
    except ValueError as error:
        assert "\n" not in str(error)
        return error


API_PATHS, WORKFLOW_PATHS = list(paths(API)), list(paths(WORKFLOW))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), JSON)
def test_any_value_anywhere_gives_settings_none_or_a_one_line_error(data, value):
    api_path, _ = data.draw(st.sampled_from(API_PATHS))
    workflow_path, _ = data.draw(st.sampled_from(WORKFLOW_PATHS))
    for texts in ({"prompt": json.dumps(replaced(API, api_path, value))},
                  {"workflow": json.dumps(replaced(WORKFLOW, workflow_path, value))}):  # fmt: skip
        assert isinstance(answer(texts), ImageSettings | ValueError | None)


@settings(max_examples=300, deadline=None)
@given(JSON, JSON)
def test_any_json_gives_settings_none_or_a_one_line_error(prompt, workflow):
    texts = {"prompt": json.dumps({"3": {"class_type": "KSampler", "inputs": prompt}, "x": prompt})}
    assert isinstance(answer(texts), ImageSettings | ValueError | None)
    texts = {"workflow": json.dumps({"nodes": [{"id": 3, "type": "KSampler", "inputs": workflow}], "links": workflow})}
    assert isinstance(answer(texts), ImageSettings | ValueError | None)


# 4. The graphs written for a cell read back as the cell's settings


MODELS = {
    "SD 1.x": "models/anything-v3.safetensors",
    "SD 2.x": "stabilityai/stable-diffusion-2-1-base",
    "SDXL": "stabilityai/stable-diffusion-xl-base-1.0",
}


def metadata(family: str, sampler: str = "DPM++ 2M Karras") -> dict:
    return {
        "family": family,
        "model": MODELS[family],
        "negative_prompt": "lowres, bad hands",
        "width": 1024 if family == "SDXL" else 512,
        "height": 768,
        "steps": 28,
        "guidance_scale": 6.5,
        "sampler": sampler,
    }


@pytest.mark.parametrize(("family", "skip", "layer"), [(SD1, 1, -1), (SD1, 2, -2), (SD2, 1, -2), (SD2, 3, -4),
                                                       (SDXL, 2, -2), (SDXL, 1, -1)])  # fmt: skip
def test_the_cell_graphs_read_back_node_by_node(family, skip, layer):
    meta, row = metadata(family.name), {"prompt": "a (lighthouse:1.3) at dusk, ünïcode", "seed": 4294967295}
    prompt, workflow = comfyui.cell_graphs(meta, row, skip)
    api, ui = json.loads(prompt), json.loads(workflow)
    assert comfyui.workflow_graph(ui) == comfyui.api_graph(api)  # the same nodes, inputs and links
    assert api["10"]["inputs"]["stop_at_clip_layer"] == layer and prompt.isascii()
    for text, format_name in ((prompt, "ComfyUI (API prompt graph)"), (workflow, "ComfyUI (UI workflow graph)")):
        found = comfyui.read({"prompt": text} if "API" in format_name else {"workflow": text})
        assert (found.format, found.notes, found.clip_skip) == (format_name, [], ToolSkip("ComfyUI", layer))
        assert found.form == {
            "prompt": row["prompt"],
            "negative_prompt": meta["negative_prompt"],
            "seed": row["seed"],
            "steps": meta["steps"],
            "guidance_scale": meta["guidance_scale"],
            "scheduler": meta["sampler"],
            "model": model_stem(meta["model"]) + ".safetensors",
            "width": meta["width"],
            "height": meta["height"],
            "prompt_syntax": "comfyui",
        }
        assert skip_for("ComfyUI", family, found.clip_skip.value) == (skip, None)


def test_a_cells_loras_become_lora_loaders_between_the_checkpoint_and_its_readers():
    meta = metadata("SD 1.x") | {"prompt_syntax": "a1111"}
    row = {"prompt": "a cat <lora:detail:0.5>, <lyco:style:1:0.25> (fur)", "seed": 1}
    prompt, workflow = comfyui.cell_graphs(meta, row | {"loras": {"detail": 0.5, "style": [1.0, 0.25]}}, 2)
    api = json.loads(prompt)
    assert api["11"] == {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "detail.safetensors", "strength_model": 0.5, "strength_clip": 0.5,
                   "model": ["4", 0], "clip": ["4", 1]},
    }  # fmt: skip
    style = {"lora_name": "style.safetensors", "strength_model": 0.25, "strength_clip": 1.0}
    assert api["12"]["inputs"].items() >= style.items()
    assert (api["12"]["inputs"]["model"], api["3"]["inputs"]["model"], api["10"]["inputs"]["clip"]) == (
        ["11", 0],
        ["12", 0],
        ["12", 1],
    )
    assert api["6"]["inputs"]["text"] == "a cat ,  (fur)"  # the tags applied the LoRAs: not ComfyUI words
    assert comfyui.workflow_graph(json.loads(workflow)) == comfyui.api_graph(api)
    found = comfyui.read({"prompt": prompt})
    assert found.notes and "its LoRAs (style.safetensors, detail.safetensors)" in found.notes[0]  # walked back
    plain, _ = comfyui.cell_graphs(meta, row, 2)  # no LoRAs applied: the text as it was, no loaders
    assert "11" not in json.loads(plain) and json.loads(plain)["6"]["inputs"]["text"] == row["prompt"]


def test_the_workflow_is_shaped_as_comfyuis_editor_saves_it():
    workflow = json.loads(comfyui.cell_graphs(metadata("SD 1.x"), {"prompt": "a cat", "seed": 1}, 2)[1])
    assert {key: workflow[key] for key in ("groups", "config", "extra", "version")} == {
        "groups": [], "config": {}, "extra": {}, "version": 0.4}  # fmt: skip
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] == max(nodes) and workflow["last_link_id"] == len(workflow["links"])
    keys = {"id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties", "widgets_values"}
    assert all(
        set(node) == keys and node["properties"] == {"Node name for S&R": node["type"]} for node in nodes.values()
    )
    assert sorted(node["order"] for node in nodes.values()) == list(range(len(nodes)))
    for link_id, source, slot, target, target_slot, kind in workflow["links"]:  # each end lists the link
        assert link_id in nodes[source]["outputs"][slot]["links"] and nodes[source]["outputs"][slot]["type"] == kind
        assert nodes[target]["inputs"][target_slot] == {"name": nodes[target]["inputs"][target_slot]["name"],
                                                        "type": kind, "link": link_id}  # fmt: skip
        assert nodes[source]["order"] < nodes[target]["order"]
    assert nodes[3]["widgets_values"] == [1, "fixed", 28, 6.5, "dpmpp_2m", "karras", 1.0]
    assert nodes[10]["widgets_values"] == [-2] and nodes[5]["widgets_values"] == [512, 768, 1]


def test_a_models_own_scheduler_is_written_as_the_nearest_comfyui_sampler():
    assert comfyui.comfyui_sampler("Euler a") == ("euler_ancestral", "normal", True)
    assert comfyui.comfyui_sampler("PNDMScheduler") == ("ipndm", "normal", False)
    assert comfyui.comfyui_sampler("FlowMatchEulerDiscreteScheduler") == ("euler", "normal", False)
    prompt, _ = comfyui.cell_graphs(metadata("SD 1.x", "PNDMScheduler"), {"prompt": "a cat", "seed": 1}, 1)
    found = comfyui.read({"prompt": prompt})
    assert "scheduler" not in found.form
    assert found.notes == ["sampler 'ipndm / normal' is not offered here; the sampler menu's is kept"]
    assert all(comfyui.our_sampler(*pair) == ours for ours, pair in comfyui.SAMPLERS.items())


# 5. Through read_image and form_for: a PNG ComfyUI saved, on each family


def save_png(tmp_path, **texts):
    path = tmp_path / "ComfyUI_00001_.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=png_text(**texts))
    return path


@pytest.mark.parametrize(("family", "skips"), [(SD1, [2]), (SD2, [1]), (SDXL, [2])])
def test_a_comfyui_png_gives_each_familys_skip(tmp_path, family, skips):
    found = read_image(save_png(tmp_path, prompt=json.dumps(API), workflow=json.dumps(WORKFLOW)))
    form, notes = form_for(found, family)
    assert form == {**FORM, "skips": skips} and notes == []


def test_comfyui_minus_one_on_sd2_has_no_skip_here(tmp_path):
    graph = edited(API, **{"10": node("CLIPSetLastLayer", stop_at_clip_layer=-1, clip=["4", 1])})
    form, notes = form_for(read_image(save_png(tmp_path, workflow="{}", prompt=json.dumps(graph))), SD2)
    assert form["skips"] == [] and notes == [
        "ComfyUI −1 on SD 2.x is OpenCLIP-H's last layer, which diffusers' SD 2.x text encoder (23 layers) does not "
        "have; the nearest is skip 1 (ComfyUI −2)"
    ]
    form, notes = form_for(read_image(save_png(tmp_path, workflow=json.dumps(WORKFLOW))), SD2)
    assert form["skips"] == [1]


def test_a_damaged_comfyui_png_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="^this image's ComfyUI prompt graph cannot be read: it is not JSON"):
        read_image(save_png(tmp_path, prompt='{"3": {"class_type": "KSampler", '))
