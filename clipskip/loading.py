"""Loading pipelines: the embedded model, Hub ids, diffusers folders and single .safetensors files, once each.

Loaded pipelines are kept in a small least-recently-used cache shared by every caller, so each model loads once and
stays while the bound allows.
"""

import gc
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from . import embedded
from .families import denoiser, detect_family
from .provenance import remember_weights
from .settings import LoadOptions, hash_cache_file, model_name

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
SUPPORTED = ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusion3Pipeline")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
SDXL_KEY = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"  # the OpenCLIP-G encoder
T5_KEY = "t5xxl.transformer.shared.weight"  # SD 3 files that include T5 (diffusers' is_t5_in_single_file)
MAX_LOADED = 2  # pipelines kept at once; the least recently used goes first
# Pipelines where CLIP skip means nothing (or that clipskip cannot skip yet), by class-name prefix, and why
# (facts: ../shared/prompt-syntax.md; diffusers' pipeline files for the encoders)
NO_CLIP_SKIP = {
    "Flux": "Flux conditions on T5 and on CLIP-L's pooled vector, taken from its last layer; CLIP skip does not "
    "change it (Forge leaves it out of Flux infotext, InvokeAI and SwarmUI disable it)",
    "PixArt": "PixArt conditions on T5 alone: it has no CLIP text encoder whose layers could be skipped",
    "Sana": "Sana conditions on a Gemma language model: it has no CLIP text encoder whose layers could be skipped",
    "Kolors": "Kolors conditions on ChatGLM3: it has no CLIP text encoder whose layers could be skipped",
}
# a single file's architecture, from a key only it has (the prefix differs between exporters: matched as a suffix)
SINGLE_FILE_KINDS = {
    "double_blocks.0.img_attn.qkv.weight": "FluxPipeline",
    "joint_blocks.0.x_block.attn.qkv.weight": "StableDiffusion3Pipeline",
}


class ModelLoadError(ValueError):
    """A model could not be loaded; the message names it and says why."""


def pick_device(device: str | None = None) -> torch.device:
    """`None` or "auto": CUDA, else Apple MPS, else CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`None`: float16 on CUDA, float32 elsewhere (CPU and MPS half precision is slow or lossy)."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


class PipelineCache:
    """Loaded pipelines by (model, device, dtype, options), evicting the least recently used past `max_loaded`."""

    def __init__(self, max_loaded: int = MAX_LOADED):
        self.max_loaded = max_loaded
        self._pipelines: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, load):
        with self._lock:  # one load at a time: two models loading at once could need twice the memory
            if key in self._pipelines:
                self._pipelines.move_to_end(key)
                return self._pipelines[key]
            if len(self._pipelines) >= self.max_loaded:
                while len(self._pipelines) >= self.max_loaded:
                    self._pipelines.popitem(last=False)
                free_memory()  # once for all of them: a full collection can take a second in a large process
            pipe = self._pipelines[key] = load()
            return pipe

    def keys(self) -> list[tuple]:
        return list(self._pipelines)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def free_device_bytes(device: torch.device) -> int | None:
    """Bytes a new allocation can take on a CUDA device: free on the card, plus what PyTorch's allocator holds
    unused; None elsewhere (CPU and MPS do not say)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


pipelines = PipelineCache()


def load_pipeline(
    model: str = "embedded",
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    options: LoadOptions | None = None,
):
    """A diffusers pipeline for `model`, loaded on first use and the same object while it stays cached."""
    options = options or LoadOptions()
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    if options.offload and device.type != "cuda":
        raise ValueError("--offload moves components between CPU and a CUDA GPU; it needs --device cuda")
    key = (model, str(device), dtype, options)
    return pipelines.get(key, lambda: named(prepare(build(model, dtype, options), device, dtype, options), model))


def named(pipe, model: str):
    pipe.clipskip_model_name = model_name(model)  # single files have no name_or_path
    return pipe


