"""The one place that reads command-line flags and environment variables; everything else takes parameters."""

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .embedded import NAME as EMBEDDED
from .request import (
    DEFAULT_GUIDANCE,
    DEFAULT_SKIPS,
    DEFAULT_STEPS,
    DEFAULT_SYNTAX,
    MAX_ROWS,
    RANDOM_SEED,
    SYNTAXES,
    seed_list,
    short_repr,
)
from .samplers import DEFAULT_SAMPLER, SAMPLERS
from .skips import A1111_SDXL, parse_skip
from .sweep.plan import MAX_MODELS, MAX_PROMPTS, MAX_SEEDS
from .sweep.scores import SCORES

DEFAULT_PORT = 7860
LOCAL_ONLY = "127.0.0.1"
DEFAULT_MAX_LOADED = 2
DEFAULT_MAX_QUEUE = 20
DEFAULT_CACHE_MB = 256
MAX_SKIPS_CHARS = 200  # "1,2,…,32", every layer of the largest text encoder, is 83
PATH_SHOWN_CHARS = 120  # a path in a message is cut to this many characters
MODEL_HELP = (
    "'embedded' (the built-in model), a Hugging Face id such as stable-diffusion-v1-5/stable-diffusion-v1-5, "
    "a diffusers folder, or a single .safetensors checkpoint"
)


HASH_CACHE_VARIABLE = "CLIPSKIP_HASH_CACHE"


def hash_cache_file(environ=os.environ) -> Path:
    """The JSON file that keeps weight files' SHA-256 (`provenance.HashCache`): $CLIPSKIP_HASH_CACHE, else
    clipskip/hashes.json in $XDG_CACHE_HOME, else in ~/.cache."""
    if environ.get(HASH_CACHE_VARIABLE):
        return Path(environ[HASH_CACHE_VARIABLE]).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clipskip" / "hashes.json"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model, beyond its name, device and precision."""

    config: str | None = None  # a diffusers folder or Hub id of the same architecture, for single files
    allow_pickle: bool = False
    safety_checker: bool = True
    offload: bool = False  # model CPU offload: each component moves to the GPU only while it runs
    compile: bool = False  # torch.compile the UNet: slow first render per image size, faster ones after
    embeddings: tuple[str, ...] = ()  # textual-inversion .safetensors files; prompts name each by its file's stem
    loras: tuple[str, ...] = ()  # LoRA .safetensors files, loaded switched off; prompts name each by its file's stem


def model_name(model: str) -> str:
    """How metadata and the page name a model, as AUTOMATIC1111 names checkpoints: a single file by its file name
    without extension (`anime-v3`), a folder by its name, a Hub id and `embedded` as they are; never a path."""
    if model == EMBEDDED:
        return model
    path = Path(model).expanduser()
    if path.is_file():
        return path.stem
    if path.is_dir() or model.startswith(("/", ".", "~")):
        return path.resolve().name or model
    return model


@dataclass(frozen=True)
class AppSettings:
    models: tuple[str, ...]
    device: str
    dtype: str | None
    options: LoadOptions
    host: str
    port: int
    share: bool
    max_loaded: int
    concurrency: int = 1
    max_queue: int = DEFAULT_MAX_QUEUE
    max_batch: int | None = None
    cache_mb: int = DEFAULT_CACHE_MB
    lora_weights: tuple[tuple[str, float], ...] = ()  # each --lora's name and weight: the page's starting weights


def whole_argument(text: str) -> int:
    """A flag's whole number; a bad one is echoed cut short (argparse's own message would echo all of it)."""
    try:
        return int(text)
    except ValueError:  # also past Python's 4,300-digit limit
        raise argparse.ArgumentTypeError(f"invalid int value: {short_repr(text)}") from None


