"""ComfyUI image metadata: its API `prompt` graph and UI `workflow` graph read into this app's form, and both written
for every cell with ComfyUI's own nodes. Pure Python.

ComfyUI's SaveImage writes two JSON texts: `prompt`, the graph it ran ({node id: {"class_type", "inputs"}}, an input
a literal or a [source node id, output slot] link), and `workflow`, the editor's graph (nodes with `widgets_values` in
the order of the node's widgets, and a separate list of links). The reader takes the API graph when there is one, else
the workflow, and follows the one sampler's inputs back (names from ComfyUI's `nodes.py`):

    KSampler ── positive/negative ─ CLIPTextEncode ── clip ─ CLIPSetLastLayer ─ LoraLoader ─ CheckpointLoaderSimple
             ├─ latent_image ──── EmptyLatentImage (or a first KSampler through LatentUpscale: a hires fix)
             └─ model ─────────── LoraLoader ─ CheckpointLoaderSimple

Graphs come from strangers' files: each text's size, nesting and bracket count are bounded before it is parsed, the
node count after; links are followed in loops with a set of the nodes seen (a cycle is refused), each path once, so
reading takes time linear in the text; every value is type-checked before use and reaches the form only through
FormValues.
"""

import json
from dataclasses import dataclass
from typing import NamedTuple

from ..families import SD1, SD2, SD3, SDXL
from ..prompts.a1111 import LORA_KINDS, extra_networks
from .fields import MAX_CLIP_SKIP, FormValues, ImageSettings, cut, model_stem, number_in_range, shown
from .numbering import ToolSkip, setting
from .png import parse_json

PROMPT_KEY, WORKFLOW_KEY = "prompt", "workflow"
MAX_PROMPT_BYTES = 2 * 2**20  # a 500-node API graph with long prompts is about 200 KB
MAX_WORKFLOW_BYTES = 4 * 2**20  # the editor's graph is larger: positions, sizes, titles, groups
TEXTS = {PROMPT_KEY: MAX_PROMPT_BYTES, WORKFLOW_KEY: MAX_WORKFLOW_BYTES}
MAX_DEPTH = 64  # real graphs nest 4 (API) to about 10 (workflows with subgraphs) deep
MAX_BRACKETS = 2**18  # a workflow node has about 10 lists and objects: room for MAX_NODES of them
MAX_NODES = 10_000  # large real workflows have a few hundred
MAX_SAMPLERS = 16  # each one's latent path is walked once: a bound on the work, far above a real multi-pass graph
API_FORMAT, WORKFLOW_FORMAT = "ComfyUI (API prompt graph)", "ComfyUI (UI workflow graph)"

# this app's sampler -> ComfyUI's KSampler (sampler_name, scheduler): the same algorithm and noise schedule
SAMPLERS = {
    "Euler a": ("euler_ancestral", "normal"),
    "Euler": ("euler", "normal"),
    "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M Karras": ("dpmpp_2m", "karras"),
    "DDIM": ("ddim", "ddim_uniform"),
    "UniPC": ("uni_pc", "normal"),
}
# a model's own diffusers scheduler (what metadata names when the sampler menu was left on the model's) -> the ComfyUI
# pair with the same algorithm; its noise schedule may differ (timestep spacing, Karras sigmas from the model's config)
NEAREST_SAMPLERS = {
    "PNDMScheduler": ("ipndm", "normal"),  # ComfyUI has no PLMS; iPNDM is the same linear multistep family
    "LMSDiscreteScheduler": ("lms", "normal"),
    "EulerDiscreteScheduler": ("euler", "normal"),
    "EulerAncestralDiscreteScheduler": ("euler_ancestral", "normal"),
    "HeunDiscreteScheduler": ("heun", "normal"),
    "KDPM2DiscreteScheduler": ("dpm_2", "normal"),
    "KDPM2AncestralDiscreteScheduler": ("dpm_2_ancestral", "normal"),
    "DPMSolverMultistepScheduler": ("dpmpp_2m", "normal"),
    "DEISMultistepScheduler": ("deis", "normal"),
    "UniPCMultistepScheduler": ("uni_pc", "normal"),
    "DDIMScheduler": ("ddim", "ddim_uniform"),
    "DDPMScheduler": ("ddpm", "normal"),
    "LCMScheduler": ("lcm", "normal"),
}
FALLBACK_SAMPLER = ("euler", "normal")  # ComfyUI's default, for a scheduler class with no counterpart

