"""Sweeps: prompts × seeds × skips × models, each (model, prompt, seed) one `compare` (all its skips in one batch),
written cell by cell into a folder that a rerun continues, with a results table.

`plan` makes the units, `run` renders and keeps them (`cluster` on Ray), `table` and `report` write the results
table and the page to browse them, `scores` scores the cells.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..request import (
    DEFAULT_GUIDANCE,
    DEFAULT_SKIPS,
    DEFAULT_STEPS,
    DEFAULT_SYNTAX,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    RANDOM_SEED,
    as_text,
    check_seed,
    short_repr,
)
from .cluster import run_on_ray
from .plan import MAX_MODELS, MAX_PROMPTS, MAX_SEEDS, drawn_seeds, plan
from .report import write_report
from .run import (
    ERRORS,
    Outcome,
    Renderer,
    SweepSettings,
    count_done,
    done_cells,
    open_folder,
    run_local,
    saved_settings,
    work_left,
)
from .scores import scorer
from .table import ordered_rows, write_table

MAX_ADDRESS_CHARS = 256
MAX_SKIPS = 64  # columns: more than any text encoder has layers
MAX_WORKERS = 1024

__all__ = ["SweepResult", "sweep"]


@dataclass
class SweepResult:
    """Where a sweep's results are and what this run did."""

    folder: Path
    table: list[Path]  # results.parquet, results.csv
    report: Path  # index.html
    cells: int  # cells in the table: done now or before
    outcome: Outcome


def checked_list(name: str, values, most: int, check) -> tuple:
    """`values` (a list or tuple of at most `most`, counted before any is checked), each through `check`."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{name} must be a list, not {short_repr(values)}")
    if not values:
        raise ValueError(f"give at least one of {name}")
    if len(values) > most:
        raise ValueError(f"{name}: at most {most:,}, not {len(values):,}")
    checked = tuple(check(value) for value in values)
    counts = Counter(checked)  # linear: 10,000 prompts took 2.6 s with list.count
    repeated = [value for value, n in counts.items() if n > 1 and value != RANDOM_SEED]
    if repeated:
        raise ValueError(f"{name}: {short_repr(repeated[0])} is listed twice; list each once")
    return checked


def sweep_skips(skips) -> tuple:
    """The skips as each cell's file and row name them: whole ones as ints, the others as their canonical text
    ("1.5", "L1/G2"), the AUTOMATIC1111 SDXL preset as its four columns; `compare` checks them against each model.
    Raises ValueError for a notation no model takes."""
    from ..skips import A1111_SDXL, a1111_sdxl, parse_skip

    if not isinstance(skips, (list, tuple, range)) or not 1 <= len(skips) <= MAX_SKIPS:
        raise ValueError(f"skips must be a list of 1 to {MAX_SKIPS} CLIP skip values, not {short_repr(skips)}")
    columns = []
    for skip in skips:
        preset = isinstance(skip, str) and skip.strip().lower() == A1111_SDXL
        columns += [s.json for s in a1111_sdxl()] if preset else [parse_skip(skip, "each CLIP skip", short_repr).json]
    return tuple(columns)


def drawn(value) -> bool:
    """Whether a seed read back from a folder's sweep.json is one a sweep could have drawn (the file may be edited)."""
    return type(value) is int and 0 <= value <= MAX_SEED


def model_text(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"each model must be a name, file or folder, not {short_repr(value)}")
    return value