def number_argument(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {short_repr(text)}") from None


def max_batch_argument(text: str) -> int:
    value = whole_argument(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more, not {short_repr(text)}")
    return value


def one_of(options):
    """An argparse type that accepts one of `options`, echoing anything else cut short."""

    def choice(text: str) -> str:
        if text not in options:
            listed = ", ".join(map(repr, options))
            raise argparse.ArgumentTypeError(f"invalid choice: {short_repr(text)} (choose from {listed})")
        return text

    return choice


def config_argument(text: str) -> str:
    """--config: a Hub id, or a folder that must exist when the text is plainly a local path."""
    if text.startswith(("/", ".", "~")) and not Path(text).expanduser().exists():
        raise argparse.ArgumentTypeError(
            f"no such folder: {short_repr(text, PATH_SHOWN_CHARS)} (give a diffusers folder or a Hub id)"
        )
    return text


def existing_safetensors(text: str, kinds: str, pickles: str) -> None:
    """ArgumentTypeError unless `text` names an existing .safetensors file; `kinds` names what such files hold
    ("LoRAs") and `pickles` the pickle suffixes people give instead (".pt and .bin")."""
    path = Path(text).expanduser()
    if path.suffix.lower() != ".safetensors":
        raise argparse.ArgumentTypeError(
            f"{short_repr(text, PATH_SHOWN_CHARS)} is not a .safetensors file; {kinds} are read from .safetensors "
            f"only ({pickles} files are Python pickles: convert them)"
        )
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {short_repr(text, PATH_SHOWN_CHARS)}")


def embedding_argument(text: str) -> str:
    """--embedding: an existing .safetensors file, checked before any model loads (its contents are checked against
    the model's encoders when the model loads: clipskip.embeddings)."""
    existing_safetensors(text, "textual inversions", ".pt and .bin")
    return text


MAX_LORA_WEIGHT = 4.0  # clipskip.loras.MAX_WEIGHT (imported there: this module loads without torch)


def lora_argument(text: str) -> tuple[str, float]:
    """--lora FILE[:weight]: an existing .safetensors file and its weight (1 when not given), from -4 to 4; the text
    after the last colon is the weight when it reads as a number (so C:\\x.safetensors stays a path)."""
    path, weight = text, 1.0
    head, colon, tail = text.rpartition(":")
    if colon:
        with contextlib.suppress(ValueError):  # not a number: the colon is part of the path
            path, weight = head, float(tail)
    if not -MAX_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT:  # also NaN
        raise argparse.ArgumentTypeError(
            f"the weight after {short_repr(path, PATH_SHOWN_CHARS)}: must be from {-MAX_LORA_WEIGHT:g} to "
            f"{MAX_LORA_WEIGHT:g} (0 loads it off, for prompts to select), not {short_repr(tail)}"
        )
    existing_safetensors(path, "LoRAs", ".ckpt, .pt and .bin")
    return path, weight


def lora_weights(args: argparse.Namespace) -> dict[str, float]:
    """Each --lora's name (its file's stem) and weight, the last given for a name."""
    return {Path(path).stem: weight for path, weight in args.lora}


def add_load_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps"
    )
    parser.add_argument(
        "--dtype",
        type=one_of(("fp16", "bf16", "fp32")),
        choices=("fp16", "bf16", "fp32"),
        help="weights' precision (default: fp16 on CUDA, else fp32)",
    )
    parser.add_argument(
        "--config",
        type=config_argument,
        help="for single-file checkpoints: a diffusers folder or Hub id of the same architecture, whose configs "
        "describe the file (default: diffusers picks one by the file's keys, from the Hub)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load .ckpt/.pt/.pth/.bin files, which are Python pickles and can run code: only ones you trust",
    )
    parser.add_argument(
        "--no-safety-checker",
        action="store_true",
        help="turn off the safety checker that some checkpoints ship (on by default: flagged cells show as blocked)",
    )
    parser.add_argument(
        "--offload", action="store_true", help="model CPU offload, for GPUs with little memory (CUDA only)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the UNet with torch.compile: the first render at each size and batch takes a minute or more "
        "longer (compiling), later ones are faster on CUDA",
    )
    parser.add_argument(
        "--embedding",
        action="append",
        default=[],
        type=embedding_argument,
        metavar="FILE",
        help="a textual-inversion embedding (.safetensors, AUTOMATIC1111/Civitai layout) that prompts may use by its "
        "file name without .safetensors (ComfyUI syntax: embedding:name); repeat for several",
    )
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        type=lora_argument,
        metavar="FILE[:WEIGHT]",
        help="a LoRA (.safetensors, diffusers or Kohya/AUTOMATIC1111 layout) for the UNet and text encoders, applied "
        f"at WEIGHT (default 1, from {-MAX_LORA_WEIGHT:g} to {MAX_LORA_WEIGHT:g}; 0 loads it off) to every cell, "
        "except prompts whose <lora:name:w> (name: the file name without .safetensors) says otherwise; repeat "
        "for several",
    )