# Each node type's widgets in the order its `widgets_values` lists them: its INPUT_TYPES order without the linked
# inputs, and the editor's "control_after_generate" right after a seed (ComfyUI's nodes.py, comfy_extras/).
WIDGETS = {
    "KSampler": ("seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        "control_after_generate",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),  # fmt: skip
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l"),
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "LatentUpscale": ("upscale_method", "width", "height", "crop"),
    "LatentUpscaleBy": ("upscale_method", "scale_by"),
    "ImageScale": ("upscale_method", "width", "height", "crop"),
    "ImageScaleBy": ("upscale_method", "scale_by"),
    "PrimitiveNode": ("value",),  # the editor's primitive: its value feeds a widget turned into an input
    "SaveImage": ("filename_prefix",),
}
EDITOR_ONLY_WIDGETS = {"control_after_generate"}  # the editor's, never sent to ComfyUI's server
MUTED_MODES = (2, 4)  # the editor's "never" and "bypass": the node does not run
SAMPLER_SEEDS = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}
ENCODERS = ("CLIPTextEncode", "CLIPTextEncodeSDXL")
CHECKPOINT_LOADERS = ("CheckpointLoaderSimple", "CheckpointLoader")
# the input each pass-through node is followed by, per path; a path ends at the first node not listed
CONDITIONING_PATH = {"Reroute": ""}  # the editor's Reroute has one input, named ""
CLIP_PATH = {"Reroute": "", "CLIPSetLastLayer": "clip", "LoraLoader": "clip"}
MODEL_PATH = {"Reroute": "", "LoraLoader": "model", "LoraLoaderModelOnly": "model"}
UPSCALES = ("LatentUpscale", "LatentUpscaleBy", "ImageScale", "ImageScaleBy", "ImageUpscaleWithModel")
LATENT_PATH = {"Reroute": "", "VAEEncode": "pixels", "VAEDecode": "samples", "LatentUpscale": "samples"}
LATENT_PATH |= {"LatentUpscaleBy": "samples", "ImageScale": "image", "ImageScaleBy": "image"}
LATENT_PATH |= {"ImageUpscaleWithModel": "image"}
VALUE_PATH = {"Reroute": ""}
ORDINALS = ("first", "second", "third", "fourth")


class Link(NamedTuple):
    """An input fed by another node's output."""

    source: str  # the node's id, as text
    slot: int


@dataclass
class Node:
    """One node of either graph, as ComfyUI's server sees it: its type and named inputs (literals or Links)."""

    kind: str
    inputs: dict
    active: bool = True  # False: muted or bypassed in the editor


def our_sampler(sampler_name, scheduler) -> str | None:
    """This app's sampler for ComfyUI's (sampler_name, scheduler) pair, or None where none is the same."""
    return next((ours for ours, pair in SAMPLERS.items() if pair == (sampler_name, scheduler)), None)


def comfyui_sampler(sampler: str) -> tuple[str, str, bool]:
    """ComfyUI's (sampler_name, scheduler) for what this app's metadata calls the sampler, and whether it is the same.

    One of SAMPLERS is exact. Any other name is a model's own diffusers scheduler class: the pair with the same
    algorithm (NEAREST_SAMPLERS; its noise schedule may differ), else euler/normal; both are not exact.
    """
    if sampler in SAMPLERS:
        return *SAMPLERS[sampler], True
    return *NEAREST_SAMPLERS.get(sampler, FALLBACK_SAMPLER), False


# 1. Reading


def read(texts: dict[str, str]) -> ImageSettings | None:
    """The settings of the one sampler in a ComfyUI image's graph: the API `prompt` graph when there is one, else the
    editor's `workflow`. None when neither text is a ComfyUI graph.

    Raises ValueError (one line) for a ComfyUI graph that is damaged, too large, or that this app cannot map: no
    sampler, two independent ones, no CLIP text encoder on the positive input, a cycle.
    """
    for key, to_graph, format_name in (
        (PROMPT_KEY, api_graph, API_FORMAT),
        (WORKFLOW_KEY, workflow_graph, WORKFLOW_FORMAT),
    ):
        parsed = graph_json(texts.get(key), key)
        if parsed is not None and (graph := to_graph(parsed)) is not None:
            return read_graph(graph, format_name)
    return None


