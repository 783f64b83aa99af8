"""A sweep's report page, `index.html`: one self-contained file that opens from disk with no server, and reads like
a grid browser (in the spirit of the Infinity Grid Generator's pages): CLIP skip across, seeds, prompts or models
down; filters for the rest; zoom; two cells side by side (A/B); prompts sorted by how much the skip changes them;
the score and SSIM against skip per model. The rows are written into the page as JSON; the images are the cells'
own files, linked by their paths in the sweep's folder. The page is `report.html` beside this file. Pure Python.
"""

import html
import json
from pathlib import Path

from .run import write_atomically

PAGE = "index.html"
COLUMNS = ("model", "prompt_index", "prompt", "seed", "skip", "layers", "ssim", "mean_abs_diff", "score", "file")


def page_data(rows: list[dict]) -> str:
    """The rows' shown columns as JSON that is safe inside a <script> element (no `<`, so no `</script>`)."""
    shown = [{column: row.get(column) for column in COLUMNS} for row in rows]
    return json.dumps(shown, ensure_ascii=True).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_report(folder: Path, rows: list[dict], failed: int = 0, title: str = "clipskip sweep") -> Path:
    """index.html in `folder` for `rows` (the results table's, in plan order), saying how many comparisons `failed`
    in the run that wrote it; written whole or not at all."""
    template = (Path(__file__).parent / "report.html").read_text(encoding="utf-8")
    failures = f"{failed} comparison(s) failed in the last run: errors.jsonl says why" if failed else ""
    page = template.replace("__TITLE__", html.escape(title)).replace("__FAILED__", failures)
    page = page.replace("__ROWS__", page_data(rows))
    write_atomically(folder / PAGE, page.encode("utf-8"))
    return folder / PAGE
