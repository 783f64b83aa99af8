"""How much each cell differs from its row's reference cell: a heat map, the mean absolute pixel difference and SSIM.

Pure numpy and PIL: no torch, no gradio. SSIM is scikit-image's definition, computed here from exact integer window
sums (see `ssim_sums`); the tests hold it to scikit-image's own result.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .grid import draw_text, font, line_height, text_width

COLOURMAP = "magma"  # perceptually even, dark = no change, bright = most change
WINDOW = 7  # scikit-image's default SSIM window: 7x7 pixels, uniform weights
K1, K2, DATA_RANGE = 0.01, 0.03, 255  # its default constants, for 8-bit pixels
BAND_ROWS = 64  # rows of windows per task: a band's arrays stay in the CPU cache, and the bands share the cores
_bands = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="clipskip-ssim")  # numpy frees the GIL


@dataclass
class Difference:
    heat: np.ndarray  # per-pixel absolute difference averaged over RGB, 0..255, float32, shape (height, width)
    mean_abs_diff: float  # in 0..255 pixel units
    ssim: float  # structural similarity, 1 = identical


def differences(images: list[Image.Image], reference: Image.Image) -> list[Difference]:
    """Each of `images` against `reference` (all the same size, at least 7×7 px, any mode; compared as 8-bit RGB).

    The heat map is each pixel's absolute difference averaged over R, G and B (float32, 0..255); the mean absolute
    difference its mean over every pixel, exactly; SSIM is mean structural similarity as scikit-image's
    `structural_similarity(image, reference, channel_axis=2, data_range=255)` defines it: 7×7 uniform windows, sample
    covariance, K1 = 0.01, K2 = 0.03, averaged over every window inside the image and over the three channels. It is
    computed from exact integer sums, so it equals scikit-image's float64 result to about 1e-15, and an image equal to
    the reference has SSIM 1 without computing it. Bands of rows run in parallel threads. Raises ValueError when the
    sizes differ or an image is smaller than 7×7."""
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
    rows = y.shape[0] - WINDOW + 1
    bands = [(top, min(top + BAND_ROWS, rows)) for top in range(0, rows, BAND_ROWS)]
    sums = list(_bands.map(lambda band: ssim_sums([cells[k] for k in changed], y, *band), bands))
    windows = rows * (y.shape[1] - WINDOW + 1) * 3
    for i, k in enumerate(changed):
        results[k].ssim = float(sum(band[i] for band in sums) / windows)
    return results


def window_sums(x: np.ndarray) -> np.ndarray:
    """Sums of `x` (height, width, channels) over every 7×7 window lying inside it, shape (height - 6, width - 6,
    channels): sums of 2, 4, then 4 + 2 + 1 rows, and the same along columns."""
    s2 = x[:-1] + x[1:]
    s4 = s2[:-2] + s2[2:]
    x = s4[:-3] + s2[4:-1] + x[6:]
    s2 = x[:, :-1] + x[:, 1:]
    s4 = s2[:, :-2] + s2[:, 2:]
    return s4[:, :-3] + s2[:, 4:-1] + x[:, 6:]


def ssim_sums(cells: list[np.ndarray], y: np.ndarray, top: int, bottom: int) -> list[float]:
    """The SSIM of each window whose top row is in top..bottom - 1, summed, for each of `cells` against `y` (8-bit
    arrays of one shape (height, width, 3)).

    With n = 49 pixels and the window's integer sums Sx, Sy, Sxx, Syy, Sxy, scikit-image's per-window SSIM
    ((2 ux uy + C1)(2 vxy + C2)) / ((ux² + uy² + C1)(vx + vy + C2)), means u = S / n and sample (co)variances
    v = (n Sxy - Sx Sy) / (n (n - 1)), is the ratio below, both sides multiplied by n² (n - 1): every term but the
    constants is an integer (at most 49² · 255² · 2 < 2³¹), so only the last products and the division round."""
    n = WINDOW * WINDOW
    c1, c2 = n * n * (K1 * DATA_RANGE) ** 2, n * (n - 1) * (K2 * DATA_RANGE) ** 2
    y = y[top : bottom + WINDOW - 1].astype(np.int32)
    sy, syy = window_sums(y), window_sums(y * y)
    sy2 = sy * sy
    totals = []
    for x in cells:
        x = x[top : bottom + WINDOW - 1].astype(np.int32)
        sx, sxx, sxy = window_sums(x), window_sums(x * x), window_sums(x * y)
        sxsy, sx2 = sx * sy, sx * sx
        numerator = (2 * sxsy + c1) * (2 * (n * sxy - sxsy) + c2)
        denominator = (sx2 + sy2 + c1) * (n * (sxx + syy) - sx2 - sy2 + c2)
        totals.append(float((numerator / denominator).sum()))
    return totals


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
