"""Textual-inversion embeddings: .safetensors files read within bounds, then checked against a pipeline's encoders.

Layouts, as AUTOMATIC1111 (`modules/textual_inversion/textual_inversion.py`) and diffusers (`load_textual_inversion`)
read them: SD 1.x/2.x files hold one tensor (AUTOMATIC1111 and Civitai name it `emb_params`, diffusers names it after
its token); SDXL files hold `clip_l` for the first text encoder and `clip_g` for the second. Pickled files (.pt, .bin)
are refused: loading one can run arbitrary code.
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .families import detect_family
from .loading import PICKLE_SUFFIXES
from .request import short_repr
from .settings import PATH_SHOWN_CHARS

MAX_FILE_BYTES = 64 << 20  # real embeddings are kilobytes to a few megabytes
MAX_VECTORS = 75  # one prompt chunk: AUTOMATIC1111 never splits an embedding across chunks
MAX_NAME_CHARS = 64
NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME_CHARS - 1}}}")
RESERVED_NAMES = ("BREAK",)  # AUTOMATIC1111's chunk break: a prompt could never call an embedding by it
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
SDXL_KEYS = {"text_encoder": "clip_l", "text_encoder_2": "clip_g"}  # the pipeline's encoder -> the file's key
FAMILY_OF_WIDTH = {768: "SD 1.x", 1024: "SD 2.x"}  # one-tensor files: the width says the family they were made for


class EmbeddingError(ValueError):
    """An embedding file was refused; the one-line message names it and says why."""


@dataclass(frozen=True, eq=False)  # compared by identity: tensors have no single truth value; sha256 tells files apart
class TextualInversion:
    name: str  # the file's stem: a prompt calls it by `name` (AUTOMATIC1111) or `embedding:name` (ComfyUI)
    vectors: dict[str, torch.Tensor]  # the pipeline's encoder attribute -> (count, width) float32 tensor on the CPU
    count: int  # vectors per encoder, the same for both on SDXL
    sha256: str  # of the whole file
    short_hash: str  # AUTOMATIC1111's `TI hashes: name: hash`: the sha256's first 12 hex digits
    path: str

    @property
    def sdxl(self) -> bool:
        return "text_encoder_2" in self.vectors


def load_embedding(path: str | Path) -> TextualInversion:
    """One file, read and checked without a model: its name, suffix, size, layout, vector count, dtype and values."""
    path = Path(path)
    shown = shown_name(path)
    # 1. Refuse by name and size, before opening
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise EmbeddingError(pickle_refusal(shown, suffix, "embedding"))
    if suffix != ".safetensors":
        raise EmbeddingError(f"could not load embedding {shown}: expected a .safetensors textual-inversion file")
    name = embedding_name(path)
    if not path.is_file():
        raise EmbeddingError(f"could not load embedding {shown}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise EmbeddingError(
            f"refusing {shown}: {size / (1 << 20):.1f} MiB is more than the {MAX_FILE_BYTES >> 20} MiB any "
            "textual-inversion embedding needs (they are kilobytes to a few megabytes): is it a model or a LoRA?"
        )
    # 2. Read only the tensors the layout names, checking each before its data is read
    vectors = read_vectors(path, shown)
    counts = {tensor.shape[0] for tensor in vectors.values()}
    if len(counts) > 1:
        raise EmbeddingError(
            f"refusing {shown}: clip_l holds {vectors['text_encoder'].shape[0]} vectors and clip_g "
            f"{vectors['text_encoder_2'].shape[0]}; an SDXL embedding has as many of each"
        )
    # 3. Hash the file as AUTOMATIC1111 does
    digest = file_sha256(path)
    return TextualInversion(name, vectors, counts.pop(), digest, digest[:12], str(path))


def pickle_refusal(shown: str, suffix: str, kind: str) -> str:
    """Why a `suffix` file (a Python pickle) holding a `kind` ("embedding", "LoRA") is refused."""
    return (
        f"refusing {shown}: {suffix} files are Python pickles, and loading one can run arbitrary code "
        f"(--allow-pickle does not apply to {kind}s). Use a .safetensors version of the {kind}, or convert it to "
        ".safetensors where you trust its source"
    )


def embedding_name(path: Path) -> str:
    """The file's stem, if a prompt can call it by that word."""
    name = path.stem
    if not NAME.fullmatch(name) or name in RESERVED_NAMES:
        why = "AUTOMATIC1111's chunk break" if name in RESERVED_NAMES else "not one word a prompt can hold"
        raise EmbeddingError(
            f"refusing {shown_name(path)}: prompts call an embedding by its file name, and {short_repr(name)} is "
            f"{why}; rename the file to 1 to {MAX_NAME_CHARS} letters, digits, _, - or . (starting with a letter or "
            "digit), such as my_style-v2.safetensors"
        )
    return name


