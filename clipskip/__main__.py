"""Command line: `python -m clipskip --prompt "..." --seed 42 --skips 1,2,3,4 --out DIR`; `--help` lists options."""

import argparse
import os
import re
import stat
import sys
from pathlib import Path

from .formats.fields import MODEL_EXTENSIONS, ImageSettings
from .request import DEFAULT_SKIPS, MAX_PROMPT_CHARS, MAX_ROWS, as_text, seed_list, short_repr
from .settings import PATH_SHOWN_CHARS, cli_parser, load_options, lora_weights, sweep_parser
from .skips import from_number, parse_skip

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
IMAGE_FIELDS = {  # form field -> the flag's destination
    "negative_prompt": "negative_prompt",
    "seed": "seed",
    "steps": "steps",
    "guidance_scale": "cfg",
    "width": "width",
    "height": "height",
    "scheduler": "sampler",
    "prompt_syntax": "prompt_syntax",
}

MAX_PROMPTS_FILE_BYTES = 64 * 1024  # MAX_ROWS prompts of MAX_PROMPT_CHARS characters fit, even at 4 bytes each


def read_prompts(path: str, max_bytes: int = MAX_PROMPTS_FILE_BYTES, most: int = MAX_ROWS) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped, at most `most` of them (a comparison's rows by default; a
    sweep allows more), each at most MAX_PROMPT_CHARS characters; its kind and size (at most `max_bytes`) are checked
    before it is opened. ValueError naming the file (and the line, for a prompt too long) otherwise."""
    shown = short_repr(path, PATH_SHOWN_CHARS)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a folder, or a pipe or device that could block or never end
            raise ValueError(f"the prompts file {shown} is not a regular file; give a text file, one prompt per line")
        if info.st_size > max_bytes:
            raise ValueError(
                f"the prompts file {shown} is {info.st_size:,} bytes; at most {max_bytes:,} "
                f"({most:,} prompts of up to {MAX_PROMPT_CHARS:,} characters)"
            )
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)  # bounded even if the file grew since
        lines = data.decode("utf-8-sig").replace("\r\n", "\n").split("\n")  # lines as an editor shows them
    except OSError as error:
        raise ValueError(f"cannot read the prompts file {shown}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"cannot read the prompts file {shown}: it is not UTF-8 text ({error.reason})") from None
    if len(data) > max_bytes:
        raise ValueError(f"the prompts file {shown} grew past {max_bytes:,} bytes while being read")
    prompts = []
    for number, line in enumerate(lines, 1):  # each prompt checked here, so its message can say where it is
        if line.strip():
            prompts.append(as_text(f"line {number:,} of the prompts file {shown}", line.strip()))
    if not prompts:
        raise ValueError(f"the prompts file {shown} has no prompts (one per line)")
    if len(prompts) > most:
        raise ValueError(f"the prompts file {shown} has {len(prompts):,} prompts; at most {most:,}")
    return prompts


def built_in_model_notes(model: str, prompt) -> list[str]:
    """What the built-in model cannot draw: it knows only the scene words of its captions, as the page's token count
    says; a note per prompt with words it does not know."""
    from .embedded import NAME as EMBEDDED
    from .toy.scenes import unknown_words_text

    if model != EMBEDDED or not isinstance(prompt, (str, list)):
        return []
    texts = [prompt] if isinstance(prompt, str) else prompt
    return [
        f"the built-in model does not know {words}: it draws coloured shapes only (give --model a checkpoint for "
        "other pictures)"
        for words in map(unknown_words_text, texts)
        if words
    ]


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


def given_flags(argv: list[str] | None) -> set[str]:
    """The destinations of the flags on the command line, not their defaults: those override --from-image."""
    probe = cli_parser()
    for action in probe._actions:  # argparse leaves a suppressed default's destination unset
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def family_defaults(args: argparse.Namespace, given: set[str], pipe) -> list[str]:
    """SD 3 takes the Euler sampler and plain prompts only: those replace the defaults (and an image's values) where no
    flag named others; returns a note for each (a flag naming others is refused with the reason when rendering)."""
    from .families import detect_family
    from .samplers import samplers_for

    notes = []
    offered = samplers_for(pipe.scheduler)
    if args.sampler not in offered and "sampler" not in given:
        args.sampler = next(iter(offered))
        notes.append(f"sampler {args.sampler}: the one this model's flow-matching scheduler takes")
    family = detect_family(pipe)
    if family.t5 is not None and args.prompt_syntax != "plain" and "prompt_syntax" not in given:
        args.prompt_syntax = "plain"
        notes.append(f"prompts read as plain: the only syntax offered for {family.name} models")
    return notes


def read_image_file(path: str) -> ImageSettings:
    """--from-image: the settings a PNG carries; its kind is checked before it is opened (a pipe could block)."""
    from .formats import read_image

    shown = short_repr(path, PATH_SHOWN_CHARS)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ValueError(f"--from-image {shown} is not a regular file; give a PNG")
    except OSError as error:
        raise ValueError(f"cannot read --from-image {shown}: {error.strerror}") from None
    try:
        return read_image(Path(path))
    except ValueError as error:
        raise ValueError(f"--from-image {shown}: {error}") from None


def image_model(found: ImageSettings) -> str:
    """The model an image names, where it is here by that name: `embedded`, or a file or folder. A Hub id is not
    fetched because a file says so: the message gives the --model that would."""
    name = found.form.get("model")
    if name is None:
        raise ValueError("the image names no model; give --model")
    if name == "embedded" or Path(name).expanduser().exists():
        return name
    shown = short_repr(name, PATH_SHOWN_CHARS)
    if HUB_ID.fullmatch(name) and not name.lower().endswith(MODEL_EXTENSIONS):
        raise ValueError(f"the image names the Hub model {shown}; give --model {shown} to load it (or another)")
    raise ValueError(f"the image's model {shown} is a checkpoint's name, not a file or folder here; give --model")


def apply_image(args: argparse.Namespace, given: set[str], found: ImageSettings, pipe) -> list[str]:
    """Set every setting the image holds on `args`, except the flags given; returns the notes on what could not be
    used. Another tool's image: the skips are 1-4 and its own, which becomes the reference."""
    from .encoding import encoder_layers
    from .families import detect_family
    from .formats import form_for

    form, notes = form_for(found, detect_family(pipe))
    for name, dest in IMAGE_FIELDS.items():
        if name in form and dest not in given:
            setattr(args, dest, form[name])
    if not {"prompt", "prompts_file"} & given:
        if "prompt" not in form:
            raise ValueError("the image's prompt could not be used (see the notes); give --prompt")
        args.prompt = form["prompt"].splitlines() if form.get("prompt_rows") else form["prompt"]
    if form.get("seeds") and not {"seed", "seeds"} & given:
        args.seeds = seed_list(form["seeds"])
    layers = encoder_layers(pipe)
    columns = [parse_skip(skip) for skip in form["skips"]]  # ints, or text: "1.5", "L1/G2"
    if beyond := [skip for skip in columns if max(skip.hundredths) > 100 * layers]:
        notes.append(f"CLIP skip {beyond[0]} was left out: this model's text encoder has {layers} layers")
    skips = [skip.json for skip in columns if max(skip.hundredths) <= 100 * layers]
    if "skips" not in given and skips:
        own = "reference" in form  # this app's grid: its skips and reference as they were
        others = [from_number(s) for s in DEFAULT_SKIPS if s <= layers]
        args.skips = skips if own else [s.json for s in sorted(set(others) | set(map(parse_skip, skips)))]
        if "reference" not in given:
            args.reference = (form["reference"] or None) if own else skips[0]
    return notes


def render_settings(args: argparse.Namespace) -> dict:
    """`compare`'s settings from the flags a comparison and a sweep share (`--skips`, `--steps`, `--cfg`, …)."""
    return {
        "negative_prompt": args.negative_prompt,
        "skips": args.skips,
        "steps": args.steps,
        "guidance_scale": args.cfg,
        "width": args.width,
        "height": args.height,
        "scheduler": args.sampler,
        "reference": args.reference,
        "prompt_syntax": args.prompt_syntax,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:
        return sweep_main(argv[1:])
    parser = cli_parser()
    args = parser.parse_args(argv)
    if args.prompt is None and args.prompts_file is None and args.from_image is None:
        parser.error("one of the arguments --prompt --prompts-file --from-image is required")
    if args.seeds is not None and {"seed", "seeds"} <= given_flags(argv):  # --seeds replaces --seed: one is lost
        parser.error("give --seed or --seeds, not both: --seeds gives one row per seed and replaces --seed")
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
        prompts = read_prompts(args.prompts_file) if args.prompts_file else None  # every file before any model
        given = given_flags(argv)
        found = read_image_file(args.from_image) if args.from_image is not None else None
        model = image_model(found) if found is not None and "model" not in given else args.model
        pipe = load_pipeline(model, args.device, args.dtype, load_options(args))
        if found is not None:
            print(f"clipskip: settings from {found.format}", file=sys.stderr)
            for note in apply_image(args, given, found, pipe):
                print(f"clipskip: note: {note}", file=sys.stderr)
        for note in family_defaults(args, given, pipe):
            print(f"clipskip: note: {note}", file=sys.stderr)
        prompt = prompts or args.prompt
        result = compare(
            pipe,
            prompt,
            seed=args.seeds or args.seed,
            max_batch=args.max_batch,
            progress=report,
            loras=lora_weights(args),
            **render_settings(args),
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
    for note in built_in_model_notes(model, prompt):  # with the result, as the page's token count says it
        print(f"clipskip: note: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"clipskip: warning: {warning}", file=sys.stderr)
    print(f"{seeds_text(result.metadata)}: wrote {', '.join(path.name for path in paths)} to {out}")
    return 0


def sweep_main(argv: list[str]) -> int:
    """`clipskip sweep …` (`settings.sweep_parser`): 0 when every comparison rendered, 1 when some failed (listed in
    errors.jsonl), 2 for an error before or while rendering, 130 when stopped (a rerun continues)."""
    args = sweep_parser().parse_args(argv)
    from .sweep import sweep
    from .sweep.plan import MAX_PROMPTS, MAX_PROMPTS_FILE_BYTES

    try:
        out = check_out(args.out)
        prompts = read_prompts(args.prompts_file, MAX_PROMPTS_FILE_BYTES, MAX_PROMPTS)
        result = sweep(
            out,
            prompts,
            seeds=args.seeds,
            models=args.model or ["embedded"],
            score=None if args.score == "none" else args.score,
            clip_model=args.clip_model,
            device=args.device,
            dtype=args.dtype,
            options=load_options(args),
            ray=args.ray,
            workers=args.workers,
            **render_settings(args),
        )
    except ValueError as error:
        print(f"clipskip: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"clipskip: stopped; run the same command again to continue in {Path(args.out)} (only missing cells are "
            "rendered)",
            file=sys.stderr,
        )
        return 130
    except OSError as error:  # a disk that fills, a folder that changes while the sweep runs
        print(
            f"clipskip: error: could not write to --out {short_repr(args.out, PATH_SHOWN_CHARS)}: "
            f"{error.strerror or error}; fix it and run the same command again (the cells done are kept)",
            file=sys.stderr,
        )
        return 2
    outcome = result.outcome
    for failure in outcome.failed[:5]:
        print(
            f"clipskip: warning: prompt {failure['prompt_index'] + 1} (prompt_index {failure['prompt_index']}), seed "
            f"{failure['seed']}: {failure['error']}",
            file=sys.stderr,
        )
    if len(outcome.failed) > 5:
        print(f"clipskip: warning: {len(outcome.failed) - 5} more failed; see errors.jsonl", file=sys.stderr)
    print(
        f"sweep: {outcome.rendered} cells rendered now, {outcome.found} found done, {len(outcome.failed)} "
        f"comparisons failed; {result.cells} cells in {', '.join(path.name for path in result.table)} and "
        f"{result.report.name} in {result.folder}"
    )
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
