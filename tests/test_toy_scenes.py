"""The scene generator: the same seed draws the same scenes and pixels; captions say what the picture shows."""

import re
from dataclasses import replace

import numpy as np

from clipskip.toy.scenes import (
    COLOURS,
    PAIRS,
    PALETTE,
    SHAPES,
    SIZE,
    render_scene,
    sample_scenes,
    scene_batch,
    twin,
)


def test_the_same_seed_draws_the_same_scenes_and_pixels():
    first, again, other = sample_scenes(7, 50), sample_scenes(7, 50), sample_scenes(8, 50)
    assert first == again and first != other
    assert np.array_equal(scene_batch(first), scene_batch(again))


def test_captions_name_every_shape_and_the_background():
    for scene in sample_scenes(3, 300):
        assert scene.caption.endswith(f" {scene.background} background")
        for shape in scene.shapes:
            assert f"{shape.colour} {shape.kind}" in scene.caption
        assert " a orange" not in scene.caption and " a o" not in scene.caption  # "an orange"
        assert scene.background not in [s.colour for s in scene.shapes]


def test_two_shapes_differ_in_colour_and_sit_apart():
    twos = sample_scenes(4, 200, two_shapes=1.0)
    assert all(len(s.shapes) == 2 for s in twos)
    for scene in twos:
        a, b = scene.shapes
        assert a.colour != b.colour
        assert tuple(sorted((a.position, b.position))) in {tuple(sorted(p)) for p in PAIRS}


def test_every_word_of_the_grammar_is_drawn():
    scenes = sample_scenes(5, 400)
    assert {s.kind for scene in scenes for s in scene.shapes} == set(SHAPES)
    assert {scene.background for scene in scenes} == set(COLOURS)
    assert any("small" in s.caption for s in scenes) and any("at the bottom" in s.caption for s in scenes)
    assert any(len(s.shapes) == 1 and "large" not in s.caption and "small" not in s.caption for s in scenes)


def test_pictures_are_64_pixels_with_the_background_at_the_corners():
    scene = sample_scenes(9, 1)[0]
    image = render_scene(scene)
    assert image.size == (SIZE, SIZE)
    assert image.getpixel((0, 0)) == PALETTE[scene.background]
    batch = scene_batch([scene])
    assert batch.shape == (1, 3, SIZE, SIZE) and batch.dtype == np.float32
    assert batch.min() >= -1.0 and batch.max() <= 1.0


def test_a_twin_changes_one_shapes_kind_in_the_picture_and_the_caption_alone():
    rng = np.random.default_rng(0)
    for scene in sample_scenes(6, 200, two_shapes=0.5, mention=0.5):
        other = twin(rng, scene)
        changed = [i for i, (a, b) in enumerate(zip(scene.shapes, other.shapes, strict=True)) if a != b]
        assert len(changed) == 1 and other.background == scene.background
        before, after = scene.shapes[changed[0]], other.shapes[changed[0]]
        assert after.kind != before.kind and after == replace(before, kind=after.kind)
        assert other.caption.split() != scene.caption.split()
        words = [(a, b) for a, b in zip(scene.caption.split(), other.caption.split(), strict=True) if a != b]
        assert words == [(before.kind, after.kind)] or words == [(before.kind + ",", after.kind + ",")]
        assert not np.array_equal(np.asarray(render_scene(scene)), np.asarray(render_scene(other)))


def test_a_colour_twin_changes_one_shapes_colour_to_one_the_scene_lacks_and_keeps_the_grammar():
    rng = np.random.default_rng(1)
    for scene in sample_scenes(7, 200, two_shapes=0.5, mention=0.5):
        other = twin(rng, scene, "colour")
        changed = [i for i, (a, b) in enumerate(zip(scene.shapes, other.shapes, strict=True)) if a != b]
        assert len(changed) == 1
        before, after = scene.shapes[changed[0]], other.shapes[changed[0]]
        assert after == replace(before, colour=after.colour)
        assert after.colour not in {scene.background, *(s.colour for s in scene.shapes)}
        assert f"{after.colour} {after.kind}" in other.caption
        assert not re.search(r"\ba [aeiou]|\ban [^aeiou]", other.caption)  # "an orange", "a red"


def test_a_swap_twin_exchanges_the_two_shapes_colours_in_picture_and_caption():
    rng = np.random.default_rng(2)
    for scene in sample_scenes(8, 100, two_shapes=1.0):
        other = twin(rng, scene, "swap")
        (a, b), (a2, b2) = scene.shapes, other.shapes
        assert (a2, b2) == (replace(a, colour=b.colour), replace(b, colour=a.colour))
        blank = rf"\ban?\b|\b({a.colour}|{b.colour})\b"  # both colours and the articles before them
        assert re.sub(blank, "?", other.caption) == re.sub(blank, "?", scene.caption)
        assert f"{b.colour} {a.kind}" in other.caption and f"{a.colour} {b.kind}" in other.caption
        assert not re.search(r"\ba [aeiou]|\ban [^aeiou]", other.caption)
