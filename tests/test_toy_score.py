"""The scorer: perfect pictures score 100 %, the table and the target check say what they measured."""

from clipskip.toy.scenes import Scene, Shape, render_scene, sample_scenes
from clipskip.toy.score import TARGETS, Tally, judge, misses, score, table


def test_the_generators_own_pictures_score_full_marks():
    tally = Tally()
    for scene in sample_scenes(2, 60, two_shapes=0.5, mention=1.0):
        judge(scene, render_scene(scene), tally)
    rates = tally.rates()
    assert set(rates) == {"colour", "shape", "position", "background", "both colours", "two-shape background"}
    assert all(rate == 1.0 for rate in rates.values())


def test_a_wrong_picture_scores_zero_and_a_half_right_one_half():
    asked = Scene((Shape("circle", "red", "large", "centre"),), "blue", "a large red circle in the centre, on ...")
    drawn = Scene((Shape("square", "green", "large", "centre"),), "yellow", "")
    tally = Tally()
    judge(asked, render_scene(drawn), tally)
    judge(asked, render_scene(Scene((Shape("square", "red", "large", "left"),), "blue", "")), tally)
    assert tally.rates() == {"colour": 0.5, "shape": 0.0, "position": 0.5, "background": 0.5}


def test_table_and_targets():
    rates = {1: {"colour": 0.95, "shape": 0.5, "background": 1.0, "both colours": 0.61}, 2: dict.fromkeys(TARGETS, 0)}
    text = table(rates)
    assert text.splitlines()[0] == "| CLIP skip | colour | shape | background | both colours |"
    assert "| 1 | 95 % | 50 % | 100 % | 61 % |" in text and "| 2 | 0 % | 0 % | 0 % | 0 % |" in text
    assert misses(rates[1]) == ["shape 50 % < 80 %"]


def test_scoring_a_model_reads_every_cell(pipe):
    rates = score(pipe, skips=[1, 3], count=2, steps=2)
    assert list(rates) == [1, 3]
    for by_measure in rates.values():
        assert set(by_measure) == {"colour", "shape", "position", "background", "both colours", "two-shape background"}
        assert all(0.0 <= rate <= 1.0 for rate in by_measure.values())