def prepare(pipe, device: torch.device, dtype: torch.dtype, options: LoadOptions):
    """Place the pipeline, make large images affordable and convolutions fast; none of this changes images at the
    native size (channels-last on CUDA moves the last bit of a few pixels at most)."""
    detect_family(pipe)  # refuse pipelines without a CLIP text encoder before they take memory on the device
    if options.offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    network = denoiser(pipe)  # the UNet, or SD 3's transformer
    if network.dtype != dtype:
        pipe.to(dtype=dtype)
    pipe.vae.enable_slicing()  # decode one cell at a time: same pixels, a fraction of the memory
    pipe.vae.enable_tiling()  # only for images larger than the VAE's native size
    if device.type == "cuda":  # 1.18× faster renders and less memory on an H100, same images (benchmarks/RESULTS.md)
        if network is getattr(pipe, "unet", None):  # measured for UNets' convolutions; a transformer has few
            pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if options.compile:
        network.compile()  # in place, so the pipeline still sees its denoiser; compiled on its first call
    # the textual inversions prompts may name: read once with the model, checked against its encoders
    from .embeddings import load_embeddings  # here: it reads this module's pickle suffixes

    pipe.clipskip_embeddings = load_embeddings(options.embeddings, pipe) if options.embeddings else {}
    # LoRAs as PEFT adapters, switched off; none at all (no PEFT layers, no lock) when none is given
    from .loras import load_loras

    pipe.clipskip_loras = load_loras(options.loras, pipe) if options.loras else {}
    return pipe


def build(model: str, dtype: torch.dtype, options: LoadOptions):
    if model == embedded.NAME:
        pipe = embedded.build_embedded_pipeline()
        remember_weights(pipe, hash_cache_file())  # its committed files: hashed once, then kept
        return pipe
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"could not load model {model!r}: a diffusers folder has a model_index.json and this one has none "
                "(for an AUTOMATIC1111-style checkpoint, give the .safetensors file itself)"
            )
        if not options.allow_pickle and (pickled := pickled_only(path)):
            raise ModelLoadError(
                f"refusing {path.name}: its {', '.join(pickled)} weights are only .bin files, Python pickles, and "
                "loading one can run arbitrary code. Use a diffusers folder with .safetensors weights (diffusers' "
                "save_pretrained writes them), or pass --allow-pickle if you trust its source"
            )
        return from_folder_or_hub(str(path), model, dtype, options)
    if path.is_file():
        return from_single_file(path, model, dtype, options)
    if path.suffix in (".safetensors", *PICKLE_SUFFIXES) or model.startswith(("/", ".", "~")):
        raise ModelLoadError(f"could not load model {model!r}: no such file or folder")
    return from_folder_or_hub(model, model, dtype, options)


def pickled_only(folder: Path) -> list[str]:
    """The components of a diffusers folder whose weights exist only as pickled .bin files."""
    return sorted(
        part.name
        for part in folder.iterdir()
        if part.is_dir() and any(part.glob("*.bin")) and not any(part.glob("*.safetensors"))
    )


def pipeline_class(config_source: str, model: str):
    """The diffusers class that `model_index.json` names, refusing anything but SD 1.x/2.x, SDXL and SD 3
    text-to-image."""
    import diffusers

    try:
        class_name = diffusers.DiffusionPipeline.load_config(config_source)["_class_name"]
    except Exception as error:
        raise ModelLoadError(f"could not load model {model!r}: {explain(error)}") from error
    if class_name not in SUPPORTED:
        raise ModelLoadError(unsupported(model, class_name))
    return getattr(diffusers, class_name)


def unsupported(model: str, class_name: str) -> str:
    """Why `model`, a `class_name` pipeline, cannot be compared: the reason for its kind where one is known."""
    said = f"could not load model {model!r}: it is a {class_name}; "
    if reason := next((why for prefix, why in NO_CLIP_SKIP.items() if class_name.startswith(prefix)), None):
        return said + reason
    return said + "clipskip compares CLIP skip on Stable Diffusion 1.x, 2.x, SDXL and 3 text-to-image checkpoints"


def from_folder_or_hub(source: str, model: str, dtype: torch.dtype, options: LoadOptions):
    cls = pipeline_class(source, model)
    extra = {} if options.safety_checker or cls.__name__ != SUPPORTED[0] else {"safety_checker": None}
    try:
        safetensors_only = None if options.allow_pickle else True  # diffusers' .bin weights are pickles too
        pipe = cls.from_pretrained(source, dtype=dtype, use_safetensors=safetensors_only, **extra)
    except Exception as error:
        raise ModelLoadError(f"could not load model {model!r}: {explain(error)}") from error
    if not options.safety_checker and getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    remember_weights(pipe, hash_cache_file())  # of the files each component was read from
    return pipe


