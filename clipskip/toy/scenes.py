"""Procedural shape scenes and their captions: the embedded model's whole training set, drawn from a seed.

A scene is one or two flat-coloured shapes on a flat background, 64x64 pixels. Captions come from a small grammar
("a small red circle on the left and a blue square on the right, on a yellow background"); a caption may leave out a
size or a position, and the picture then picks one at random, as captions in real data leave things out.
Pure image code: numpy and PIL only.
"""

import difflib
import math
import re
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64  # pixels, square
PALETTE = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "orange": (245, 140, 30),
    "purple": (140, 60, 180),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "star")
SIZES = {"small": 10, "large": 14}  # radius in pixels
POSITIONS = {"left": (17, 32), "right": (47, 32), "top": (32, 17), "bottom": (32, 47), "centre": (32, 32)}
PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
PHRASES["centre"] = "in the centre"
PAIRS = (("left", "right"), ("top", "bottom"))  # two shapes never overlap
SUPERSAMPLE = 4  # drawn large and scaled down, so edges are smooth like a photo's


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: str
    caption: str


def sample_scene(rng: np.random.Generator, two_shapes: float = 0.5, mention: float = 0.75) -> Scene:
    """A random scene and its caption; `mention` is the chance that a size or a position is written down."""
    count = 2 if rng.random() < two_shapes else 1
    colours = rng.choice(len(COLOURS), size=count + 1, replace=False)  # background and shapes all differ
    background, shape_colours = COLOURS[colours[0]], [COLOURS[i] for i in colours[1:]]
    positions = list(PAIRS[rng.integers(len(PAIRS))]) if count == 2 else [tuple(POSITIONS)[rng.integers(5)]]
    if count == 2 and rng.random() < 0.5:
        positions.reverse()  # either shape may come first in the caption
    shapes, phrases = [], []
    for colour, position in zip(shape_colours, positions, strict=True):
        shape = Shape(SHAPES[rng.integers(len(SHAPES))], colour, tuple(SIZES)[rng.integers(2)], position)
        shapes.append(shape)
        size = f"{shape.size} " if rng.random() < mention else ""
        where = f" {PHRASES[position]}" if rng.random() < mention else ""
        phrases.append(f"{article(size + colour)} {size}{colour} {shape.kind}{where}")
    caption = " and ".join(phrases) + f", on {article(background)} {background} background"
    return Scene(tuple(shapes), background, caption)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


NEAR_MISSES = ("kind", "colour", "swap")  # what a twin changes: a shape's kind or colour, or two shapes' colours


def twin(rng: np.random.Generator, scene: Scene, change: str = "kind") -> Scene:
    """The same scene and caption with one thing changed, a near miss for contrastive learning to tell apart: a
    circle and a square of one colour at one place differ only at their corners, and "a red circle and a blue square"
    from "a blue circle and a red square" only in which colour goes where. A one-shape scene's swap changes a colour.
    """
    shapes, phrases = list(scene.shapes), scene.caption.split(" and ")  # a phrase per shape, in order
    index = rng.integers(len(shapes))
    if change == "kind":
        kind = [k for k in SHAPES if k != shapes[index].kind][rng.integers(len(SHAPES) - 1)]
        phrases[index] = re.sub(rf"\b{shapes[index].kind}\b", kind, phrases[index])
        shapes[index] = replace(shapes[index], kind=kind)
        return Scene(tuple(shapes), scene.background, " and ".join(phrases))
    if change == "swap" and len(shapes) == 2:
        new = {0: shapes[1].colour, 1: shapes[0].colour}
    else:
        taken = {scene.background, *(s.colour for s in shapes)}
        free = [c for c in COLOURS if c not in taken]
        new = {index: free[rng.integers(len(free))]}
    for i, colour in new.items():
        rest = re.sub(rf"\b{shapes[i].colour}\b", colour, phrases[i].split(" ", 1)[1], count=1)
        phrases[i] = f"{article(rest)} {rest}"  # "a red" but "an orange"
        shapes[i] = replace(shapes[i], colour=colour)
    return Scene(tuple(shapes), scene.background, " and ".join(phrases))