def graph_json(text, key: str):
    """`text` parsed, when it may be a ComfyUI graph (JSON naming class_type or nodes); None when it is not one."""
    marker = '"class_type"' if key == PROMPT_KEY else '"nodes"'
    if not isinstance(text, str) or marker not in text or not text.lstrip().startswith("{"):
        return None
    if len(text) > TEXTS[key]:
        raise ValueError(f"this image's ComfyUI {key} text is {len(text):,} characters long; at most {TEXTS[key]:,}")
    try:
        return parse_json(
            text, f"a ComfyUI graph nests about {4 if key == PROMPT_KEY else 10} deep", MAX_DEPTH, MAX_BRACKETS
        )
    except ValueError as error:
        raise ValueError(f"this image's ComfyUI {key} graph cannot be read: {error}") from None


def node_id(value) -> str | None:
    """A node's or link's id as text: ComfyUI writes them as numbers or text."""
    if isinstance(value, str) or isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def too_many(count: int) -> None:
    if count > MAX_NODES:
        raise ValueError(f"this ComfyUI graph has {count:,} nodes; at most {MAX_NODES:,} are read")


def api_graph(parsed) -> dict[str, Node] | None:
    """The API `prompt` graph's nodes; None when `parsed` is not one. Entries that are not nodes are left out."""
    if not isinstance(parsed, dict) or not any(isinstance(n, dict) and "class_type" in n for n in parsed.values()):
        return None
    too_many(len(parsed))
    graph = {}
    for key, node in parsed.items():
        if isinstance(node, dict) and isinstance(node.get("class_type"), str):
            inputs = node.get("inputs")
            inputs = inputs if isinstance(inputs, dict) else {}
            graph[key] = Node(node["class_type"], {name: api_value(value) for name, value in inputs.items()})
    return graph


def api_value(value):
    """An API input: a [node id, output slot] pair is a Link (ComfyUI's server reads every list as one)."""
    if isinstance(value, list) and len(value) == 2 and node_id(value[0]) is not None:
        slot = value[1]
        if isinstance(slot, int) and not isinstance(slot, bool):
            return Link(node_id(value[0]), slot)
    return value


def workflow_graph(parsed) -> dict[str, Node] | None:
    """The editor's workflow as the API graph it stands for: widget values named (WIDGETS), links resolved; None
    when `parsed` is not a workflow. Node types without a WIDGETS entry keep only their linked inputs."""
    nodes = parsed.get("nodes") if isinstance(parsed, dict) else None
    if not isinstance(nodes, list) or not any(isinstance(n, dict) and isinstance(n.get("type"), str) for n in nodes):
        return None
    too_many(len(nodes))
    links = parsed.get("links")
    sources = {}  # link id -> Link to its origin
    for link in links if isinstance(links, list) else []:
        if isinstance(link, list) and len(link) >= 3:  # [id, origin node, origin slot, target node, slot, type]
            link_id, origin, slot = link[:3]
        elif isinstance(link, dict):  # the newer schema's objects
            link_id, origin, slot = link.get("id"), link.get("origin_id"), link.get("origin_slot")
        else:
            continue
        if node_id(link_id) is not None and node_id(origin) is not None and isinstance(slot, int):
            sources[node_id(link_id)] = Link(node_id(origin), slot)
    graph = {}
    for node in nodes:
        if not isinstance(node, dict) or node_id(node.get("id")) is None or not isinstance(node.get("type"), str):
            continue
        graph[node_id(node["id"])] = Node(
            node["type"], node_inputs(node, sources), node.get("mode") not in MUTED_MODES
        )
    return graph


def node_inputs(node: dict, sources: dict[str, Link]) -> dict:
    """A workflow node's inputs by name: its widget values, then its linked inputs (a link wins over a widget it
    replaces)."""
    values, names = node.get("widgets_values"), WIDGETS.get(node["type"], ())
    if isinstance(values, dict):  # some nodes save their widgets by name
        inputs = {name: values[name] for name in names if name in values}
    elif isinstance(values, list):
        inputs = dict(zip(names, values, strict=False))
    else:
        inputs = {}
    slots = node.get("inputs")
    for slot in slots if isinstance(slots, list) else []:
        if isinstance(slot, dict) and isinstance(slot.get("name"), str) and node_id(slot.get("link")) in sources:
            inputs[slot["name"]] = sources[node_id(slot["link"])]
    return {name: value for name, value in inputs.items() if name not in EDITOR_ONLY_WIDGETS}


