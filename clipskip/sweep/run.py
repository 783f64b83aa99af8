"""Running a sweep: each unit rendered by `compare` (all its skips in one batch), its cells written as PNGs that carry
their settings and its rows appended to a journal; a rerun in the same folder renders only what is missing.

A sweep's folder holds `sweep.json` (its settings, seeds drawn once), `rows.jsonl` (the journal: one line per cell,
a unit's lines written together after its files), `cells/…/skip-N.png`, `errors.jsonl` (units that failed, retried
by a rerun) and, at the end of each run, `results.parquet` and `results.csv` (`clipskip.sweep.table`). A cell is done
when its file and its row both exist; stopping at any moment loses at most the unit in flight.
"""

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..request import DEFAULT_GUIDANCE, DEFAULT_SKIPS, DEFAULT_STEPS, DEFAULT_SYNTAX, short_repr
from .plan import Unit, cell_path

SETTINGS_FILE = "sweep.json"
JOURNAL = "rows.jsonl"
ERRORS = "errors.jsonl"


@dataclass(frozen=True)
class SweepSettings:
    """Everything that decides a sweep's cells; a folder's cells are all of one such settings."""

    models: tuple[str, ...]
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]  # drawn already: no -1
    skips: tuple = DEFAULT_SKIPS
    negative_prompt: str = ""
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    width: int | None = None
    height: int | None = None
    scheduler: str | None = None
    reference: int | None = None
    prompt_syntax: str = DEFAULT_SYNTAX
    score: str | None = None
    clip_model: str | None = None
    dtype: str | None = None

    def as_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)

    def identity(self) -> str:
        """What every row of these settings carries (`sweep`): a hash of all that decides a cell's image and row
        besides its model, prompt and seed (which its row and path name), so that a row of other settings is never
        taken for a cell done, whatever sweep.json says."""
        rendering = {key: value for key, value in asdict(self).items() if key not in ("models", "prompts", "seeds")}
        return hashlib.sha256(json.dumps(rendering, sort_keys=True).encode()).hexdigest()[:16]

    def compare_options(self) -> dict:
        """The keyword arguments `compare` takes from these settings, besides prompt and seed."""
        return {
            "negative_prompt": self.negative_prompt,
            "skips": list(self.skips),
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "width": self.width,
            "height": self.height,
            "scheduler": self.scheduler,
            "reference": self.reference,
            "prompt_syntax": self.prompt_syntax,
        }


def differences(saved: dict, settings: SweepSettings) -> list[str]:
    """The names of the settings in which a folder's saved sweep (its sweep.json, as read) differs from `settings`."""
    mine = json.loads(settings.as_json())
    return [f.name for f in fields(SweepSettings) if saved.get(f.name) != mine[f.name]]


def open_folder(folder: Path, settings: SweepSettings) -> None:
    """Makes `folder` this sweep's: writes its settings, or checks that the sweep already there has the same ones
    (one with no cell yet is replaced).

    Raises ValueError naming the settings that differ (a folder never mixes two sweeps' cells)."""
    path = folder / SETTINGS_FILE  # the folder is made and locked already (`clipskip.sweep.hold`)
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} cannot be read ({error}); give another --out") from None
        if not isinstance(saved, dict):
            raise ValueError(f"{path} is not a sweep's settings; give another --out")
        changed = differences(saved, settings)
        if changed and (folder / JOURNAL).exists():
            raise ValueError(
                f"{short_repr(str(folder))} holds a sweep with other {', '.join(changed)}; give another folder, or "
                "the same settings to continue it"
            )
        if not changed:
            return
    write_atomically(path, (settings.as_json() + "\n").encode())  # a new sweep, or one that has no cell yet


def saved_settings(folder: Path) -> dict | None:
    """A folder's sweep settings as saved (with its drawn seeds), or None when it holds no sweep."""
    path = folder / SETTINGS_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def write_atomically(path: Path, data: bytes) -> None:
    """`data` in `path`, whole or not at all: written beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:  # a full disk: nothing half-written stays behind
        partial.unlink(missing_ok=True)
        raise


def read_journal(folder: Path) -> Iterator[dict]:
    """The rows in a folder's journal, in order; a line cut short by a stop is left out."""
    with contextlib.suppress(FileNotFoundError), open(folder / JOURNAL, encoding="utf-8") as journal:
        for line in journal:
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict) and isinstance(row.get("file"), str):
                    yield row


def append_lines(path: Path, rows: list[dict]) -> None:
    """The rows, one JSON line each, appended in one write and flushed to the disk, on a line of their own."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with contextlib.suppress(OSError), open(path, "rb") as journal:
        journal.seek(-1, os.SEEK_END)
        if journal.read(1) != b"\n":  # a line a stop cut short: it stays apart, unread, not glued to the next
            text = "\n" + text
    with open(path, "a", encoding="utf-8") as journal:
        journal.write(text)
        journal.flush()
        os.fsync(journal.fileno())


def done_cells(folder: Path, settings: SweepSettings) -> dict[str, dict]:
    """The cells done: file path (relative, POSIX) -> its row, for rows of these settings (`identity`) whose file
    exists (the last row wins)."""
    identity = settings.identity()
    rows = {row["file"]: row for row in read_journal(folder) if row.get("sweep") == identity}
    return {name: row for name, row in rows.items() if (folder / name).is_file()}


def done_row(done: dict[str, dict], unit: Unit, skip) -> dict | None:
    """The row of `unit`'s cell at `skip` when it is done and is that cell's (its prompt, seed and skip)."""
    row = done.get(str(cell_path(unit, skip)))
    if row is None or (row.get("prompt"), row.get("seed"), row.get("skip")) != (unit.prompt, unit.seed, str(skip)):
        return None
    return row


@dataclass
class Cell:
    """One rendered cell: its row for the results table and its PNG file's bytes."""

    row: dict
    png: bytes


def render_unit(
    pipe, unit: Unit, settings: SweepSettings, skips: list, score: Callable | None, reference=None
) -> list[Cell]:
    """The unit's cells at `skips`, rendered in one batch by `compare`, each with its row. `reference` (default: the
    settings', else `compare`'s) is rendered too when it is not among `skips`, for the difference metrics, but its
    cell is not returned: a unit resumed with some cells done is measured against the same reference as before.

    Raises ValueError when `compare` refuses the unit (its message says why)."""
    from ..comparison import compare
    from ..metadata import layers_text
    from ..outputs import save_cell
    from ..settings import model_name

    options = settings.compare_options()
    reference = settings.reference if reference is None else reference
    options["reference"] = reference
    wanted = [skip for skip in options["skips"] if skip in skips]
    if reference is not None and reference not in wanted:
        wanted.append(reference)
    options["skips"] = wanted
    result = compare(pipe, unit.prompt, seed=unit.seed, model_name=model_name(unit.model), **options)
    metadata = result.metadata
    row = metadata["rows"][0]
    cosine = metadata["embedding_similarity"][0]["cosine"]  # per whole layer, 1..T
    cells, identity = [], settings.identity()
    keys = list(result.rows[0].images)  # the skips as `compare` keys its images: ints, or `clipskip.skips.Skip`
    for column, measured, key in zip(metadata["columns"], row["cells"], keys, strict=True):
        skip = column["skip"]  # an int, or the canonical text ("1.5", "L1/G2"), as `sweep_skips` gives them
        if skip not in skips:
            continue
        png = io.BytesIO()
        save_cell(result, 0, key, png)
        image = result.rows[0].images[key]
        cells.append(
            Cell(
                {
                    "model": metadata["model"],
                    "weights_sha256": metadata["weights_sha256"],
                    "family": metadata["family"],
                    "prompt_index": unit.prompt_index,
                    "prompt": unit.prompt,
                    "seed": unit.seed,
                    "skip": str(skip),
                    "layers": layers_text(column),
                    "reference_skip": str(metadata["reference_skip"]),
                    "mean_abs_diff": measured.get("mean_abs_diff"),
                    "ssim": measured.get("ssim"),
                    "embedding_cosine": cosine[skip - 1] if isinstance(skip, int) else None,
                    **(score(unit.prompt, image) if score is not None else {"score": None}),
                    "file": str(cell_path(unit, skip)),
                    "sweep": identity,
                    "steps": metadata["steps"],
                    "guidance_scale": metadata["guidance_scale"],
                    "sampler": metadata["sampler"],
                    "width": metadata["width"],
                    "height": metadata["height"],
                    "device": metadata["device"],
                    "dtype": metadata["dtype"],
                },
                png.getvalue(),
            )
        )
    return cells


def keep(folder: Path, cells: list[Cell]) -> None:
    """A unit's cells on disk: every file first, then their rows in one journal write."""
    for cell in cells:
        write_atomically(folder / cell.row["file"], cell.png)
    append_lines(folder / JOURNAL, [cell.row for cell in cells])


def count_done(units: list[Unit], skips, done: dict[str, dict]) -> int:
    return sum(1 for unit in units for skip in skips if done_row(done, unit, skip) is not None)


def work_left(units: list[Unit], skips, done: dict[str, dict]) -> Iterator[tuple[Unit, list, object]]:
    """(unit, its skips not done, the reference its done cells were measured against or None) for every unit with
    work left, in plan order."""
    for unit in units:
        if missing := [skip for skip in skips if done_row(done, unit, skip) is None]:
            yield unit, missing, unit_reference(unit, skips, done)


def unit_reference(unit: Unit, skips, done: dict[str, dict]):
    """The reference skip the unit's done cells were measured against, or None when none is done."""
    for skip in skips:
        row = done_row(done, unit, skip)
        if row is not None:
            return next((s for s in skips if str(s) == row.get("reference_skip")), None)
    return None


class Renderer:
    """What renders a sweep's units, here or as a Ray worker: loads a model when a unit needs it (`load(model)`;
    units come model by model, so each loads once) and renders with `render_unit`. Answers a unit's cells, or
    {"error": why} for a unit `compare` refuses and {"load_error": why} for a model that cannot load, so that Ray
    retries only a worker that died."""

    def __init__(self, settings: SweepSettings, load: Callable, score: Callable | None, threads: int | None = None):
        if threads is not None:
            import torch

            # Ray gives a worker one thread per CPU it holds; torch's CPU kernels split their sums by thread, so a
            # worker computes with as many as the driver does, and its images equal a local sweep's to the bit
            torch.set_num_threads(threads)
        self.settings, self.load, self.score = settings, load, score
        self.pipe, self.model = None, None

    def render(self, unit: Unit, skips: list, reference) -> list[Cell] | dict:
        if unit.model != self.model:
            self.pipe, self.model = None, None  # the last model goes before the next one loads
            try:
                self.pipe, self.model = self.load(unit.model), unit.model
            except ValueError as error:
                return {"load_error": str(error)}
        try:
            return render_unit(self.pipe, unit, self.settings, skips, self.score, reference)
        except ValueError as error:
            return {"error": str(error)}


@dataclass
class Outcome:
    """What a run did: cells written now, cells found done, units that failed (each with its error)."""

    rendered: int = 0
    found: int = 0
    failed: list[dict] = field(default_factory=list)


def record(folder: Path, outcome: Outcome, unit: Unit, answer: list[Cell] | dict, bar=None) -> None:
    """A `Renderer`'s answer for `unit` kept: its cells (`keep`, counted, `bar` advanced), or its failure in
    errors.jsonl and the outcome (a rerun tries it again). Raises ValueError for a model that cannot load."""
    if isinstance(answer, dict) and "load_error" in answer:
        raise ValueError(answer["load_error"])
    if isinstance(answer, dict):
        failure = {"model": unit.model, "prompt_index": unit.prompt_index, "seed": unit.seed, "error": answer["error"]}
        append_lines(folder / ERRORS, [failure])
        outcome.failed.append(failure)
        return
    keep(folder, answer)
    outcome.rendered += len(answer)
    if bar is not None:
        bar.update(len(answer))


def run_local(folder: Path, renderer: Renderer, work, outcome: Outcome, bar=None) -> Outcome:
    """Renders each unit of `work` (`work_left`) here, one after another, keeping each as it ends; a unit
    `compare` refuses is written to errors.jsonl and the sweep goes on."""
    for unit, missing, reference in work:
        record(folder, outcome, unit, renderer.render(unit, missing, reference), bar)
    return outcome