def read_vectors(path: Path, shown: str) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            keys = list(file.keys())
            if "clip_l" in keys or "clip_g" in keys:
                if missing := [key for key in SDXL_KEYS.values() if key not in keys]:
                    raise EmbeddingError(
                        f"refusing {shown}: it has {'clip_g' if missing == ['clip_l'] else 'clip_l'} but no "
                        f"{missing[0]}; an SDXL embedding holds both (clip_l for the first text encoder, clip_g for "
                        "the second)"
                    )
                wanted = SDXL_KEYS  # other keys are left unread
            elif len(keys) == 1:
                wanted = {"text_encoder": keys[0]}
            else:
                raise EmbeddingError(
                    f"refusing {shown}: it holds {len(keys)} tensors {short_repr(sorted(keys))}; a textual-inversion "
                    "embedding holds one (emb_params, for SD 1.x/2.x) or clip_l and clip_g (for SDXL)"
                )
            return {encoder: read_tensor(file, key, shown) for encoder, key in wanted.items()}
    except EmbeddingError:
        raise
    except Exception as error:  # safetensors' and torch's errors on a damaged file, turned into one line
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise EmbeddingError(
            f"could not read embedding {shown}: it is damaged or not a safetensors file ({short_repr(cause, 160)})"
        ) from error


def read_tensor(file, key: str, shown: str) -> torch.Tensor:
    """One (count, width) float32 tensor; its dtype and shape are checked from the header before its data is read."""
    view = file.get_slice(key)
    dtype, shape = view.get_dtype(), view.get_shape()
    what = f"{shown}: its {short_repr(key)} tensor"
    if dtype not in FLOAT_DTYPES:
        raise EmbeddingError(
            f"refusing {what} holds {dtype} numbers; expected floating point ({', '.join(FLOAT_DTYPES)})"
        )
    if len(shape) not in (1, 2) or shape[-1] == 0:
        raise EmbeddingError(f"refusing {what} has shape {short_repr(shape)}; expected (vectors, width) or (width,)")
    count = shape[0] if len(shape) == 2 else 1  # a single vector may be stored flat, as diffusers saves one
    if not 1 <= count <= MAX_VECTORS:
        raise EmbeddingError(
            f"refusing {what} holds {count} vectors; an embedding has 1 to {MAX_VECTORS}, what one prompt chunk takes"
        )
    tensor = file.get_tensor(key).to(torch.float32).reshape(count, shape[-1])
    if not torch.isfinite(tensor).all():  # after the cast: float64 values past float32's range become infinite
        raise EmbeddingError(f"refusing {what} holds non-finite values (NaN or infinity)")
    return tensor


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_for(ti: TextualInversion, pipe) -> None:
    """Refuse an embedding the pipeline's text encoders cannot take: another family's layout, or another width."""
    family = detect_family(pipe)
    widths = {encoder: getattr(pipe, encoder).config.hidden_size for encoder, _tokenizer in family.encoders}
    shown = shown_name(Path(ti.path))
    if family.t5 is not None:  # its prompts are read as "plain", which names no textual inversion
        raise EmbeddingError(f"refusing {shown}: textual inversions are not offered for {family.name} models")
    if ti.sdxl and not family.pooled:
        raise EmbeddingError(
            f"refusing {shown}: it is an SDXL embedding (clip_l and clip_g), and this {family.name} model takes one "
            f"tensor of {widths['text_encoder']}-wide vectors"
        )
    if family.pooled and not ti.sdxl:
        width = ti.vectors["text_encoder"].shape[1]
        raise EmbeddingError(
            f"refusing {shown}: it is an SD 1.x/2.x embedding (one tensor of {width}-wide vectors), and this SDXL "
            f"model needs clip_l ({widths['text_encoder']} wide) and clip_g ({widths['text_encoder_2']} wide)"
        )
    for encoder, expected in widths.items():
        found = ti.vectors[encoder].shape[1]
        if found == expected:
            continue
        if ti.sdxl:
            raise EmbeddingError(
                f"refusing {shown}: its {SDXL_KEYS[encoder]} vectors are {found} wide, and this {family.name} "
                f"model's {encoder} takes {expected}"
            )
        hint = f" ({found} is {FAMILY_OF_WIDTH[found]}'s width)" if found in FAMILY_OF_WIDTH else ""
        raise EmbeddingError(
            f"refusing {shown}: its vectors are {found} wide, and this {family.name} model's text encoder takes "
            f"{expected}{hint}"
        )


def load_embeddings(paths, pipe) -> dict[str, TextualInversion]:
    """Each file loaded and checked for `pipe`, by name; two files with one name are refused (the same file twice
    is loaded once)."""
    loaded: dict[str, TextualInversion] = {}
    for path in paths:
        ti = load_embedding(path)
        # CLIP's tokenizers lower-case prompts, so names differing only in case would be the same prompt word
        same = next((other for other in loaded.values() if other.name.lower() == ti.name.lower()), None)
        if same is not None:
            if Path(same.path).resolve() == Path(ti.path).resolve():
                continue
            raise EmbeddingError(
                f"refusing two embeddings a prompt calls {ti.name.lower()!r}: {shown_path(same.path)} and "
                f"{shown_path(ti.path)}; rename one of the files"
            )
        check_for(ti, pipe)
        loaded[ti.name] = ti
    return loaded


def shown_name(path: Path) -> str:
    return short_repr(path.name, PATH_SHOWN_CHARS)  # quoted and escaped: a file name can hold anything


def shown_path(path: str) -> str:
    return short_repr(path, PATH_SHOWN_CHARS)