def label(node_key: str, node: Node) -> str:
    """How messages name a node: its type and id, as the editor shows them ("KSampler 3")."""
    return f"{cut(node.kind)} {cut(node_key)}"


def follow(graph: dict[str, Node], start, path: dict[str, str]) -> tuple[list[tuple[str, Node]], tuple | None]:
    """From the input value `start`, the running nodes passed through (types in `path`, each followed by the input it
    names) and the (id, node) the path ends at; None there when `start` or a passed node's input is not a Link.

    Raises ValueError for a link to a node the graph lacks, or a cycle.
    """
    passed, seen, value = [], set(), start
    while isinstance(value, Link):
        key = value.source
        if key not in graph:
            raise ValueError(f"this ComfyUI graph links to a node {cut(key)} that it does not have")
        if key in seen:
            raise ValueError(f"this ComfyUI graph's links go round in a circle (through node {cut(key)})")
        seen.add(key)
        node = graph[key]
        if node.kind not in path:
            return passed, (key, node)
        if node.active:  # a bypassed node passes its input on unchanged
            passed.append((key, node))
        value = node.inputs.get(path[node.kind])
    return passed, None


def literal(graph: dict[str, Node], value, what: str, notes: list[str]):
    """`value` itself, or the literal a Link's source node holds as its only input (a primitive or string node);
    None with a note for a value computed by another node."""
    if not isinstance(value, Link):
        return value
    _, end = follow(graph, value, VALUE_PATH)
    if end is not None:
        key, node = end
        if len(node.inputs) == 1 and not isinstance(found := next(iter(node.inputs.values())), Link):
            return found
        notes.append(f"its {what} comes from {label(key, node)}, which this app does not evaluate; the form's is kept")
    return None


def read_graph(graph: dict[str, Node], format_name: str) -> ImageSettings:
    """The form values of `graph`'s one sampler (the first pass of a chain of them), with notes."""
    # 1. The sampler: the only one, or the first of a chain where each later pass works on the one before's latent
    (key, sampler), later = first_pass(graph)
    values, notes = FormValues(), []
    # 2. Its prompts, each from a CLIP text encoder, and the CLIP layer and LoRAs on the encoder's clip path
    positive = encoder(graph, key, sampler, "positive")
    if positive is None:
        raise ValueError(f"{label(key, sampler)}'s positive input is not linked; this ComfyUI graph has no prompt")
    prompt, clip_skip, loras, uses_sdxl = read_encoder(graph, *positive, "prompt", notes)
    values.text("prompt", "prompt", prompt)
    family = "SDXL" if uses_sdxl else None
    try:
        negative = encoder(graph, key, sampler, "negative")
    except ValueError as error:  # the prompt is what matters: the form keeps its own negative prompt
        notes.append(f"{error}; the form's negative prompt is kept")
        negative = None
    if negative is not None:
        negative_prompt, negative_skip, negative_loras, _ = read_encoder(graph, *negative, "negative prompt", notes)
        values.text("negative_prompt", "negative prompt", negative_prompt)
        if negative_skip != clip_skip:
            notes.append(
                f"its negative prompt was encoded at another CLIP layer ({skip_words(negative_skip)}) than its prompt "
                f"({skip_words(clip_skip)}); this app encodes both at the prompt's"
            )
        loras += negative_loras
    # 3. Its numbers, sampler and model
    seed_name = SAMPLER_SEEDS[sampler.kind]
    for name, field, input_name in (
        ("seed", "seed", seed_name),
        ("steps", "steps", "steps"),
        ("cfg", "guidance_scale", "cfg"),
    ):
        value = literal(graph, sampler.inputs.get(input_name), input_name, notes)
        if value is None and input_name not in sampler.inputs:
            notes.append(f"{label(key, sampler)} has no {name}; the form's is kept")
        values.number(field, f"{label(key, sampler)}'s {input_name}", value)
    sampler_name = literal(graph, sampler.inputs.get("sampler_name"), "sampler_name", notes)
    scheduler = literal(graph, sampler.inputs.get("scheduler"), "scheduler", notes)
    if isinstance(sampler_name, str) and isinstance(scheduler, str):
        values.sampler(our_sampler(sampler_name, scheduler), f"{sampler_name} / {scheduler}")
    else:
        notes.append(
            f"{label(key, sampler)}'s sampler_name {shown(sampler_name)} and scheduler {shown(scheduler)} are not "
            "names; the sampler menu's is kept"
        )
    notes += partial_denoise(graph, key, sampler, notes)
    loras += read_model(graph, sampler, values, notes)
    # 4. Its latent: an empty one gives the size; what came before (img2img) and after (hires fix) is noted
    notes += read_latent(graph, key, sampler, values)
    notes += [later_pass_note(graph, number, *passed) for number, passed in enumerate(later, 2)]
    if loras := list(dict.fromkeys(loras)):  # a LoraLoader on both paths is one LoRA
        names = ", ".join(lora_words(graph, lora_key) for lora_key in loras[:8])
        notes.append(
            f"its LoRAs ({names}) are not applied from the workflow: set those this server offers in LoRAs (its "
            "LoraLoader nodes' strengths are not read)"
        )
    values.notes += dict.fromkeys(notes)  # both prompts' paths may pass the same node: one note
    values.form["prompt_syntax"] = "comfyui"  # the prompt is read as ComfyUI's CLIPTextEncode reads it
    unread = clip_skip is False  # a CLIPSetLastLayer this app cannot read: the form keeps its skips
    return values.result(format_name, None if unread else ToolSkip("ComfyUI", clip_skip), family)


