"""The scorer: perfect pictures score 100 %, the table and the target check say what they measured."""

import numpy as np

from clipskip.toy import score as score_module
from clipskip.toy.scenes import Scene, Shape, render_scene, sample_scenes
from clipskip.toy.score import PROMPT_SEED, TARGETS, Tally, judge, misses, score, table


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


def test_scoring_a_model_reads_every_cell(pipe, monkeypatch):
    judged = []  # (prompt, image, tally) for every reading
    real = score_module.judge
    monkeypatch.setattr(
        score_module, "judge", lambda s, image, t: judged.append((s.caption, image, t)) or real(s, image, t)
    )
    rates = score(pipe, skips=[1, 3], count=2, steps=2)
    assert list(rates) == [1, 3]
    prompts = sample_scenes(PROMPT_SEED, 2, two_shapes=0.0, mention=1.0)
    prompts += sample_scenes(PROMPT_SEED + 1, 2, two_shapes=1.0, mention=1.0)
    tallies = list({id(tally): tally for *_, tally in judged}.values())  # one per skip, in the skips' order
    assert len(tallies) == 2
    for skip, tally in zip(rates, tallies, strict=True):
        assert sorted(caption for caption, _, t in judged if t is tally) == sorted(s.caption for s in prompts)
        assert {measure: read for measure, (_, read) in tally.scored.items()} == {
            "colour": 2,
            "shape": 2,
            "position": 2,
            "background": 2,
            "both colours": 2,
            "two-shape background": 2,
        }
        assert rates[skip] == tally.rates()
    skip_1, skip_3 = ([image for _, image, t in judged if t is tally] for tally in tallies)
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(skip_1, skip_3, strict=True))
