"""The scene reader: it reads the generator's own pictures back exactly, which is what makes it a fair judge."""

from PIL import Image, ImageDraw

from clipskip.toy.detect import MIN_AREA, read_scene
from clipskip.toy.scenes import PALETTE, Scene, Shape, render_scene, sample_scenes


def test_reads_the_generators_pictures_back():
    for scene in sample_scenes(11, 300):
        reading = read_scene(render_scene(scene))
        assert reading.background == scene.background
        found = sorted((b.kind, b.colour, b.position) for b in reading.shapes)
        assert found == sorted((s.kind, s.colour, s.position) for s in scene.shapes), scene.caption


def test_every_kind_at_both_sizes():
    for kind in ("circle", "square", "triangle", "star"):
        for size in ("small", "large"):
            scene = Scene((Shape(kind, "black", size, "centre"),), "white", "")
            assert read_scene(render_scene(scene)).shapes[0].kind == kind


def test_specks_are_not_shapes_and_an_empty_picture_has_none():
    image = Image.new("RGB", (64, 64), PALETTE["green"])
    assert read_scene(image).shapes == () and read_scene(image).background == "green"
    ImageDraw.Draw(image).rectangle((10, 10, 13, 13), fill=PALETTE["red"])  # 16 pixels
    assert MIN_AREA > 16 and read_scene(image).shapes == ()
