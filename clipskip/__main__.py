"""Command line: `python -m clipskip --prompt "..." --seed 42 --skips 1,2,3,4 --out DIR`; `--help` lists options."""

import sys
from pathlib import Path

from .settings import cli_parser, load_options


def read_prompts(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the prompts file {path!r}: {error}") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"the prompts file {path!r} has no prompts (one per line)")
    return prompts


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
        )
    except ValueError as error:
        print(f"clipskip: error: {error}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()

    out = Path(args.out)
    paths = write_outputs(result, out)
    for warning in result.warnings:
        print(f"clipskip: warning: {warning}", file=sys.stderr)
    print(f"{seeds_text(result.metadata)}: wrote {', '.join(path.name for path in paths)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