_WORDS = {"colour": "|".join(COLOURS), "kind": "|".join(SHAPES), "size": "|".join(SIZES)}
_PHRASE = "an? ({size}) ({colour}) ({kind}) ({where})".format(**_WORDS, where="|".join(PHRASES.values()))
CAPTION = re.compile(rf"{_PHRASE}(?: and {_PHRASE})?, on an? ({_WORDS['colour']}) background")
_PLACES = {phrase: place for place, phrase in PHRASES.items()}


def parse_caption(caption: str) -> Scene | None:
    """The scene a caption written in full describes (every shape's size and position said, as the scored prompts
    are: `sample_scene(..., mention=1.0)`); None for any other text. One regular-expression match: linear time."""
    match = CAPTION.fullmatch(caption)
    if match is None:
        return None
    groups = match.groups()
    shapes = [
        Shape(kind, colour, size, _PLACES[where])
        for size, colour, kind, where in (groups[0:4], groups[4:8])
        if kind is not None
    ]
    if len({groups[-1], *(shape.colour for shape in shapes)}) != len(shapes) + 1:
        return None  # the grammar never paints two things one colour: not one of its scenes
    return Scene(tuple(shapes), groups[-1], caption)


def sample_scenes(seed: int, count: int, **kwargs) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, **kwargs) for _ in range(count)]


def outline(kind: str, centre: tuple[float, float], radius: float) -> list[tuple[float, float]] | None:
    """The polygon of a shape (None for a circle), pointing up."""
    x, y = centre
    if kind == "square":
        r = radius * 0.85  # the same area as the circle, roughly, so size reads the same across shapes
        return [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
    if kind == "triangle":
        return [(x + radius * math.sin(a), y - radius * math.cos(a)) for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
    if kind == "star":
        points = []
        for i in range(10):
            r = radius if i % 2 == 0 else radius * 0.42
            a = i * math.pi / 5
            points.append((x + r * math.sin(a), y - r * math.cos(a)))
        return points
    return None


def render_scene(scene: Scene) -> Image.Image:
    """The picture of a scene, RGB, SIZE x SIZE."""
    big = SIZE * SUPERSAMPLE
    image = Image.new("RGB", (big, big), PALETTE[scene.background])
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        x, y = POSITIONS[shape.position]
        centre, radius = (x * SUPERSAMPLE, y * SUPERSAMPLE), SIZES[shape.size] * SUPERSAMPLE
        polygon = outline(shape.kind, centre, radius)
        if polygon is None:
            draw.ellipse(
                [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius],
                fill=PALETTE[shape.colour],
            )
        else:
            draw.polygon(polygon, fill=PALETTE[shape.colour])
    return image.resize((SIZE, SIZE), Image.Resampling.BOX)


def scene_batch(scenes: list[Scene]) -> np.ndarray:
    """Pictures as float32 in [-1, 1], (count, 3, SIZE, SIZE): what the autoencoder reads."""
    pixels = np.stack([np.asarray(render_scene(s)) for s in scenes]).astype(np.float32)
    return (pixels / 127.5 - 1.0).transpose(0, 3, 1, 2)


# every word a caption can hold: the built-in model knows these and no others
WORDS = frozenset([*COLOURS, *SHAPES, *SIZES, *" ".join(PHRASES.values()).split(), "a", "an", "and", "background"])
WORD = re.compile(r"[^\W\d_]+")  # letters only: numbers, weights and punctuation are not words


def unknown_words_text(text: str) -> str:
    """`unknown_words` as the page and the command line say them: “fox”, “watercolr” (did you mean “watercolor”?);
    empty when every word is known."""
    return ", ".join(
        f"“{word}”" + (f" (did you mean “{near}”?)" if near else "") for word, near in unknown_words(text)
    )


def unknown_words(text: str, limit: int = 5) -> list[tuple[str, str | None]]:
    """The words of `text` that no caption holds, each with the nearest one that does (None when none is near), in
    order, each once, at most `limit`. Linear in the text; each lookup compares against a few dozen words."""
    unknown: dict[str, str | None] = {}
    for match in WORD.finditer(text.lower()):
        word = match[0][:40]  # a longer run of letters is no word either; it is shown cut
        if word not in WORDS and word not in unknown and word != "break":  # BREAK is syntax, not a word
            near = difflib.get_close_matches(word, WORDS, n=1, cutoff=0.7)
            unknown[word] = near[0] if near else None
            if len(unknown) == limit:
                break
    return list(unknown.items())
