"""LoRAs: .safetensors files loaded into a pipeline's UNet and text encoders as PEFT adapters, switched per request.

Files in diffusers' layout (`unet.…`, `text_encoder.…`, `text_encoder_2.…`) and in Kohya's (AUTOMATIC1111's:
`lora_unet_…`, `lora_te_…`, `lora_te1_…`/`lora_te2_…` on SDXL) are read and converted by diffusers'
`lora_state_dict`; the UNet's adapter is injected by diffusers (`load_lora_into_unet`), the text encoders' by PEFT
itself (`inject_adapter_in_model`, as diffusers does it: transformers' own loader asks for a newer PEFT).
Pickled files (.ckpt, .pt, .bin) are refused: loading one can run arbitrary code.

A pipeline holds its adapters off between requests. `held(pipe)` takes the pipeline's lock for a whole request,
`use(pipe, weights)` sets the adapters for the cells about to be encoded or denoised, and leaving `held` switches
them off again, also when the render fails or is stopped. A pipeline without LoRAs has no lock and no PEFT layers.
"""

import contextlib
import hashlib
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from .embeddings import MAX_NAME_CHARS, NAME, RESERVED_NAMES, pickle_refusal
from .families import detect_family
from .loading import PICKLE_SUFFIXES
from .request import short_repr
from .settings import PATH_SHOWN_CHARS

MAX_FILE_BYTES = 2 << 30  # real LoRAs are a few to a few hundred megabytes; SDXL's largest about 1.7 GB
MAX_WEIGHT = 4.0  # |weight| at most this (AUTOMATIC1111 takes any; past 2 images are noise already)
MAX_TAGS = 16  # <lora:…> tags in one prompt
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
LORA_KINDS = ("lora", "lyco")  # AUTOMATIC1111 reads <lyco:…> as <lora:…>

Weights = tuple[tuple[str, float, float], ...]  # (name, text-encoder weight, UNet weight), sorted by name, none 0


class LoraError(ValueError):
    """A LoRA file was refused; the one-line message names it and says why."""


@dataclass(frozen=True)
class Lora:
    name: str  # the file's stem: a prompt calls it by <lora:name:weight>
    path: str
    sha256: str  # AUTOMATIC1111's "addnet" hash: of the file after its safetensors header (network.py)
    short_hash: str  # `Lora hashes: name: hash` in AUTOMATIC1111's infotext: the first 12 hex digits
    components: tuple[str, ...]  # the pipeline's modules it changes, of COMPONENTS


def shown_name(path: Path) -> str:
    return short_repr(path.name, PATH_SHOWN_CHARS)


