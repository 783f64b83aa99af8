"""Command line: `python -m clipskip --prompt "..." --seed 42 --skips 1,2,3,4 --out DIR`; `--help` lists options."""

import sys
from pathlib import Path

from .settings import cli_parser, load_options


def main(argv: list[str] | None = None) -> int:
    args = cli_parser().parse_args(argv)
    from tqdm import tqdm  # imported here so that --help answers at once

    from .comparison import compare
    from .loading import load_pipeline
    from .metadata import to_json

    bar = None

    def report(step: int, total: int) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total, desc="Denoising all cells", unit="step")
        bar.update(step - bar.n)

    try:
        pipe = load_pipeline(args.model, args.device, args.dtype, load_options(args))
        result = compare(
            pipe,
            args.prompt,
            negative_prompt=args.negative_prompt,
            seed=args.seed,
            skips=args.skips,
            steps=args.steps,
            guidance_scale=args.cfg,
            width=args.width,
            height=args.height,
            scheduler=args.sampler,
            progress=report,
        )
    except ValueError as error:
        print(f"clipskip: error: {error}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.grid.save(out / "grid.png")
    for skip, image in result.images.items():
        image.save(out / f"skip-{skip}.png")
    (out / "comparison.json").write_text(to_json(result.metadata) + "\n", encoding="utf-8")
    for warning in result.warnings:
        print(f"clipskip: warning: {warning}", file=sys.stderr)
    cells = ", ".join(f"skip-{skip}.png" for skip in result.images)
    print(f"seed {result.metadata['seed']}: wrote grid.png, {cells} and comparison.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
