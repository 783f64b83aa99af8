"""Reading a picture back into a scene: background colour, and each shape's colour, kind and place.

A hand-made detector, checked against the scene generator's own pictures (it reads those right; see the tests):
every pixel takes the nearest palette colour, the border's commonest colour is the background, and each connected
patch of other colours is a shape whose kind follows from how much of its bounding box and of its convex hull it
fills. Pure image code: numpy and scikit-image.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.measure import label, regionprops

from .scenes import COLOURS, PALETTE, POSITIONS, SIZE

MIN_AREA = 20  # pixels: smaller patches are specks, not shapes (a small shape covers 70 or more)


@dataclass(frozen=True)
class Blob:
    kind: str
    colour: str
    position: str
    area: int


@dataclass(frozen=True)
class Reading:
    background: str
    shapes: tuple[Blob, ...]  # largest first


def kind_of(extent: float, solidity: float) -> str:
    """extent: area / bounding box; solidity: area / convex hull. A star's points leave its hull half empty."""
    if solidity < 0.8:
        return "star"
    if extent > 0.88:
        return "square"
    return "circle" if extent > 0.66 else "triangle"


def nearest_colours(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32)
    palette = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)
    return np.argmin(((pixels[:, :, None, :] - palette) ** 2).sum(-1), axis=-1)


def read_scene(image: Image.Image) -> Reading:
    colours = nearest_colours(image)
    border = np.concatenate([colours[0], colours[-1], colours[:, 0], colours[:, -1]])
    background = np.bincount(border, minlength=len(COLOURS)).argmax()
    blobs = []
    for region in regionprops(label(colours != background, connectivity=1)):
        if region.area < MIN_AREA:
            continue
        inside = colours[region.coords[:, 0], region.coords[:, 1]]
        y, x = region.centroid
        position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - x) ** 2 + (POSITIONS[p][1] - y) ** 2)
        colour = COLOURS[np.bincount(inside, minlength=len(COLOURS)).argmax()]
        blobs.append(Blob(kind_of(region.extent, region.solidity), colour, position, int(region.area)))
    blobs.sort(key=lambda b: -b.area)
    return Reading(COLOURS[background], tuple(blobs))