def check_file(path: Path) -> str:
    """The name prompts call the file by, after its suffix, name and size are checked; LoraError otherwise."""
    shown = shown_name(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise LoraError(pickle_refusal(shown, suffix, "LoRA"))
    if suffix != ".safetensors":
        raise LoraError(f"could not load LoRA {shown}: expected a .safetensors LoRA file")
    name = path.stem
    if not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise LoraError(
            f"refusing {shown}: prompts call a LoRA by its file name in <lora:name:weight>, and {short_repr(name)} "
            f"is not such a name; rename the file to 1 to {MAX_NAME_CHARS} letters, digits, _, - or . (starting "
            "with a letter or digit), such as my_style-v2.safetensors"
        )
    if not path.is_file():
        raise LoraError(f"could not load LoRA {shown}: no such file")
    if (size := path.stat().st_size) > MAX_FILE_BYTES:
        raise LoraError(
            f"refusing {shown}: {size / (1 << 30):.1f} GiB is more than the {MAX_FILE_BYTES >> 30} GiB any LoRA "
            "needs: is it a model?"
        )
    return name


def addnet_hash(path: Path) -> str:
    """The sha256 of a .safetensors file's tensor data, after its 8-byte length and JSON header: AUTOMATIC1111's
    `hashes.addnet_hash_safetensors`, which `Lora hashes` quotes the first 12 hex digits of."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        header = int.from_bytes(file.read(8), "little")
        file.seek(8 + header)
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state(pipe, path: Path, shown: str) -> tuple[dict, dict | None, dict | None]:
    """diffusers' reading of the file: its keys converted to diffusers' layout, with Kohya's alphas or the
    `lora_adapter_metadata` header diffusers writes (each module's `LoraConfig`)."""
    try:
        state, alphas, metadata = type(pipe).lora_state_dict(str(path), return_lora_metadata=True)
    except Exception as error:  # safetensors' and diffusers' errors on a damaged or foreign file, in one line
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LoraError(
            f"could not read LoRA {shown}: it is damaged or not a LoRA ({short_repr(cause, 160)})"
        ) from error
    if not any("lora" in key for key in state):  # lora_A, lora.down, to_q_lora.up: diffusers' layouts
        raise LoraError(
            f"refusing {shown}: it holds no LoRA weights (no lora_A/lora_B, lora_down/lora_up keys): is it a "
            "model, an embedding or another kind of network?"
        )
    import torch

    broken = [key for key, value in state.items() if torch.is_tensor(value) and not torch.isfinite(value).all()]
    if broken:  # the denoiser would turn them into black cells, silently
        raise LoraError(
            f"refusing {shown}: {len(broken)} of its tensors hold NaN or infinite values (the first: "
            f"{short_repr(broken[0], 80)}); the file is damaged"
        )
    return state, alphas, metadata


def inject_text_encoder(encoder, state: dict, alphas: dict | None, metadata: dict | None, prefix: str, name: str):
    """PEFT's LoRA layers in `encoder` for the file's `prefix.` keys, as diffusers' `_load_lora_into_text_encoder`
    makes them; False when the file has none for it. Returns a bool."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from diffusers.utils.peft_utils import get_peft_kwargs
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    part = {key.removeprefix(f"{prefix}."): v for key, v in state.items() if key.startswith(f"{prefix}.")}
    if not part:
        return False
    part = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
    if not hasattr(encoder, "text_model"):  # transformers 5 flattened CLIPTextModel; files still say text_model.
        part = {key.removeprefix("text_model."): v for key, v in part.items()}
    config = {key.removeprefix(f"{prefix}."): v for key, v in (metadata or {}).items() if key.startswith(f"{prefix}.")}
    if not config:  # no header: the ranks from the weights, the scales from Kohya's alphas (else 1)
        ranks = {key: v.shape[1] for key, v in part.items() if ".lora_B." in key}
        if alphas:
            alphas = {key.removeprefix(f"{prefix}."): v for key, v in alphas.items() if key.startswith(f"{prefix}.")}
        config = get_peft_kwargs(ranks, alphas, part, is_unet=False)
    inject_adapter_in_model(LoraConfig(**config), encoder, name)
    result = set_peft_model_state_dict(encoder, part, name)
    if unexpected := [key for key in getattr(result, "unexpected_keys", None) or [] if ".lora" in key]:
        raise LoraError(f"its {prefix} weights name layers this model lacks ({short_repr(unexpected[:3])})")
    encoder.to(device=encoder.device, dtype=encoder.dtype)
    return True


def one_unet_layout(state: dict) -> dict:
    """`state` with its UNet keys in PEFT's layout (lora_A/lora_B) where the file mixes layouts, as diffusers' own
    `convert_state_dict_to_diffusers` writes a PEFT LoRA with attention and other layers (lora.down for the first,
    lora_A for the rest): diffusers picks one layout by the first key and drops the other's layers."""
    from diffusers.utils import convert_unet_state_dict_to_peft

    unet = {key: value for key, value in state.items() if key.startswith("unet.")}
    peft = sum(".lora_A." in key or ".lora_B." in key for key in unet)
    if peft in (0, len(unet)):
        return state
    converted = convert_unet_state_dict_to_peft({key.removeprefix("unet."): value for key, value in unet.items()})
    return {key: value for key, value in state.items() if key not in unet} | {
        f"unet.{k}": v for k, v in converted.items()
    }


def check_unet_fit(unet, state: dict, name: str, shown: str) -> None:
    """LoraError naming the file's UNet layers that found no layer of this UNet, as diffusers reads the file: it
    loads the rest and only logs the keys it dropped, so the LoRA would act in part, unlike in the tool it was made
    for. Layers are named by their down (A) matrix, in PEFT's layout."""
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.tuners.tuners_utils import BaseTunerLayer

    unet_part = {key.removeprefix("unet."): value for key, value in state.items() if key.startswith("unet.")}
    layers = [key.removesuffix(".lora_A.weight") for key in convert_unet_state_dict_to_peft(unet_part)]
    layers = [layer for layer in layers if not layer.endswith((".lora_B.weight", ".alpha"))]
    taken = {n for n, m in unet.named_modules() if isinstance(m, BaseTunerLayer) and name in getattr(m, "lora_A", {})}
    if missing := [layer for layer in layers if layer not in taken]:
        raise LoraError(
            f"refusing {shown}: {len(missing)} of its {len(layers)} UNet layers match no layer of this model's UNet "
            f"as diffusers reads the file ({short_repr(missing[:2], 160)}); they would be left out, so the LoRA would "
            "act only in part. Give a LoRA made for this model's family, in Kohya's or diffusers' layout"
        )


def load_lora(pipe, path: str | Path) -> Lora:
    """One file checked, hashed and loaded into `pipe` as the adapter `name` (its stem), switched off; LoraError
    naming the file when it is refused or does not fit the pipeline."""
    path = Path(path)
    shown = shown_name(path)
    # 1. Refuse by name and size, before opening, and models whose denoiser is not a UNet
    name = check_file(path)
    family = detect_family(pipe)
    if family.denoiser != "unet":
        raise LoraError(f"refusing {shown}: LoRAs are applied to SD 1.x, 2.x and SDXL models here, not {family.name}")
    # 2. Read and convert the keys, then inject each part into its module
    state, alphas, metadata = read_state(pipe, path, shown)
    components = []
    try:
        with warnings.catch_warnings():  # loads run one at a time (loading.PipelineCache)
            warnings.filterwarnings("ignore", "Already found a `peft_config`")  # a second LoRA: what is meant
            if any(key.startswith("unet.") for key in state):
                state = one_unet_layout(state)
                type(pipe).load_lora_into_unet(
                    state, alphas, pipe.unet, adapter_name=name, _pipeline=pipe, metadata=metadata
                )
                components.append("unet")
            for component in COMPONENTS[1:]:
                encoder = getattr(pipe, component, None)
                if encoder is not None and inject_text_encoder(encoder, state, alphas, metadata, component, name):
                    components.append(component)
    except LoraError as error:  # ours, already one line saying what is wrong: only the file is added
        raise LoraError(f"could not load LoRA {shown} into this model: {error}") from error
    except Exception as error:
        if "size mismatch" in str(error):
            raise LoraError(
                f"could not load LoRA {shown} into this model: its layers have other shapes than the model's (a "
                f"LoRA for another family, such as SDXL against SD 1.x?); give a LoRA made for {family.name}"
            ) from error
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LoraError(f"could not load LoRA {shown} into this model: {short_repr(cause, 200)}") from error
    if not components:
        raise LoraError(f"refusing {shown}: none of its weights are for this model's UNet or text encoders")
    if "unet" in components:
        check_unet_fit(pipe.unet, state, name, shown)
    # 3. Hash the file as AUTOMATIC1111 does
    digest = addnet_hash(path)
    return Lora(name, str(path), digest, digest[:12], tuple(components))


def load_loras(paths, pipe) -> dict[str, Lora]:
    """Each file loaded into `pipe` by name, then every adapter switched off; two files with one name are refused (the
    same file twice is loaded once)."""
    loaded: dict[str, Lora] = {}
    for path in paths:
        name = check_file(Path(path))
        if name in loaded:
            if Path(loaded[name].path).resolve() == Path(path).resolve():
                continue
            raise LoraError(
                f"refusing two LoRAs a prompt calls {name!r}: {short_repr(loaded[name].path, PATH_SHOWN_CHARS)} and "
                f"{short_repr(str(path), PATH_SHOWN_CHARS)}; rename one of the files"
            )
        try:
            loaded[name] = load_lora(pipe, path)
        except Exception:
            remove_all(pipe)  # this file's layers, and the earlier files': a refused load leaves the model as it was
            raise
    if loaded:
        pipe.clipskip_loras = loaded
        pipe.clipskip_lora_lock = threading.Lock()
        switch_off(pipe)
    return loaded


def check_weight(value, what: str) -> float:
    """A LoRA weight: a finite number within ±MAX_WEIGHT; ValueError naming `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number from {-MAX_WEIGHT:g} to {MAX_WEIGHT:g}, not {short_repr(value)}")
    if abs(value) > MAX_WEIGHT:
        raise ValueError(f"{what} must be from {-MAX_WEIGHT:g} to {MAX_WEIGHT:g} (0 is off), not {value:g}")
    return float(value)


def check_defaults(loras, known) -> dict[str, float]:
    """`compare`'s `loras`: {name: weight} for LoRAs the pipeline has; ValueError naming the parameter otherwise."""
    if loras is None:
        return {}
    if not isinstance(loras, dict):
        raise ValueError(f"loras must be a mapping of LoRA names to weights, not {type(loras).__name__}")
    if len(loras) > MAX_TAGS * 4:
        raise ValueError(f"loras holds {len(loras)} entries; at most {MAX_TAGS * 4}")
    checked = {}
    for name, weight in loras.items():
        if not isinstance(name, str) or name not in known:
            raise ValueError(f"loras names {short_repr(name)}, which this model has not loaded; {available(known)}")
        checked[name] = check_weight(weight, f"the weight of LoRA {name!r}")
    return checked


def available(known) -> str:
    return f"its LoRAs are {', '.join(sorted(known))}" if known else "it has no LoRAs (load them with --lora FILE)"


def parse_tag(args: str) -> tuple[str, float, float]:
    """(name, text-encoder weight, UNet weight) of a tag's `name[:te[:unet]]`, as AUTOMATIC1111's
    `extra_networks_lora.py` reads it: te defaults to 1, unet to te. ValueError for other numbers."""
    parts = args.split(":")
    tag = short_repr(f"<lora:{args}>")  # quoted and cut: a prompt's text
    if len(parts) > 3:
        raise ValueError(f"{tag} has {len(parts)} parts; write <lora:name:weight>")
    numbers = []
    for text in parts[1:]:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{tag}: {short_repr(text)} is not a weight") from None
        numbers.append(check_weight(number, f"the weight in {tag}"))
    te = numbers[0] if numbers else 1.0
    return parts[0].strip(), te, numbers[1] if len(numbers) > 1 else te


def row_weights(tags: list[str], defaults: dict[str, float], known) -> tuple[Weights, list[str]]:
    """One prompt's LoRAs: `defaults` ({name: weight}), each overridden by the prompt's `<lora:…>` tags (their
    `name[:te[:unet]]` texts); then notes for tags naming LoRAs `known` lacks, which are left out."""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"a prompt holds {len(tags)} <lora:…> tags; at most {MAX_TAGS}")
    weights = {name: (w, w) for name, w in defaults.items()}
    tagged, notes = set(), []
    for args in tags:
        name, te, unet = parse_tag(args)
        if name not in known:
            tag = short_repr(f"<lora:{args}>")
            notes.append(f"{tag} is not applied: this server has no LoRA {short_repr(name)}; {available(known)}")
            continue
        if name in tagged:
            raise ValueError(f"a prompt tags LoRA {name!r} twice; give it one <lora:{name}:weight>")
        tagged.add(name)
        weights[name] = (te, unet)
    return tuple(sorted((n, te, unet) for n, (te, unet) in weights.items() if te or unet)), notes


def tag_text(weights: Weights) -> str:
    """The `<lora:name:w>` tags (`<lora:name:te:unet>` where they differ) AUTOMATIC1111 applies `weights` by."""
    return " ".join(f"<lora:{n}:{te:g}>" if te == unet else f"<lora:{n}:{te:g}:{unet:g}>" for n, te, unet in weights)


@contextlib.contextmanager
def held(pipe):
    """The pipeline's LoRA lock for one request; its adapters are off again when the request leaves, whatever
    happened. Nothing at all for a pipeline without LoRAs."""
    lock = getattr(pipe, "clipskip_lora_lock", None)
    if lock is None:
        yield
        return
    with lock:
        try:
            yield
        finally:
            switch_off(pipe)


def use(pipe, weights: Weights) -> None:
    """Set the adapters of every component to `weights` (off where a LoRA has no weight): inside `held` only."""
    from diffusers.utils.peft_utils import set_adapter_layers, set_weights_and_activate_adapters

    if getattr(pipe, "clipskip_lora_lock", None) is None:
        if weights:
            raise ValueError("this model has no LoRAs loaded")
        return
    loras = pipe.clipskip_loras
    for component in COMPONENTS:
        module = getattr(pipe, component, None)
        chosen = [(n, te, unet) for n, te, unet in weights if component in loras[n].components]
        if module is None or not any(component in lora.components for lora in loras.values()):
            continue
        set_adapter_layers(module, enabled=bool(chosen))
        if chosen:
            names = [n for n, _, _ in chosen]
            values = [unet if component == "unet" else te for _, te, unet in chosen]
            set_weights_and_activate_adapters(module, names, values)


def remove_all(pipe) -> None:
    """Every LoRA layer taken out of the pipeline's UNet and text encoders (diffusers' `recurse_remove_peft_layers`),
    their PEFT configs with them."""
    from diffusers.utils.peft_utils import recurse_remove_peft_layers

    for component in COMPONENTS:
        module = getattr(pipe, component, None)
        if module is not None:
            recurse_remove_peft_layers(module)
            module.__dict__.pop("peft_config", None)  # the instance's; the classes keep their defaults
            if "_hf_peft_config_loaded" in module.__dict__:
                module._hf_peft_config_loaded = False


def switch_off(pipe) -> None:
    use(pipe, ())