def first_pass(graph: dict[str, Node]) -> tuple[tuple[str, Node], list]:
    """The running sampler whose settings the form takes, and for each later pass in order, (its id, node, the nodes
    between it and the pass before). Raises ValueError where the samplers are not one chain."""
    samplers = [(key, node) for key, node in graph.items() if node.kind in SAMPLER_SEEDS and node.active]
    names = ", ".join(label(key, node) for key, node in samplers[:4]) + (", …" if len(samplers) > 4 else "")
    if not samplers:
        raise ValueError(
            "this ComfyUI graph has no KSampler or KSamplerAdvanced node (it samples with other nodes); this app can "
            "read a graph that samples with one of them"
        )
    refused = (
        f"this ComfyUI graph's samplers ({names}) are not one picture: this app reads a graph with one sampler, or "
        "one whose later samplers each work on the one before's result (a hires fix, a refiner)"
    )
    if len(samplers) > MAX_SAMPLERS:
        raise ValueError(refused)
    before = {}  # sampler id -> (the sampler its latent comes from, or None; the nodes between)
    for key, node in samplers:
        passed, end = follow(graph, node.inputs.get("latent_image"), LATENT_PATH)
        from_sampler = end is not None and end[1].kind in SAMPLER_SEEDS and end[1].active
        before[key] = (end[0] if from_sampler else None, passed)
    firsts = [key for key, (source, _) in before.items() if source is None]
    after = {}  # sampler id -> the pass that works on its latent
    for key, (source, _) in before.items():
        if source is not None:
            if source in after:  # two passes on one latent: two pictures, not one chain
                raise ValueError(refused)
            after[source] = key
    if len(firsts) != 1:
        raise ValueError(refused)
    chain = [firsts[0]]
    while chain[-1] in after and len(chain) <= len(samplers):
        chain.append(after[chain[-1]])
    if len(chain) != len(samplers):
        raise ValueError(refused)
    return (chain[0], graph[chain[0]]), [(key, graph[key], before[key][1]) for key in chain[1:]]


def encoder(graph: dict[str, Node], key: str, sampler: Node, name: str) -> tuple[str, Node] | None:
    """The CLIP text encoder feeding the sampler's `name` conditioning; None when the input is not linked.

    Raises ValueError when the conditioning comes from another node (the prompt cannot be read then).
    """
    _, end = follow(graph, sampler.inputs.get(name), CONDITIONING_PATH)
    if end is not None and end[1].kind not in ENCODERS:
        raise ValueError(
            f"{label(key, sampler)}'s {name} input comes from {label(*end)}, not a CLIP text encoder "
            "(CLIPTextEncode); this app reads a prompt encoded by one"
        )
    return end


