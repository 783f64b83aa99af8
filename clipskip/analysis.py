"""How much each cell differs from its row's reference cell: a heat map, the mean absolute pixel difference and SSIM.

Pure numpy, scikit-image and PIL: no torch, no gradio.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .grid import draw_text, font, line_height, text_width

COLOURMAP = "magma"  # perceptually even, dark = no change, bright = most change


@dataclass
class Difference:
    heat: np.ndarray  # per-pixel absolute difference averaged over RGB, 0..255, shape (height, width)
    mean_abs_diff: float  # in 0..255 pixel units
    ssim: float  # structural similarity, 1 = identical


def difference(image: Image.Image, reference: Image.Image) -> Difference:
    from skimage.metrics import structural_similarity

    # float32: SSIM twice as fast as in float64, and the same to 7 digits (the metadata keeps 6)
    a = np.asarray(image.convert("RGB"), dtype=np.float32)
    b = np.asarray(reference.convert("RGB"), dtype=np.float32)
    heat = np.abs(a - b).mean(axis=2)
    if not heat.any():  # the reference cell itself, or a duplicate of it: SSIM is 1 by definition, and costly
        return Difference(heat, 0.0, 1.0)
    ssim = structural_similarity(a, b, channel_axis=2, data_range=255)  # 7x7 windows: images are at least 64 px
    return Difference(heat, float(heat.mean()), float(ssim))


def heat_scale(differences: list[Difference]) -> float:
    """One colour scale for a whole grid, so equal colours mean equal change: the 99th percentile, at least 1."""
    return max(1.0, max((float(np.percentile(d.heat, 99)) for d in differences), default=1.0))


def heat_image(heat: np.ndarray, vmax: float) -> Image.Image:
    from matplotlib import colormaps

    rgba = colormaps[COLOURMAP](np.clip(heat / vmax, 0, 1), bytes=True)
    return Image.fromarray(rgba[..., :3])


def colour_bar(width: int, vmax: float, size: int = 16) -> Image.Image:
    """A labelled strip: the colours from no difference to `vmax` (pixel units, 0..255)."""
    face = font(size)
    bar_h, gap = size, 4
    strip = heat_image(np.tile(np.linspace(0, vmax, max(2, width // 2)), (bar_h, 1)), vmax)
    labels = [  # the longest that fits: a grid of one or two small columns is narrower than the first
        f"absolute difference per pixel (mean of R, G, B; 0–255): 0 … {vmax:.0f} and above",
        f"difference per pixel (0–255): 0 … {vmax:.0f} and above",
        f"difference: 0 … {vmax:.0f}+",
    ]
    label = next((text for text in labels if text_width(text, face) <= width), labels[-1])
    canvas = Image.new("RGB", (width, bar_h + gap + line_height(face)), (255, 255, 255))
    canvas.paste(strip, (0, 0))
    draw_text(ImageDraw.Draw(canvas), (0, bar_h + gap), label, face, (90, 90, 90))
    return canvas
