"""Heat maps and metrics on synthetic images whose answers are known, and against scikit-image's SSIM."""

import numpy as np
import pytest
from PIL import Image

from clipskip.analysis import colour_bar, differences, heat_image, heat_scale


def noise(seed: int, size=(64, 64)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def difference(image: Image.Image, reference: Image.Image):
    return differences([image], reference)[0]


def test_identical_images_differ_by_nothing():
    image = noise(0)
    same = difference(image, image.copy())
    assert same.mean_abs_diff == 0.0 and same.ssim == pytest.approx(1.0)
    assert same.heat.shape == (64, 64) and not same.heat.any()


def test_a_uniform_shift_is_measured_exactly():
    base = np.full((64, 64, 3), 100, dtype=np.uint8)
    shifted = base.copy()
    shifted[:, :, 0] += 30  # red channel only: 30 / 3 = 10 per pixel on average over RGB
    result = difference(Image.fromarray(shifted), Image.fromarray(base))
    assert result.mean_abs_diff == pytest.approx(10.0)
    assert np.allclose(result.heat, 10.0)


def test_unrelated_images_have_low_ssim_and_a_change_shows_where_it_is():
    assert difference(noise(1), noise(2)).ssim < 0.1
    base = np.zeros((64, 64, 3), dtype=np.uint8)
    patched = base.copy()
    patched[10:20, 30:40] = 255
    heat = difference(Image.fromarray(patched), Image.fromarray(base)).heat
    assert heat[10:20, 30:40].min() == 255 and heat.sum() == 255 * 100


def test_heat_images_share_one_scale_and_run_dark_to_bright():
    small = difference(noise(3), noise(3))
    big = difference(noise(4), noise(5))
    vmax = heat_scale([small, big])
    assert vmax == pytest.approx(np.percentile(big.heat, 99))
    assert heat_scale([small]) == 1.0  # never zero, so an all-equal grid still draws
    ramp = heat_image(np.array([[0.0, vmax / 2, vmax, 2 * vmax]]), vmax)
    brightness = np.asarray(ramp).astype(int).sum(axis=2)[0]
    assert brightness[0] < brightness[1] < brightness[2] == brightness[3]  # clipped at vmax


# The full label is about 590 px long at size 16; a narrower bar (a grid of one or two 256 px columns) says it shorter
@pytest.mark.parametrize("width", [640, 300, 160])
def test_colour_bar_is_labelled_with_its_scale_and_as_wide_as_asked(width):
    bar, other = colour_bar(width, 12.0), colour_bar(width, 80.0)
    assert bar.width == width and bar.size == other.size
    strip, label = np.asarray(bar)[:16].astype(int), np.asarray(bar)[16:].astype(int)
    assert strip[:, 0].sum() < strip[:, -1].sum()  # dark at no difference, bright at vmax
    assert (label.sum(axis=2) < 3 * 200).sum() > 50  # text drawn under the strip
    assert not np.array_equal(label, np.asarray(other)[16:])  # the label names the scale


def smooth(seed: int, size: tuple[int, int]) -> np.ndarray:
    """Noise blurred into blobs, like a rendered image: SSIM near 1 against a nearby one, where rounding shows."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[0] // 8 + 2, size[1] // 8 + 2, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size[1], size[0]), Image.BICUBIC))


# The smallest size, odd sizes, other modes: SSIM as scikit-image computes it in float64 (this app calls it in
# float32: within a unit of the 6th digit, the metadata's last), the heat map as numpy averages the channels in
# float32, and the mean absolute difference as an exact fraction.
@pytest.mark.parametrize("size", [(7, 7), (64, 64), (141, 75)])
def test_metrics_equal_an_independent_computation_of_their_definitions(size):
    from fractions import Fraction

    from skimage.metrics import structural_similarity

    reference = smooth(0, size)
    rng = np.random.default_rng(1)
    cells = [
        reference,
        np.clip(reference.astype(int) + rng.integers(-3, 4, reference.shape), 0, 255).astype(np.uint8),
        smooth(2, size),
        rng.integers(0, 256, reference.shape, dtype=np.uint8),
    ]
    images = [Image.fromarray(cell) for cell in cells[:3]] + [Image.fromarray(cells[3]).convert("L")]
    cells[3] = np.asarray(images[3].convert("RGB"))  # compared as RGB, whatever the mode
    found = differences(images, Image.fromarray(reference))
    for cell, result in zip(cells, found, strict=True):
        a, b = cell.astype(np.float64), reference.astype(np.float64)
        ssim = structural_similarity(a, b, channel_axis=2, data_range=255)
        assert abs(result.ssim - ssim) < 1e-6
        heat = np.abs(cell.astype(np.float32) - reference.astype(np.float32)).mean(axis=2)
        assert result.heat.dtype == np.float32 and np.array_equal(result.heat, heat)
        exact = Fraction(int(np.abs(cell.astype(int) - reference.astype(int)).sum()), cell.size)
        assert result.mean_abs_diff == float(exact)
    assert found[0].ssim == 1.0 and found[0].mean_abs_diff == 0.0 and found[1].ssim > found[2].ssim > found[3].ssim


def test_images_of_another_size_or_under_a_window_are_refused():
    with pytest.raises(ValueError, match="need images of one size, at least 7×7, like the reference's 64×64; got"):
        differences([noise(0), noise(1, (64, 32))], noise(2))
    with pytest.raises(ValueError, match="at least 7×7"):
        differences([noise(0, (6, 6))], noise(1, (6, 6)))