def read_encoder(graph: dict[str, Node], key: str, node: Node, what: str, notes: list[str]):
    """(the text, the CLIP layer: stop_at_clip_layer, None without the node, False when unreadable; the LoRA loaders'
    ids on the clip path; whether it is SDXL's encoder) of one CLIP text encoder."""
    if node.kind == "CLIPTextEncodeSDXL":
        text = literal(graph, node.inputs.get("text_g"), f"{what} (text_g)", notes)
        text_l = literal(graph, node.inputs.get("text_l"), f"{what} (text_l)", notes)
        if text != text_l:
            notes.append(
                f"its {what} gives CLIP-G and CLIP-L different texts ({label(key, node)}); this app encodes one text "
                "with both, so CLIP-G's (text_g) was loaded"
            )
    else:
        text = literal(graph, node.inputs.get("text"), what, notes)
    passed, end = follow(graph, node.inputs.get("clip"), CLIP_PATH)
    layers = [(k, n) for k, n in passed if n.kind == "CLIPSetLastLayer"]
    clip_skip = None
    if layers:  # the one nearest the encoder is the one in effect
        layer_key, layer = layers[0]
        value = literal(graph, layer.inputs.get("stop_at_clip_layer"), "stop_at_clip_layer", notes)
        clip_skip = number_in_range(value, int, -MAX_CLIP_SKIP, MAX_CLIP_SKIP)
        if clip_skip is None:  # False: read, but unusable (a value from another node is noted by `literal`)
            if value is not None or "stop_at_clip_layer" not in layer.inputs:
                notes.append(f"{label(layer_key, layer)}'s stop_at_clip_layer {shown(value)} is not a layer")
            clip_skip = False
    if end is not None and end[1].kind not in CHECKPOINT_LOADERS:
        notes.append(f"its text encoder comes from {label(*end)}, not a checkpoint; the chosen model's own is used")
    loras = [k for k, n in passed if n.kind == "LoraLoader"]
    return text, clip_skip, loras, node.kind == "CLIPTextEncodeSDXL"


def skip_words(clip_skip) -> str:
    return "ComfyUI's default" if clip_skip is None else "an unreadable one" if clip_skip is False else str(clip_skip)


def read_model(graph: dict[str, Node], sampler: Node, values: FormValues, notes: list[str]) -> list[str]:
    """The checkpoint's name into the form; returns the LoRA loaders' ids on the model path."""
    passed, end = follow(graph, sampler.inputs.get("model"), MODEL_PATH)
    if end is not None and end[1].kind in CHECKPOINT_LOADERS:
        values.model(literal(graph, end[1].inputs.get("ckpt_name"), "ckpt_name", notes))
    elif end is not None:
        notes.append(f"its model comes through {label(*end)}, which this app does not apply; the model menu's is kept")
    return [key for key, node in passed if node.kind in ("LoraLoader", "LoraLoaderModelOnly")]


def lora_words(graph: dict[str, Node], key: str) -> str:
    name = graph[key].inputs.get("lora_name")
    return cut(name) if isinstance(name, str) else label(key, graph[key])


def partial_denoise(graph: dict[str, Node], key: str, sampler: Node, notes: list[str]) -> list[str]:
    """Notes on a sampler that does not run its whole schedule from pure noise."""
    name = label(key, sampler)

    def value(input_name: str, default):
        return literal(graph, sampler.inputs.get(input_name, default), input_name, notes)

    if sampler.kind == "KSampler":
        denoise = value("denoise", 1)
        return (
            []
            if denoise in (1, None)
            else [f"{name}'s denoise {shown(denoise)} is not applied: this app denoises fully"]
        )
    partial = []
    start, end = value("start_at_step", 0), value("end_at_step", 10000)
    steps = number_in_range(value("steps", None), int, 1, 10000)
    if start not in (0, None) or steps is not None and number_in_range(end, int, 0, steps - 1) is not None:
        partial.append(f"{name} runs steps {shown(start)} to {shown(end)} only; this app runs them all")
    if (add_noise := value("add_noise", "enable")) not in ("enable", None):
        partial.append(f"{name} adds no noise (add_noise {shown(add_noise)}); this app always does")
    return partial


