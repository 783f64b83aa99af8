"""Command line: `python -m clipskip --prompt "..." --seed 42 --skips 1,2,3,4 --out DIR`; `--help` lists options."""

import os
import stat
import sys
from pathlib import Path

from .request import MAX_PROMPT_CHARS, MAX_ROWS, short_repr
from .settings import PATH_SHOWN_CHARS, cli_parser, load_options

MAX_PROMPTS_FILE_BYTES = 64 * 1024  # MAX_ROWS prompts of MAX_PROMPT_CHARS characters fit, even at 4 bytes each


def read_prompts(path: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped; its kind and size are checked before it is opened."""
    shown = short_repr(path, PATH_SHOWN_CHARS)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a folder, or a pipe or device that could block or never end
            raise ValueError(f"the prompts file {shown} is not a regular file; give a text file, one prompt per line")
        if info.st_size > MAX_PROMPTS_FILE_BYTES:
            raise ValueError(
                f"the prompts file {shown} is {info.st_size:,} bytes; at most {MAX_PROMPTS_FILE_BYTES:,} "
                f"({MAX_ROWS} prompts of up to {MAX_PROMPT_CHARS:,} characters)"
            )
        with open(path, "rb") as file:
            data = file.read(MAX_PROMPTS_FILE_BYTES + 1)  # bounded even if the file grew since
        lines = data.decode("utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"cannot read the prompts file {shown}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"cannot read the prompts file {shown}: it is not UTF-8 text ({error.reason})") from None
    if len(data) > MAX_PROMPTS_FILE_BYTES:
        raise ValueError(f"the prompts file {shown} grew past {MAX_PROMPTS_FILE_BYTES:,} bytes while being read")
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"the prompts file {shown} has no prompts (one per line)")
    return prompts


def check_out(path: str) -> Path:
    """The output folder, refused before any work when it could not be written: empty, a file, under a file, or
    where this user may not write (checked on the nearest folder that exists). Nothing is created here."""
    shown = short_repr(path, PATH_SHOWN_CHARS)
    if not path:
        raise ValueError("--out must name a folder to write into, not ''")
    out = Path(path)
    try:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {shown} is a file; name a folder (it is made if missing)")
        nearest = next(folder for folder in (out, *out.parents) if folder.exists())
        if not nearest.is_dir():
            raise ValueError(f"--out {shown} cannot be made: {short_repr(str(nearest), PATH_SHOWN_CHARS)} is a file")
        if not os.access(nearest, os.W_OK | os.X_OK):
            raise ValueError(
                f"--out {shown} cannot be written: no permission to write in "
                f"{short_repr(str(nearest), PATH_SHOWN_CHARS)}"
            )
    except OSError as error:  # a name too long, a folder on the way that may not be read
        raise ValueError(f"--out {shown} cannot be used: {error.strerror}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    args = cli_parser().parse_args(argv)
    from tqdm import tqdm  # imported here so that --help answers at once

    from .comparison import compare
    from .loading import load_pipeline
    from .metadata import seeds_text
    from .outputs import write_outputs

    bar = None

    def report(step: int, total: int) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total, desc="Denoising all cells", unit="step")
        bar.update(step - bar.n)

    try:
        out = check_out(args.out)  # before any work: a render is not wasted on a folder it cannot be written to
        prompt = read_prompts(args.prompts_file) if args.prompts_file else args.prompt
        pipe = load_pipeline(args.model, args.device, args.dtype, load_options(args))
        result = compare(
            pipe,
            prompt,
            negative_prompt=args.negative_prompt,
            seed=args.seeds or args.seed,
            skips=args.skips,
            steps=args.steps,
            guidance_scale=args.cfg,
            width=args.width,
            height=args.height,
            scheduler=args.sampler,
            reference=args.reference,
            max_batch=args.max_batch,
            progress=report,
            prompt_syntax=args.prompt_syntax,
        )
    except ValueError as error:
        print(f"clipskip: error: {error}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()

    try:
        paths = write_outputs(result, out)
    except OSError as error:  # checked above, but a disk can fill or a folder change while rendering
        print(
            f"clipskip: error: could not write to {short_repr(str(out), PATH_SHOWN_CHARS)}: {error}", file=sys.stderr
        )
        return 2
    for warning in result.warnings:
        print(f"clipskip: warning: {warning}", file=sys.stderr)
    print(f"{seeds_text(result.metadata)}: wrote {', '.join(path.name for path in paths)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
