"""Scores for a sweep's cells, pluggable by name: each reads a cell's image and its prompt and gives a number, with
the readings behind it as extra columns of the results table.

- `shapes`: the built-in model's reading (`clipskip.toy.detect`): the share of what a full scene caption says
  (colour, shape, position, background; both colours for two shapes) that is read back from the cell, as
  `python -m clipskip.toy.score` counts it. Prompts that are not such a caption get no score.
- `clip`: CLIP score (torchmetrics' `clip_score`: 100 · max(cos(image embedding, prompt embedding), 0), 0 to 100)
  with a CLIP model the user names: a Hub id or a local folder holding a transformers `CLIPModel` and its processor.
"""

from collections.abc import Callable

from PIL import Image

from ..request import short_repr

SCORES = ("shapes", "clip")
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


class ClipScore:
    """The `clip` score with the CLIP model at `model` (a Hub id or a folder), loaded once per process on first use;
    a Ray worker receives the name and loads its own copy."""

    def __init__(self, model: str):
        self.model, self.loaded = model, None

    def __getstate__(self) -> dict:
        return {"model": self.model, "loaded": None}

    def load(self):
        """(CLIPModel, CLIPProcessor), loaded on first use. Raises ValueError when `model` holds no CLIP model."""
        if self.loaded is None:
            from transformers import CLIPModel, CLIPProcessor

            try:
                model, processor = (
                    CLIPModel.from_pretrained(self.model).eval(),
                    CLIPProcessor.from_pretrained(self.model),
                )
                self.loaded = features_as_tensors(model), processor
            except (OSError, ValueError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ValueError(
                    f"the clip score's model {short_repr(self.model)} cannot be loaded ({short_repr(reason, 160)}); "
                    "give a Hub id or a folder with a CLIP model and its processor"
                ) from None
        return self.loaded

    def __call__(self, prompt: str, image: Image.Image) -> dict:
        import numpy as np
        import torch
        from torchmetrics.functional.multimodal import clip_score

        pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)  # (3, H, W), uint8
        with torch.no_grad():
            return {"score": round(clip_score(pixels, prompt, model_name_or_path=self.load).item(), 4)}


def features_as_tensors(model):
    """`model` (a transformers CLIPModel) with `get_image_features` and `get_text_features` giving the projected
    embeddings as tensors: transformers 5 returns them as an output's `pooler_output`, where torchmetrics 1.9's
    `clip_score` expects the tensor itself (and fails)."""
    import torch

    class Features(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

        def get_image_features(self, *args, **kwargs):
            return self.inner.get_image_features(*args, **kwargs).pooler_output

        def get_text_features(self, *args, **kwargs):
            return self.inner.get_text_features(*args, **kwargs).pooler_output

    return Features(model)


def shapes_rates(rows: list[dict]) -> dict[str, dict[str, float]]:
    """`python -m clipskip.toy.score`'s table from a sweep's rows: per skip (its text, in the rows' order), per
    measure, the share of the cells that ask it that were read right."""
    counts: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        by_measure = counts.setdefault(row["skip"], {})
        for measure in SHAPES_MEASURES:
            right = row.get(f"shapes: {measure}")
            if right is not None:
                tally = by_measure.setdefault(measure, [0, 0])
                tally[0] += int(right)
                tally[1] += 1
    return {skip: {m: right / read for m, (right, read) in measures.items()} for skip, measures in counts.items()}


def scorer(name: str | None, clip_model: str | None = None) -> Callable[[str, Image.Image], dict] | None:
    """The score function called `name` (one of SCORES), or None for none; `clip` needs `clip_model`, loaded here
    so that a model that cannot load stops the sweep before its first cell. Raises ValueError for another name or
    a missing or broken CLIP model, or a CLIP model given with another score."""
    if clip_model is not None and name != "clip":  # given for nothing: the visitor meant a clip score
        raise ValueError("clip_model is for the clip score only: give score clip (--score clip), or leave it out")
    if name is None:
        return None
    if name == "shapes":
        return shapes_score
    if name == "clip":
        if not isinstance(clip_model, str) or not 1 <= len(clip_model) <= 1000:
            raise ValueError("the clip score needs a CLIP model: a Hub id or a folder (--clip-model)")
        score = ClipScore(clip_model)
        score.load()
        return score
    raise ValueError(f"score must be one of {', '.join(SCORES)} (or none), not {short_repr(name)}")