def read_latent(graph: dict[str, Node], key: str, sampler: Node, values: FormValues) -> list[str]:
    """The size of the first pass's empty latent into the form; notes on a latent from elsewhere and on batches."""
    passed, end = follow(graph, sampler.inputs.get("latent_image"), LATENT_PATH)
    if end is None:
        return [f"{label(key, sampler)}'s latent_image is not linked; the form's size is kept"]
    end_key, node = end
    if node.kind != "EmptyLatentImage":
        if any(n.kind == "VAEEncode" for _, n in passed):
            return [
                f"it starts from an image ({label(*end)} through VAEEncode), not from noise; img2img is not offered "
                "here, so it is rendered from noise at the form's size"
            ]
        return [f"its latent comes from {label(*end)}; the form's size is kept"]
    notes = []
    width = literal(graph, node.inputs.get("width"), "width", notes)
    height = literal(graph, node.inputs.get("height"), "height", notes)
    values.size(f"{label(end_key, node)}'s width and height", width, height)
    batch = literal(graph, node.inputs.get("batch_size", 1), "batch_size", notes)
    if batch not in (1, None):
        notes.append(f"its batch of {shown(batch)} images (EmptyLatentImage batch_size) is read as one image")
    return notes


def later_pass_note(graph: dict[str, Node], number: int, key: str, node: Node, passed: list) -> str:
    """What a later sampler pass did that is not applied: a hires fix when its latent was upscaled on the way."""
    nth = ORDINALS[number - 1] if number <= len(ORDINALS) else "later"  # never "8th" or "11th" by a rule
    upscale = next((n for _, n in passed if n.kind in UPSCALES), None)
    if upscale is None:
        return f"a {nth} {cut(node.kind)} pass on the first one's result (such as SDXL's refiner) not applied"
    scale = number_in_range(upscale.inputs.get("scale_by"), float, 0, 64)
    sides = [number_in_range(upscale.inputs.get(side), int, 1, 2**16) for side in ("width", "height")]
    how = f" at {scale:g}×" if scale is not None else f" to {sides[0]}x{sides[1]}" if None not in sides else ""
    if upscale.kind == "ImageUpscaleWithModel":
        how = " with an upscale model"
    return f"hires fix (a {nth} {cut(node.kind)} pass{how}) not applied"


# 2. Writing

FAMILIES = {family.name: family for family in (SD1, SD2, SDXL, SD3)}  # SD 3: the file must hold its encoders
# node type -> its outputs (name, type), as ComfyUI's RETURN_TYPES
OUTPUTS = {
    "CheckpointLoaderSimple": (("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")),
    "LoraLoader": (("MODEL", "MODEL"), ("CLIP", "CLIP")),
    "CLIPSetLastLayer": (("CLIP", "CLIP"),),
    "CLIPTextEncode": (("CONDITIONING", "CONDITIONING"),),
    "EmptyLatentImage": (("LATENT", "LATENT"),),
    "KSampler": (("LATENT", "LATENT"),),
    "VAEDecode": (("IMAGE", "IMAGE"),),
    "SaveImage": (),
}
# node id -> where the editor draws it (x, y) and its size, as ComfyUI's default graph lays them out
LAYOUT = {
    "4": ((26, 474), (315, 98)),
    "10": ((26, 300), (315, 58)),
    "6": ((415, 186), (422, 164)),
    "7": ((413, 389), (425, 180)),
    "5": ((473, 609), (315, 106)),
    "3": ((863, 186), (315, 262)),
    "8": ((1209, 188), (210, 46)),
    "9": ((1451, 189), (210, 270)),
}