def from_single_file(path: Path, model: str, dtype: torch.dtype, options: LoadOptions):
    """An AUTOMATIC1111/Civitai-style checkpoint; its architecture's configs come from `options.config` or the Hub."""
    import diffusers

    if path.suffix in PICKLE_SUFFIXES and not options.allow_pickle:
        raise ModelLoadError(
            f"refusing {path.name}: {path.suffix} files are Python pickles, and loading one can run arbitrary code. "
            "Use a .safetensors version of the model, convert it (diffusers' scripts/convert_original_stable_"
            "diffusion_to_diffusers.py, or any checkpoint converter), or pass --allow-pickle if you trust its source"
        )
    if path.suffix != ".safetensors" and path.suffix not in PICKLE_SUFFIXES:
        raise ModelLoadError(f"could not load model {model!r}: expected a .safetensors file or a diffusers folder")
    keys = None
    if options.config is not None:
        cls = pipeline_class(options.config, options.config)
    else:
        keys = readable_keys(path, model)
        kind = next((kind for key, kind in SINGLE_FILE_KINDS.items() if any(k.endswith(key) for k in keys)), None)
        if kind is not None and kind not in SUPPORTED:
            raise ModelLoadError(unsupported(model, kind))
        if kind is None:
            kind = SUPPORTED[1] if SDXL_KEY in keys else SUPPORTED[0]
        cls = getattr(diffusers, kind)
    extra = {"config": options.config} if options.config else {}
    if not options.safety_checker and cls.__name__ == SUPPORTED[0]:
        extra["safety_checker"] = None
    if cls.__name__ == SUPPORTED[2] and not any(k.endswith(T5_KEY) for k in keys or readable_keys(path, model)):
        extra |= {"text_encoder_3": None, "tokenizer_3": None}  # SD 3 files often leave T5 out: run without it
    try:
        pipe = cls.from_single_file(str(path), dtype=dtype, **extra)
    except Exception as error:
        hint = "" if options.config else " (pass --config with a diffusers folder or Hub id of the same architecture)"
        raise ModelLoadError(f"could not load model {model!r}: {explain(error)}{hint}") from error
    remember_weights(pipe, hash_cache_file(), path)  # its hash is the file's, as AUTOMATIC1111 and Civitai compute it
    return pipe


def readable_keys(path: Path, model: str) -> set[str]:
    """The checkpoint's tensor names; ModelLoadError naming `model` when it cannot be read."""
    try:
        return checkpoint_keys(path)
    except Exception as error:  # safetensors' own error for a damaged or foreign file is not a ValueError
        raise ModelLoadError(
            f"could not load model {model!r}: it is not a readable checkpoint ({type(error).__name__}: "
            f"{str(error)[:200]})"
        ) from error


def checkpoint_keys(path: Path) -> set[str]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as checkpoint:
            return set(checkpoint.keys())
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    return set(load_single_file_checkpoint(str(path)))


def explain(error: Exception) -> str:
    """The cause of a loading failure in words that say what to do."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    for cause in chain:
        if isinstance(cause, GatedRepoError):
            return "it is gated: accept its licence on huggingface.co and log in (set HF_TOKEN)"
        if isinstance(cause, RepositoryNotFoundError):
            return "no such model on the Hugging Face Hub (check the spelling), or it is private (set HF_TOKEN)"
        if isinstance(cause, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
            return "not in the local Hugging Face cache, and the Hub is unreachable (offline, or HF_HUB_OFFLINE=1)"
        if isinstance(cause, EntryNotFoundError):
            return "the repository has no diffusers model_index.json: is it a diffusers-format model?"
        if isinstance(cause, HFValidationError):
            return "not a Hub id (owner/name), a diffusers folder or a .safetensors file"
        if isinstance(cause, (ConnectionError, TimeoutError)):
            return f"the Hugging Face Hub could not be reached ({cause})"
    return f"{type(error).__name__}: {error}"
