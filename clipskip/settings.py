"""The one place that reads command-line flags and environment variables; everything else takes parameters."""

import argparse
import os
from dataclasses import dataclass

from .request import DEFAULT_GUIDANCE, DEFAULT_SKIPS, DEFAULT_STEPS, RANDOM_SEED
from .samplers import DEFAULT_SAMPLER, SAMPLERS

DEFAULT_PORT = 7860
LOCAL_ONLY = "127.0.0.1"


@dataclass(frozen=True)
class AppSettings:
    model: str
    device: str
    dtype: str | None
    host: str
    port: int
    share: bool


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="embedded", help="model to load (default: the built-in 'embedded' model)")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps"
    )
    parser.add_argument(
        "--dtype", choices=("fp16", "bf16", "fp32"), help="weights' precision (default: fp16 on CUDA, else fp32)"
    )


def app_settings(argv: list[str] | None = None, environ=os.environ) -> AppSettings:
    parser = argparse.ArgumentParser(
        prog="app.py", description="Serve the clipskip web app: one prompt at several CLIP skip values, side by side."
    )
    add_model_options(parser)
    parser.add_argument(
        "--port",
        type=int,
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
    return AppSettings(args.model, args.device, args.dtype, args.host, args.port, args.share)


def skip_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, like 1,2,3,4; got {text!r}"
        ) from None


def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clipskip",
        description="Render one prompt and one seed at several CLIP skip values, in one batch, and write a "
        "labelled grid, one PNG per skip value and comparison.json.",
    )
    parser.add_argument("--prompt", required=True, help="what to draw")
    parser.add_argument("--negative-prompt", default="", help="what to avoid; it is skipped like the prompt")
    parser.add_argument("--seed", type=int, default=RANDOM_SEED, help="0 to 4294967295; -1 (default) picks one")
    parser.add_argument(
        "--skips",
        type=skip_list,
        default=DEFAULT_SKIPS,
        help="CLIP skip values, one column each, in this order (default: 1,2,3,4); "
        "skip N uses the N-th layer from the end (ComfyUI -N, diffusers clip_skip N-1)",
    )
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"denoising steps (default: {DEFAULT_STEPS})")
    parser.add_argument(
        "--cfg",
        type=float,
        default=DEFAULT_GUIDANCE,
        help=f"CFG (guidance) scale, 0 to 30 (default: {DEFAULT_GUIDANCE})",
    )
    parser.add_argument("--width", type=int, help="image width, a multiple of 8 (default: the model's native size)")
    parser.add_argument("--height", type=int, help="image height, a multiple of 8 (default: the model's native size)")
    parser.add_argument(
        "--sampler", choices=tuple(SAMPLERS), default=DEFAULT_SAMPLER, help=f"sampler (default: {DEFAULT_SAMPLER})"
    )
    add_model_options(parser)
    parser.add_argument("--out", required=True, help="folder to write grid.png, skip-N.png and comparison.json into")
    return parser
