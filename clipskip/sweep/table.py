"""A sweep's results table: one row per done cell, in plan order, as Parquet and as CSV beside it (pyarrow writes
both)."""

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
    there); each written whole or not at all. Returns their paths."""
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])
    paths = []
    for name, write in ((PARQUET, pyarrow.parquet.write_table), (CSV, pyarrow.csv.write_csv)):
        sink = pa.BufferOutputStream()
        write(table, sink)
        write_atomically(folder / name, sink.getvalue().to_pybytes())
        paths.append(folder / name)
    return paths