def cell_graphs(metadata: dict, row: dict, skip: int) -> tuple[str, str]:
    """The API `prompt` JSON and the editor's `workflow` JSON that rebuild one cell in ComfyUI with its own nodes.

    `metadata` is a comparison's (its family names the CLIP layer's number: `numbering.setting`), `row` one of its
    rows. The sampler is `comfyui_sampler(metadata["sampler"])`: exact for this app's menu, the nearest pair for a
    model's own scheduler (call it to know which was written).
    """
    m = metadata
    family = FAMILIES[m["family"]]
    sampler_name, scheduler, _ = comfyui_sampler(m["sampler"])
    # the row's LoRAs: a LoraLoader each (ids 11 on) between the checkpoint and everything that reads it; the
    # AUTOMATIC1111 syntax's <lora:…> tags, which applied them, are not ComfyUI words
    loaders, source, text = {}, "4", row["prompt"]
    for number, (name, weight) in enumerate((row.get("loras") or {}).items(), 11):
        te, unet = weight if isinstance(weight, list) else (weight, weight)
        strengths = {"lora_name": f"{name}.safetensors", "strength_model": unet, "strength_clip": te}
        loaders[str(number)] = ("LoraLoader", strengths | {"model": [source, 0], "clip": [source, 1]})
        source = str(number)
    if loaders and m.get("prompt_syntax", "").startswith("a1111"):
        text = without_lora_tags(text)
    api = {
        "4": ("CheckpointLoaderSimple", {"ckpt_name": model_stem(m["model"]) + ".safetensors"}),
        **loaders,
        "10": ("CLIPSetLastLayer", {"stop_at_clip_layer": int(setting("ComfyUI", family, skip)), "clip": [source, 1]}),
        "6": ("CLIPTextEncode", {"text": text, "clip": ["10", 0]}),
        "7": ("CLIPTextEncode", {"text": m["negative_prompt"], "clip": ["10", 0]}),
        "5": ("EmptyLatentImage", {"width": m["width"], "height": m["height"], "batch_size": 1}),
        "3": (
            "KSampler",
            {
                "seed": row["seed"],
                "steps": m["steps"],
                "cfg": m["guidance_scale"],
                "sampler_name": sampler_name,
                "scheduler": scheduler,
                "denoise": 1.0,
                "model": [source, 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        ),
        "8": ("VAEDecode", {"samples": ["3", 0], "vae": ["4", 2]}),
        "9": ("SaveImage", {"filename_prefix": f"clipskip-skip-{skip}", "images": ["8", 0]}),
    }
    prompt = {key: {"class_type": kind, "inputs": inputs} for key, (kind, inputs) in api.items()}
    # ASCII, as ComfyUI writes them: PIL then stores tEXt chunks, which every version of ComfyUI's editor reads
    return json.dumps(prompt), json.dumps(workflow(prompt))


def without_lora_tags(text: str) -> str:
    """The text without its `<lora:…>` tags (AUTOMATIC1111's extra-network syntax), the rest as it was."""
    kept, position = [], 0
    for start, end, kind in extra_networks(text):
        if kind in LORA_KINDS:
            kept.append(text[position:start])
            position = end
    return "".join(kept) + text[position:]


def workflow(prompt: dict) -> dict:
    """The editor's graph for an API graph of nodes in OUTPUTS, listed in running order, laid out by LAYOUT."""
    links, outputs = [], {key: [[] for _ in OUTPUTS[node["class_type"]]] for key, node in prompt.items()}
    nodes = []
    for order, (key, node) in enumerate(prompt.items()):
        kind, inputs = node["class_type"], []
        for name, value in node["inputs"].items():
            if isinstance(value, list):  # a link: [source node, output slot]
                source, slot = value
                link_id = len(links) + 1
                link_type = OUTPUTS[prompt[source]["class_type"]][slot][1]
                links.append([link_id, int(source), slot, int(key), len(inputs), link_type])
                outputs[source][slot].append(link_id)
                inputs.append({"name": name, "type": link_type, "link": link_id})
        widgets = [
            "fixed" if name == "control_after_generate" else node["inputs"][name] for name in WIDGETS.get(kind, ())
        ]
        position, size = LAYOUT.get(key) or ((26, 600 + 130 * (int(key) - 11)), (315, 126))  # LoraLoaders below
        nodes.append(
            {
                "id": int(key),
                "type": kind,
                "pos": list(position),
                "size": list(size),
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": inputs,
                "outputs": [],  # filled below, once every link is known
                "properties": {"Node name for S&R": kind},
                "widgets_values": widgets,
            }
        )
    for node in nodes:
        node["outputs"] = [
            {"name": name, "type": kind, "links": outputs[str(node["id"])][slot] or None, "slot_index": slot}
            for slot, (name, kind) in enumerate(OUTPUTS[node["type"]])
        ]
    return {
        "last_node_id": max(node["id"] for node in nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }
