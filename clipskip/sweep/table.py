"""A sweep's results table: one row per done cell, in plan order, as Parquet (pyarrow) and as CSV beside it
(`defusedcsv`: a text cell that a spreadsheet would run as a formula is written with a `'` first)."""

import io
from pathlib import Path

from .plan import Unit
from .run import SweepSettings, done_cells, done_row, write_atomically

PARQUET, CSV = "results.parquet", "results.csv"


def ordered_rows(folder: Path, units: list[Unit], settings: SweepSettings) -> list[dict]:
    """The done cells' rows, unit by unit in plan order and skip by skip in the sweep's order."""
    done = done_cells(folder, settings)
    return [row for unit in units for skip in settings.skips if (row := done_row(done, unit, skip)) is not None]


def write_table(folder: Path, rows: list[dict]) -> list[Path]:
    """results.parquet and results.csv from `rows` (every row's keys become columns; a key a row lacks is null
    in Parquet and empty in the CSV); each written whole or not at all. Returns their paths.

    Parquet keeps every value as it is. In the CSV, a text cell that starts with `=`, `+`, `-`, `@`, `|` or `%` and
    is not a number gets a `'` first (and its `|` a backslash), as OWASP's advice on CSV injection asks, so that a
    prompt like `=HYPERLINK(…)` from a shared prompts file is shown, not run, when the table opens in a spreadsheet
    (Excel and LibreOffice hide the `'`)."""
    import pyarrow as pa
    import pyarrow.parquet
    from defusedcsv import csv as defused

    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])
    sink = pa.BufferOutputStream()
    pyarrow.parquet.write_table(table, sink)
    text = io.StringIO()
    writer = defused.DictWriter(text, columns)  # CRLF between rows (RFC 4180): a text holding CR or LF is quoted
    writer.writeheader()
    writer.writerows(rows)
    for name, data in ((PARQUET, sink.getvalue().to_pybytes()), (CSV, text.getvalue().encode("utf-8"))):
        write_atomically(folder / name, data)
    return [folder / PARQUET, folder / CSV]
