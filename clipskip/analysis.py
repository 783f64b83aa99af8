"""How much each cell differs from its row's reference cell: a heat map, the mean absolute pixel difference and SSIM.

Pure numpy, scikit-image and PIL: no torch, no gradio.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .grid import draw_text, font, line_height, text_width

COLOURMAP = "magma"  # perceptually even, dark = no change, bright = most change
WINDOW = 7  # scikit-image's default SSIM window (7x7 pixels, uniform weights): images must be at least this large
_cells = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="clipskip-ssim")  # cells at once


@dataclass
class Difference:
    heat: np.ndarray  # per-pixel absolute difference averaged over RGB, 0..255, float32, shape (height, width)
    mean_abs_diff: float  # in 0..255 pixel units
    ssim: float  # structural similarity, 1 = identical


def differences(images: list[Image.Image], reference: Image.Image) -> list[Difference]:
    """Each of `images` against `reference` (all the same size, at least 7×7 px, any mode; compared as 8-bit RGB).

    The heat map is each pixel's absolute difference averaged over R, G and B (float32, 0..255); the mean absolute
    difference its mean over every pixel, exactly. SSIM is scikit-image's `structural_similarity(image, reference,
    channel_axis=2, data_range=255)` (7×7 uniform windows, sample covariance, K1 = 0.01, K2 = 0.03), on float32
    pixels, one cell per thread; an image equal to the reference has SSIM 1 without computing it. Raises ValueError
    when the sizes differ or an image is smaller than 7×7."""
    y = np.asarray(reference.convert("RGB"))
    cells = [np.asarray(image.convert("RGB")) for image in images]
    if any(x.shape != y.shape for x in cells) or min(y.shape[:2]) < WINDOW:
        sizes = ", ".join(f"{image.width}×{image.height}" for image in images)
        raise ValueError(
            f"need images of one size, at least {WINDOW}×{WINDOW}, like the reference's "
            f"{reference.width}×{reference.height}; got {sizes}"
        )
    results = []
    for x in cells:
        channels = np.abs(x.astype(np.int16) - y)
        total = channels[..., 0] + channels[..., 1] + channels[..., 2]  # exact, at most 765
        results.append(
            Difference(total.astype(np.float32) / 3, int(total.sum(dtype=np.int64)) / (3 * total.size), 1.0)
        )
    changed = [k for k, d in enumerate(results) if d.mean_abs_diff > 0]  # identical images: SSIM 1 by definition
    reference_pixels = y.astype(np.float32)  # float32: twice as fast as float64, the same to the 6 digits kept
    for k, ssim in zip(changed, _cells.map(lambda k: ssim_of(cells[k], reference_pixels), changed), strict=True):
        results[k].ssim = ssim
    return results


def ssim_of(image: np.ndarray, reference: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(image.astype(np.float32), reference, channel_axis=2, data_range=255))


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
