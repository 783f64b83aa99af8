"""Scores for a sweep's cells, pluggable by name: each reads a cell's image and its prompt and gives a number, with
the readings behind it as extra columns of the results table.

- `shapes`: the built-in model's reading (`clipskip.toy.detect`): the share of what a full scene caption says
  (colour, shape, position, background; both colours for two shapes) that is read back from the cell, as
  `python -m clipskip.toy.score` counts it. Prompts that are not such a caption get no score.
"""

from collections.abc import Callable

from PIL import Image

from ..request import short_repr

SCORES = ("shapes",)
SHAPES_MEASURES = ("colour", "shape", "position", "background", "both colours", "two-shape background")


def shapes_score(prompt: str, image: Image.Image) -> dict:
    """`score` (0 to 1, the share of measures read right) and one `shapes: <measure>` column per measure (True,
    False, or None where the caption does not ask it); all None for a prompt that is not a full scene caption."""
    from ..toy.scenes import parse_caption
    from ..toy.score import Tally, judge

    columns = {"score": None, **{f"shapes: {measure}": None for measure in SHAPES_MEASURES}}
    scene = parse_caption(prompt)
    if scene is None:
        return columns
    tally = Tally()
    judge(scene, image, tally)
    for measure, (right, _) in tally.scored.items():
        columns[f"shapes: {measure}"] = bool(right)
    read = list(tally.scored.values())
    columns["score"] = sum(right for right, _ in read) / len(read)
    return columns


def scorer(name: str | None) -> Callable[[str, Image.Image], dict] | None:
    """The score function called `name` (one of SCORES), or None for none. Raises ValueError for another name."""
    if name is None:
        return None
    if name == "shapes":
        return shapes_score
    raise ValueError(f"score must be one of {', '.join(SCORES)} (or none), not {short_repr(name)}")