def add_max_batch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-batch",
        type=max_batch_argument,
        help="at most this many cells through the denoiser at once; more go in chunks, with the same images "
        "(default: all at once, halving automatically when memory runs out)",
    )


def load_options(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(
        args.config,
        args.allow_pickle,
        not args.no_safety_checker,
        args.offload,
        args.compile,
        tuple(args.embedding),
        tuple(dict.fromkeys(path for path, _ in args.lora)),
    )


def app_settings(argv: list[str] | None = None, environ=os.environ) -> AppSettings:
    parser = argparse.ArgumentParser(
        prog="app.py", description="Serve the clipskip web app: one prompt at several CLIP skip values, side by side."
    )
    parser.add_argument(
        "--model",
        action="append",
        help=f"a model to offer: {MODEL_HELP}; repeat for several (default: $CLIPSKIP_MODELS, comma-separated, "
        "else embedded). The first loads at start-up, the others on first use",
    )
    add_load_options(parser)
    parser.add_argument(
        "--max-loaded",
        type=whole_argument,
        default=DEFAULT_MAX_LOADED,
        help=f"models kept in memory at once; the least recently used goes first (default: {DEFAULT_MAX_LOADED})",
    )
    add_max_batch(parser)
    parser.add_argument(
        "--cache-mb",
        type=whole_argument,
        default=DEFAULT_CACHE_MB,
        help="memory for finished cells, so a re-run with one more skip or seed renders only the new cells "
        f"(default: {DEFAULT_CACHE_MB}; 0 turns it off)",
    )
    parser.add_argument(
        "--concurrency",
        type=whole_argument,
        default=1,
        help="renders at once (default: 1; each render already fills the device, so more only share it)",
    )
    parser.add_argument(
        "--max-queue",
        type=whole_argument,
        default=DEFAULT_MAX_QUEUE,
        help=f"requests allowed to wait; more are refused at once with 'busy' (default: {DEFAULT_MAX_QUEUE})",
    )
    parser.add_argument(
        "--port",
        type=whole_argument,
        default=int(environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
        help=f"port to listen on (default: $GRADIO_SERVER_PORT, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--host",
        default=environ.get("GRADIO_SERVER_NAME", LOCAL_ONLY),
        help=f"address to listen on (default: $GRADIO_SERVER_NAME, else {LOCAL_ONLY}: this machine only)",
    )
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    args = parser.parse_args(argv)
    models = args.model or [m.strip() for m in environ.get("CLIPSKIP_MODELS", "embedded").split(",") if m.strip()]
    for flag, value in (("--max-loaded", args.max_loaded), ("--concurrency", args.concurrency)):
        if value < 1:
            parser.error(f"{flag} must be 1 or more")
    for flag, value in (("--max-queue", args.max_queue), ("--cache-mb", args.cache_mb)):
        if value < 0:
            parser.error(f"{flag} must be 0 or more")
    if args.offload and args.concurrency > 1:
        parser.error("--offload moves components on and off the GPU per render: use it with --concurrency 1")
    return AppSettings(
        models=tuple(dict.fromkeys(models)),  # each once, in the order given
        device=args.device,
        dtype=args.dtype,
        options=load_options(args),
        host=args.host,
        port=args.port,
        share=args.share,
        max_loaded=args.max_loaded,
        concurrency=args.concurrency,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        cache_mb=args.cache_mb,
        lora_weights=tuple(lora_weights(args).items()),
    )


def skip_list(text: str) -> tuple[int | str, ...]:
    """--skips: "1,2,3,4", "1,1.5,L1/G2" or "a1111-sdxl" (`clipskip.skips`); its length is checked before any value is
    read. Whole numbers become ints, the other values their canonical text ("1.5", "L1/G2"); compare checks the
    range and the model."""
    accepted = "expected CLIP skips separated by commas, like 1,2,3,4 or 1,1.5,L1/G2, or a1111-sdxl"
    if len(text) > MAX_SKIPS_CHARS:
        raise argparse.ArgumentTypeError(
            f"{accepted}; got {len(text):,} characters, more than the {MAX_SKIPS_CHARS} any list of skips needs"
        )
    values = []
    for part in text.split(","):
        if part.strip().lower() == A1111_SDXL:
            values.append(A1111_SDXL)
            continue
        try:
            values.append(parse_skip(part.strip()).json)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{accepted}; got {short_repr(text)}") from None
    return tuple(values)


def skip_argument(text: str) -> int | str:
    """--reference: one skip in any notation ("2", "1.5", "L1/G2"), as `skip_list` gives it."""
    try:
        return parse_skip(text[:MAX_SKIPS_CHARS]).json
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def seeds_argument(text: str) -> list[int]:
    try:
        return seed_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipskip" if Path(sys.argv[0]).name == "clipskip" else "python -m clipskip",  # the console script
        description="Render a prompt at several CLIP skip values (columns), for one or several seeds or prompts "
        "(rows), all in one batch, and write a labelled grid, a difference grid, one PNG per cell and "
        "comparison.json.",
    )
    prompts = parser.add_mutually_exclusive_group()  # one of them, or --from-image (checked in __main__)
    prompts.add_argument("--prompt", help="what to draw")
    prompts.add_argument(
        "--prompts-file",
        help=f"a text file with one prompt per line (blank lines skipped): one row per prompt, up to {MAX_ROWS}",
    )
    parser.add_argument(
        "--from-image",
        metavar="PNG",
        help="take every setting from a PNG made by AUTOMATIC1111, Forge, SD.Next, ComfyUI, Fooocus, InvokeAI, "
        "NovelAI or clipskip (its model too where that is embedded or a file or folder here, else give --model); "
        "the skips are 1-4 and the image's own, which is the reference; flags given with it override",
    )
    parser.add_argument("--negative-prompt", default="", help="what to avoid; it is skipped like the prompt")
    parser.add_argument(
        "--seed", type=whole_argument, default=RANDOM_SEED, help="0 to 4294967295; -1 (default) picks one"
    )
    parser.add_argument(
        "--seeds",
        type=seeds_argument,
        help=f"one row per seed: 42,43,44, or random:N for N drawn seeds (up to {MAX_ROWS}); replaces --seed",
    )
    parser.add_argument(
        "--reference",
        type=skip_argument,
        help="the skip value the difference view compares with (default: the model's native one, if listed)",
    )
    parser.add_argument(
        "--skips",
        type=skip_list,
        default=DEFAULT_SKIPS,
        help="CLIP skip values, one column each, in this order (default: 1,2,3,4); "
        "skip N uses the N-th layer from the end (on SD 1.x: AUTOMATIC1111 N, ComfyUI -N, diffusers clip_skip N-1); "
        "1.5 blends layers as SD.Next does; L1/G2 gives SDXL's CLIP-L and CLIP-G each its own; a1111-sdxl is "
        "AUTOMATIC1111's Clip skip 1-4 on SDXL with 'CLIP-L too' (L1/G2,2,L3/G2,L4/G2)",
    )
    parser.add_argument(
        "--steps", type=whole_argument, default=DEFAULT_STEPS, help=f"denoising steps (default: {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--cfg",
        type=number_argument,
        default=DEFAULT_GUIDANCE,
        help=f"CFG (guidance) scale, 0 to 30 (default: {DEFAULT_GUIDANCE})",
    )
    parser.add_argument(
        "--width", type=whole_argument, help="image width, a multiple of 8 (default: the model's native size)"
    )
    parser.add_argument(
        "--height", type=whole_argument, help="image height, a multiple of 8 (default: the model's native size)"
    )
    parser.add_argument(
        "--prompt-syntax",
        type=one_of(SYNTAXES),
        choices=SYNTAXES,
        default=DEFAULT_SYNTAX,
        help="how the prompts are read: a1111 (default: weights, BREAK, 75-token chunks, as AUTOMATIC1111 reads "
        "them), a1111-no-norm (its 'No norm' emphasis), comfyui (ComfyUI's CLIPTextEncode rules), plain (as written, "
        "one 77-token window)",
    )
    parser.add_argument(
        "--sampler",
        type=one_of(tuple(SAMPLERS)),
        choices=tuple(SAMPLERS),
        default=DEFAULT_SAMPLER,
        help=f"sampler (default: {DEFAULT_SAMPLER})",
    )
    parser.add_argument("--model", default="embedded", help=f"the model: {MODEL_HELP} (default: embedded)")
    add_load_options(parser)
    add_max_batch(parser)
    parser.add_argument(
        "--out",
        required=True,
        help="folder to write into: grid.png, difference.png, one PNG per cell (skip-N.png, or rowR-skip-N.png with "
        "several rows) carrying its settings, and comparison.json",
    )
    return parser


def sweep_seeds(text: str) -> list[int]:
    try:
        return seed_list(text, MAX_SEEDS)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def sweep_parser() -> argparse.ArgumentParser:
    """`clipskip sweep`'s flags (`clipskip.sweep.sweep`'s settings)."""
    p = argparse.ArgumentParser(
        prog="clipskip sweep",
        description="Render every prompt of a file, at every seed and CLIP skip, with one or more models, into a "
        "folder: one PNG per cell (with its settings), results.parquet and results.csv. Run it again with the same "
        "folder to continue a stopped sweep: only missing cells are rendered.",
    )
    p.add_argument(
        "--prompts-file",
        required=True,
        help=f"a UTF-8 text file, one prompt per line (blank lines skipped), up to {MAX_PROMPTS:,}",
    )
    p.add_argument(
        "--seeds",
        type=sweep_seeds,
        default=[-1],
        help=f"42,43,44, or random:N for N seeds drawn once and kept in the folder (default: random:1); up to "
        f"{MAX_SEEDS:,}",
    )
    p.add_argument("--skips", type=skip_list, default=DEFAULT_SKIPS, help="CLIP skip values (default: 1,2,3,4)")
    p.add_argument(
        "--model",
        action="append",
        help=f"a model: {MODEL_HELP}; repeat for several, up to {MAX_MODELS} (default: embedded)",
    )
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--steps", type=whole_argument, default=DEFAULT_STEPS, help=f"(default: {DEFAULT_STEPS})")
    p.add_argument("--cfg", type=number_argument, default=DEFAULT_GUIDANCE, help=f"(default: {DEFAULT_GUIDANCE})")
    p.add_argument("--width", type=whole_argument, help="(default: each model's native size)")
    p.add_argument("--height", type=whole_argument)
    p.add_argument("--sampler", type=one_of(tuple(SAMPLERS)), choices=tuple(SAMPLERS), default=DEFAULT_SAMPLER)
    p.add_argument("--prompt-syntax", type=one_of(SYNTAXES), choices=SYNTAXES, default=DEFAULT_SYNTAX)
    p.add_argument(
        "--reference",
        type=skip_argument,
        help="the skip the difference metrics compare with, in any notation --skips takes (default: the model's "
        "native one, if listed)",
    )
    p.add_argument(
        "--score",
        type=one_of((*SCORES, "none")),
        choices=(*SCORES, "none"),
        default="none",
        help="score each cell: shapes (the built-in model's reading of a full scene caption), clip (CLIP score with "
        "--clip-model) or none (default)",
    )
    p.add_argument(
        "--clip-model",
        metavar="MODEL",
        help="the CLIP model for --score clip: a Hub id (openai/clip-vit-large-patch14) or a folder with a CLIP model "
        "and its processor",
    )
    add_load_options(p)
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="render on a Ray cluster: auto (the one this machine is part of), local (this machine alone) or an "
        "address such as 10.0.0.5:6379 (the head node's); every node needs clipskip installed (pip install .[sweep])",
    )
    p.add_argument(
        "--workers",
        type=whole_argument,
        help="Ray workers, each holding one pipeline (default: one per GPU of the cluster, else 2)",
    )
    p.add_argument("--out", required=True, help="the sweep's folder (made if missing; an existing sweep continues)")
    return p