def sweep(
    out: str | Path,
    prompts: list[str],
    *,
    seeds: list[int] = (RANDOM_SEED,),
    skips=DEFAULT_SKIPS,
    models: list[str] = ("embedded",),
    negative_prompt: str = "",
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    width: int | None = None,
    height: int | None = None,
    scheduler: str | None = None,
    reference: int | float | str | None = None,
    prompt_syntax: str = DEFAULT_SYNTAX,
    score: str | None = None,
    clip_model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    options=None,
    ray: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SweepResult:
    """Render every (model, prompt, seed) at every skip in `skips` into the folder `out`, and write its results
    table. A folder that already holds this sweep (the same settings) is continued: only missing cells are rendered.

    `seeds` may hold -1s, drawn once when the sweep starts and kept in `out`/sweep.json (a rerun with the same -1s
    uses them); `score` is one of `clipskip.sweep.scores.SCORES` or None (`clip` with `clip_model`, a Hub id or
    folder); `device`, `dtype` and `options` (`LoadOptions`) are how each model loads (`load_pipeline`); the rest
    are `compare`'s settings, the same for every unit (`reference` in any notation `skips` takes). A unit `compare`
    refuses (its prompt's weights overflow, say) goes to `out`/errors.jsonl and the sweep goes on. `ray` runs the
    units on a Ray cluster instead of here: "auto" (the cluster this machine is part of), an address (the head
    node's, "10.0.0.5:6379"), or "local" (a cluster of this machine alone); `workers` is how many (default: one per
    GPU of the cluster, else 2). Raises ValueError for bad settings, a model that cannot load, or a folder holding
    another sweep."""
    from ..loading import load_pipeline
    from ..provenance import weights_hash
    from ..skips import parse_skip

    if not isinstance(out, (str, Path)) or not str(out):
        raise ValueError(f"out must be the sweep's folder (a path), not {short_repr(out)}")
    if workers is not None and ray is None:
        raise ValueError("workers is the number of Ray workers: give ray too (--ray auto, local or an address)")
    try:
        import pyarrow  # noqa: F401  the results table: checked before any cell is rendered
    except ImportError:
        raise ValueError("a sweep's results table needs pyarrow: pip install -r requirements-sweep.txt") from None
    prompts = checked_list("prompts", prompts, MAX_PROMPTS, lambda p: as_text("prompt", p, MAX_PROMPT_CHARS))
    seeds = checked_list("seeds", seeds, MAX_SEEDS, check_seed)
    models = checked_list("models", models, MAX_MODELS, model_text)
    score_function = scorer(score, clip_model)
    folder = Path(out)
    saved = saved_settings(folder) or {}
    kept = saved.get("seeds")
    same_count = isinstance(kept, list) and len(kept) == len(seeds)
    if same_count and all(drawn(k) and s in (RANDOM_SEED, k) for s, k in zip(seeds, kept, strict=True)):
        seeds = tuple(kept)  # a rerun of a sweep with drawn seeds renders the same cells
    settings = SweepSettings(
        models=models,
        prompts=prompts,
        seeds=tuple(drawn_seeds(list(seeds))),
        skips=sweep_skips(skips),
        negative_prompt=negative_prompt,
        steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        scheduler=scheduler,
        reference=None if reference is None else parse_skip(reference, "reference", short_repr).json,
        prompt_syntax=prompt_syntax,
        score=score,
        clip_model=clip_model if score == "clip" else None,
        dtype=dtype,
    )
    units = plan(list(models), list(prompts), list(settings.seeds))  # a sweep too large is refused before its folder
    lock = hold(folder)  # before sweep.json is read or written: one sweep at a time in a folder
    try:
        open_folder(folder, settings)

        def load(model: str):
            pipe = load_pipeline(model, device, dtype, options)
            check_settings(pipe, settings)
            weights_hash(pipe, timeout=None)  # every row names the weights: wait for a hash still being computed
            return pipe

        if ray is not None:
            workers = connect(ray, workers)  # before the progress bar: a cluster that cannot be reached is one line
        done = done_cells(folder, settings)
        (folder / ERRORS).unlink(missing_ok=True)  # errors.jsonl: this run's failures (a rerun tries them again)
        outcome = Outcome(found=count_done(units, settings.skips, done))
        work = work_left(units, settings.skips, done)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(units) * len(settings.skips), initial=outcome.found, desc="sweep", unit="cell")
        try:
            if ray is None:
                run_local(folder, Renderer(settings, load, score_function), work, outcome, bar)
            else:
                run_on_ray(folder, settings, work, load, score_function, outcome, workers, bar)
        finally:
            if bar is not None:
                bar.close()
        rows = ordered_rows(folder, units, settings)
        return SweepResult(
            folder, write_table(folder, rows), write_report(folder, rows, len(outcome.failed)), len(rows), outcome
        )
    finally:
        lock.close()


def hold(folder: Path):
    """The folder made and locked for this sweep (an open file holding an exclusive `flock` on `.lock`; close it to
    let go); ValueError when another sweep holds it, or the folder cannot be made."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "w")  # noqa: SIM115  held until the sweep ends
    except OSError as error:
        raise ValueError(f"the sweep's folder {short_repr(str(folder))} cannot be used: {error.strerror}") from None
    try:
        import fcntl
    except ImportError:  # Windows: no flock; a second sweep there is not stopped
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ValueError(
            f"{short_repr(str(folder))} is in use by another sweep; wait for it to end, or give another folder"
        ) from None
    return handle


def connect(address: str, workers: int | None) -> int | None:
    """Connects this process to the Ray cluster at `address` ("local" starts one of this machine alone), unless it
    is connected already; returns `workers` checked. Raises ValueError when Ray is missing or cannot connect."""
    if not isinstance(address, str) or not 1 <= len(address) <= MAX_ADDRESS_CHARS:
        raise ValueError(f'ray must be "auto", "local" or a cluster address, not {short_repr(address)}')
    if address not in ("auto", "local") and not address.startswith("ray://"):
        reachable(address)  # ray.init waits without end for an address where no cluster answers
    if workers is not None and (not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS):
        raise ValueError(f"workers must be 1 to {MAX_WORKERS}, not {short_repr(workers)}")
    try:
        import ray
    except ImportError:
        raise ValueError("a sweep on Ray needs Ray: pip install -r requirements-sweep.txt") from None
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ValueError(f"cannot reach the Ray cluster {short_repr(address)}: {error}") from None
    return workers


def reachable(address: str, timeout: float = 5.0) -> None:
    """A head node's `host:port` answers a TCP connection within `timeout` seconds; ValueError otherwise."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'ray must be "auto", "local" or a head node\'s host:port, not {short_repr(address)}')
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise ValueError(
            f"cannot reach the Ray cluster at {short_repr(address)} ({error.strerror or error}); start it with "
            "`ray start --head` there, or give --ray local"
        ) from None


def check_settings(pipe, settings: SweepSettings) -> None:
    """The settings as `compare` would check them for this model, before its first unit: a bad skip or size stops
    the sweep at once instead of failing every unit. Raises ValueError."""
    from ..encoding import check_family_syntax, encoder_layers
    from ..families import detect_family
    from ..request import ComparisonRequest
    from ..samplers import check_model_sampler

    family = detect_family(pipe)
    options = settings.compare_options()
    request = ComparisonRequest.from_inputs(
        "", seed=0, max_skip=encoder_layers(pipe), native_skip=family.native_skip, family=family, **options
    )
    check_model_sampler(request.scheduler, pipe.scheduler)  # SD 3: Euler (flow matching) only
    check_family_syntax(family, request.prompt_syntax)  # SD 3: "plain" only
