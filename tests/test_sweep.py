"""Sweeps: every (prompt, seed) at every skip, each cell its own solo render, kept in a folder that a rerun continues
cell by cell, with a results table in Parquet and CSV."""

import csv
import json
import re
import shutil

import numpy as np
import pyarrow.parquet
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipskip import comparison
from clipskip.__main__ import main
from clipskip.sweep import run as sweep_run
from clipskip.sweep import sweep
from clipskip.sweep.plan import cell_path, drawn_seeds, plan
from clipskip.sweep.table import write_table
from clipskip.toy.scenes import parse_caption, sample_scenes
from clipskip.toy.score import Tally, judge

TINY = {"skips": [1, 2], "steps": 1, "width": 64, "height": 64, "device": "cpu", "progress": False}
SCENES = [s.caption for s in sample_scenes(31, 2, two_shapes=0.5, mention=1.0)]


def counted(monkeypatch) -> list[tuple[str, int, list]]:
    """The (prompt, seed, skips) of every `compare` call from here on."""
    calls, real = [], comparison.compare

    def spy(pipe, prompt, **kwargs):
        calls.append((prompt, kwargs["seed"], list(kwargs["skips"])))
        return real(pipe, prompt, **kwargs)

    monkeypatch.setattr(comparison, "compare", spy)
    return calls


def test_every_cell_is_its_solo_render_with_its_row_in_parquet_and_csv(pipe, tmp_path):
    result = sweep(tmp_path, ["a red fox", SCENES[0]], seeds=[3, 4], score="shapes", **TINY)
    table = pyarrow.parquet.read_table(result.table[0]).to_pylist()
    assert result.cells == len(table) == 8 and result.outcome.rendered == 8
    with open(result.table[1], newline="", encoding="utf-8") as f:
        assert [row["file"] for row in csv.DictReader(f)] == [row["file"] for row in table]
    assert [(r["prompt_index"], r["seed"], r["skip"]) for r in table] == [
        (p, s, k) for p in (0, 1) for s in (3, 4) for k in ("1", "2")
    ]
    for row in table:
        alone = comparison.compare(
            pipe, row["prompt"], seed=row["seed"], skips=[int(row["skip"])], steps=1, width=64, height=64
        )
        cell = Image.open(tmp_path / row["file"])
        assert np.array_equal(np.asarray(cell), np.asarray(alone.rows[0].images[int(row["skip"])]))
        assert {f"Clip skip: {row['skip']}", f"Seed: {row['seed']}"} <= set(cell.info["parameters"].split(", "))
        assert row["weights_sha256"] and row["layers"] == f"layer {13 - int(row['skip'])} of 12"
    fox, scene = table[0], table[4]
    assert fox["score"] is None and 0 <= scene["score"] <= 1  # only a full scene caption is scored
    assert (fox["ssim"], fox["mean_abs_diff"]) == (1.0, 0.0)  # skip 1 is the embedded model's native: the reference


def test_the_shapes_score_through_a_sweep_gives_the_toy_scores_table_back(pipe, tmp_path):
    from clipskip.sweep.scores import shapes_rates
    from clipskip.toy.score import SCORE_SEED, score, scored_scenes

    prompts = [scene.caption for scene in scored_scenes(2)]
    result = sweep(tmp_path, prompts, seeds=[SCORE_SEED], score="shapes", **TINY | {"skips": [1, 3], "steps": 2})
    rows = pyarrow.parquet.read_table(result.table[0]).to_pylist()
    assert shapes_rates(rows) == {str(skip): rates for skip, rates in score(pipe, [1, 3], 2, steps=2).items()}


def test_the_shapes_score_reads_each_cell_as_the_toy_score_does(pipe, tmp_path):
    result = sweep(tmp_path, SCENES, seeds=[5], score="shapes", **TINY)
    for row in pyarrow.parquet.read_table(result.table[0]).to_pylist():
        tally = Tally()
        judge(parse_caption(row["prompt"]), Image.open(tmp_path / row["file"]).convert("RGB"), tally)
        assert {m: row[f"shapes: {m}"] for m in tally.scored} == {m: bool(r) for m, (r, _) in tally.scored.items()}
        assert row["score"] == pytest.approx(sum(r for r, _ in tally.scored.values()) / len(tally.scored))


def test_a_rerun_renders_only_missing_cells_against_the_same_reference(pipe, tmp_path, monkeypatch):
    first = sweep(tmp_path, ["a red fox", "a blue bird"], seeds=[1, 2], **TINY)
    before = pyarrow.parquet.read_table(first.table[0]).to_pylist()
    gone = before[5]  # prompt 1, seed 1, skip 2: its unit keeps skip 1, the reference
    (tmp_path / gone["file"]).unlink()
    calls = counted(monkeypatch)
    again = sweep(tmp_path, ["a red fox", "a blue bird"], seeds=[1, 2], **TINY)
    assert calls == [("a blue bird", 1, [2, 1])]  # the missing cell, and the reference to measure it against
    assert (again.outcome.rendered, again.outcome.found) == (1, 7)
    assert pyarrow.parquet.read_table(again.table[0]).to_pylist() == before
    calls.clear()
    sweep(tmp_path, ["a red fox", "a blue bird"], seeds=[1, 2], **TINY)
    assert calls == []


def test_a_sweep_stopped_mid_way_keeps_whole_units_and_a_rerun_finishes_it(pipe, tmp_path, monkeypatch):
    keep, units = sweep_run.keep, []

    def stop_after_two(folder, cells):
        if len(units) == 2:
            raise KeyboardInterrupt
        keep(folder, cells)
        units.append(cells)

    monkeypatch.setattr(sweep_run, "keep", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path, ["a red fox", "a blue bird"], seeds=[1, 2], **TINY)
    with open(tmp_path / sweep_run.JOURNAL, "a", encoding="utf-8") as journal:
        journal.write('{"file": "cells/cut sh')  # a line a stop cut short
    monkeypatch.setattr(sweep_run, "keep", keep)
    calls = counted(monkeypatch)
    result = sweep(tmp_path, ["a red fox", "a blue bird"], seeds=[1, 2], **TINY)
    assert calls == [("a blue bird", 1, [1, 2]), ("a blue bird", 2, [1, 2])]
    assert result.cells == 8 and result.outcome.found == 4


def test_drawn_seeds_are_kept_and_a_folder_never_mixes_two_sweeps(pipe, tmp_path, monkeypatch):
    first = sweep(tmp_path, ["a red fox"], seeds=[-1, 7], **TINY)
    seeds = json.loads((tmp_path / "sweep.json").read_text())["seeds"]
    assert seeds[1] == 7 and 0 <= seeds[0] < 2**32 and seeds[0] != 7
    calls = counted(monkeypatch)
    assert sweep(tmp_path, ["a red fox"], seeds=[-1, 7], **TINY).cells == first.cells and calls == []
    with pytest.raises(ValueError, match="holds a sweep with other steps; give another folder, or the same settings"):
        sweep(tmp_path, ["a red fox"], seeds=[-1, 7], **TINY | {"steps": 2})
    with pytest.raises(ValueError, match="holds a sweep with other prompts, seeds"):
        sweep(tmp_path, ["a red fox", "a cat"], seeds=[8], **TINY)
    assert len(set(drawn_seeds([-1] * 50))) == 50
    edited = tmp_path / "edited"
    for bad in (["7", 7], [True, 7], [2**40, 7], [-1, 7]):  # an edited sweep.json's seeds are drawn again
        edited.mkdir()
        (edited / "sweep.json").write_text(json.dumps({"seeds": bad}))
        sweep(edited, ["a red fox"], seeds=[-1, 7], **TINY | {"skips": [1]})
        again = json.loads((edited / "sweep.json").read_text())["seeds"]
        assert type(again[0]) is int and 0 <= again[0] < 2**32 and again[1] == 7
        shutil.rmtree(edited)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompts": "a fox"}, "prompts must be a list, not 'a fox'"),
        ({"prompts": []}, "give at least one of prompts"),
        ({"prompts": ["x"] * 10_001}, "prompts: at most 10,000, not 10,001"),
        ({"seeds": [1, 1]}, "seeds: 1 is listed twice"),
        ({"seeds": [2**40]}, "seed must be -1 \\(random\\) or 0 to 4294967295"),
        ({"models": ["embedded", "embedded"]}, "models: 'embedded' is listed twice"),
        ({"skips": [1, 13]}, "CLIP skip 13 is out of range"),
        ({"score": "clap"}, "score must be one of shapes"),
    ],
)
def test_bad_settings_are_refused_before_any_cell(pipe, tmp_path, monkeypatch, change, message):
    calls = counted(monkeypatch)
    settings = {"prompts": ["a fox"], "seeds": [1], **TINY} | change
    with pytest.raises(ValueError, match=message):
        sweep(tmp_path / "out", **settings)
    assert calls == []


def test_the_command_line_sweeps_a_prompts_file_and_lists_what_failed(pipe, tmp_path, capsys, monkeypatch):
    (tmp_path / "prompts.txt").write_text("a red fox\n\nbreaks\n", encoding="utf-8")
    real = comparison.compare

    def refuse_one(pipe, prompt, **kwargs):
        if prompt == "breaks":
            raise ValueError("the prompt's weights overflow its conditioning")
        return real(pipe, prompt, **kwargs)

    monkeypatch.setattr(comparison, "compare", refuse_one)
    argv = ["sweep", "--prompts-file", str(tmp_path / "prompts.txt"), "--seeds", "1,2", "--skips", "1,2"]
    argv += ["--steps", "1", "--width", "64", "--height", "64", "--device", "cpu", "--out", str(tmp_path / "s")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "warning: prompt 2 (prompt_index 1), seed 1: the prompt's weights overflow its conditioning" in captured.err
    assert "sweep: 4 cells rendered now, 0 found done, 2 comparisons failed; 4 cells in results" in captured.out
    errors = [json.loads(line) for line in (tmp_path / "s" / "errors.jsonl").read_text().splitlines()]
    assert [(e["prompt_index"], e["seed"]) for e in errors] == [(1, 1), (1, 2)]
    monkeypatch.setattr(comparison, "compare", real)
    assert main(argv) == 0  # the failed units are tried again, the done ones not
    assert "sweep: 4 cells rendered now, 4 found done, 0 comparisons failed" in capsys.readouterr().out


def test_plan_groups_units_by_model_and_cell_paths_never_collide():
    units = plan(["a", "b/c.safetensors"], ["p", "q"], [1, 2])
    assert [u.model for u in units] == ["a"] * 4 + ["b/c.safetensors"] * 4
    paths = {cell_path(u, skip) for u in units for skip in (1, 2, "L1/G2")}
    assert len(paths) == 24 and all("/" not in p.name for p in paths)
    assert cell_path(units[0], 1) != cell_path(plan(["other/a"], ["p"], [1])[0], 1)
    with pytest.raises(ValueError, match="at most 1,000,000: split it"):
        plan(["m"] * 2, ["p"] * 1000, list(range(501)))


def test_a_sweep_too_large_or_with_a_prompt_twice_is_refused_before_its_folder_is_made(tmp_path):
    prompts = [f"prompt {i}" for i in range(10_000)]  # the most a sweep takes; counted in linear time
    with pytest.raises(ValueError, match="1,010,000 comparisons .* at most 1,000,000: split it"):
        sweep(tmp_path / "big", prompts, seeds=list(range(101)), **TINY)
    with pytest.raises(ValueError, match="prompts: 'prompt 9' is listed twice"):
        sweep(tmp_path / "twice", prompts[:-1] + ["prompt 9"], seeds=[1], **TINY)
    assert not (tmp_path / "big").exists() and not (tmp_path / "twice").exists()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny CLIP model and its processor saved to a folder, as a user's local CLIP model would be."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from clipskip.embedded import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    size = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPConfig(
        text_config=size | {"vocab_size": len(tokenizer), "max_position_embeddings": 77},
        vision_config=size | {"image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("clip")
    CLIPModel(config).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_the_clip_score_is_the_cosine_of_image_and_prompt_embeddings_times_100(pipe, tmp_path, tiny_clip):
    from transformers import CLIPModel, CLIPProcessor

    result = sweep(tmp_path, ["a red fox"], seeds=[1], score="clip", clip_model=str(tiny_clip), **TINY)
    model, processor = CLIPModel.from_pretrained(tiny_clip), CLIPProcessor.from_pretrained(tiny_clip)
    for row in pyarrow.parquet.read_table(result.table[0]).to_pylist():
        inputs = processor(text=[row["prompt"]], images=[Image.open(tmp_path / row["file"]).convert("RGB")])
        with torch.no_grad():
            image = model.get_image_features(pixel_values=torch.as_tensor(np.asarray(inputs["pixel_values"])))
            text = model.get_text_features(input_ids=torch.as_tensor(inputs["input_ids"]))
        image, text = image.pooler_output, text.pooler_output  # the projected embeddings
        cosine = torch.nn.functional.cosine_similarity(image, text).item()
        assert row["score"] == pytest.approx(max(100 * cosine, 0), abs=1e-3)
    with pytest.raises(ValueError, match="the clip score's model '/nowhere' cannot be loaded"):
        sweep(tmp_path / "other", ["a red fox"], seeds=[1], score="clip", clip_model="/nowhere", **TINY)
    with pytest.raises(ValueError, match="the clip score needs a CLIP model"):
        sweep(tmp_path / "other", ["a red fox"], seeds=[1], score="clip", **TINY)
    with pytest.raises(ValueError, match="clip_model is for the clip score only"):  # not ignored without a word
        sweep(tmp_path / "other", ["a red fox"], seeds=[1], score="shapes", clip_model=str(tiny_clip), **TINY)


def test_fractional_columns_are_swept_like_whole_ones_and_named_in_their_canonical_text(pipe, tmp_path):
    result = sweep(tmp_path, ["a red fox"], seeds=[1], **TINY | {"skips": [1, 1.50]})
    rows = pyarrow.parquet.read_table(result.table[0]).to_pylist()
    assert [(row["skip"], row["file"].rsplit("/", 1)[1]) for row in rows] == [
        ("1", "skip-1.png"),
        ("1.5", "skip-1.5.png"),
    ]
    alone = comparison.compare(pipe, "a red fox", seed=1, skips=["1.5"], steps=1, width=64, height=64)
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / rows[1]["file"])), np.asarray(next(iter(alone.rows[0].images.values())))
    )
    assert rows[1]["layers"] == "between layers 12 and 11 of 12" and rows[1]["embedding_cosine"] is None
    with pytest.raises(ValueError, match="gives each CLIP text encoder its own layer"):
        sweep(tmp_path / "l", ["a red fox"], seeds=[1], **TINY | {"skips": ["L1/G2"]})
    (tmp_path / "fox.txt").write_text("a red fox\n", encoding="utf-8")
    argv = ["sweep", "--prompts-file", str(tmp_path / "fox.txt"), "--seeds", "1", "--skips", "1,1.5"]
    argv += ["--reference", "1.50", "--steps", "1", "--width", "64", "--height", "64", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0  # the reference in any notation `--skips` takes
    rows = pyarrow.parquet.read_table(tmp_path / "r" / "results.parquet").to_pylist()
    assert [(row["skip"], row["reference_skip"]) for row in rows] == [("1", "1.5"), ("1.5", "1.5")]
    assert rows[0]["ssim"] < rows[1]["ssim"] == 1.0


def test_cells_of_other_settings_are_never_taken_for_done_and_one_sweep_holds_a_folder(pipe, tmp_path, monkeypatch):
    from clipskip.sweep import hold

    sweep(tmp_path, ["a red fox"], seeds=[1], **TINY)
    (tmp_path / "sweep.json").unlink()  # the folder's settings gone: its rows still say which settings they are of
    calls = counted(monkeypatch)
    result = sweep(tmp_path, ["a red fox"], seeds=[1], **TINY | {"steps": 2})
    assert calls == [("a red fox", 1, [1, 2])] and result.outcome.found == 0
    assert {row["steps"] for row in pyarrow.parquet.read_table(result.table[0]).to_pylist()} == {2}
    held = hold(tmp_path)
    try:
        with pytest.raises(ValueError, match="is in use by another sweep; wait for it to end, or give another folder"):
            sweep(tmp_path, ["a red fox"], seeds=[1], **TINY | {"steps": 2})
    finally:
        held.close()
    with pytest.raises(ValueError, match="workers is the number of Ray workers: give ray too"):
        sweep(tmp_path, ["a red fox"], seeds=[1], workers=2, **TINY)
    with pytest.raises(ValueError, match="cannot reach the Ray cluster at '127.0.0.1:1'"):
        sweep(tmp_path, ["a red fox"], seeds=[1], ray="127.0.0.1:1", **TINY | {"steps": 2})


def test_a_prompts_file_is_read_as_an_editor_shows_its_lines(tmp_path):
    from clipskip.__main__ import read_prompts

    (tmp_path / "p.txt").write_bytes("\ufeffa red fox\r\na blue\u2028bird\n\n  a cat \n".encode())
    assert read_prompts(str(tmp_path / "p.txt"), 1000, 10) == ["a red fox", "a blue\u2028bird", "a cat"]


FORMULA_STARTS = "=+-@|%"  # OWASP's CSV injection advice, as defusedcsv applies it


def spreadsheet_safe(value) -> str:
    """The CSV text of a row's `value`, from the definition: empty for None; a text that starts like a formula and
    is not a number gets a `'` first and its `|` escaped; anything else as Python writes it."""
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, str) and text and text[0] in FORMULA_STARTS and not re.fullmatch(r"-?[0-9,.]+", text):
        return "'" + text.replace("|", "\\|")
    return text


@given(
    prompts=st.lists(
        st.one_of(
            st.text(max_size=40),
            st.sampled_from(['=HYPERLINK("http://x","click")', "+1+cmd|' /C calc'!A0", "-2", "@SUM(A1)", "%0a"]),
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_csv_shows_a_formula_like_prompt_as_text_and_parquet_keeps_it_exactly(prompts, tmp_path):
    """A prompts file from someone else may hold `=HYPERLINK(…)`: a spreadsheet opening results.csv ran it."""
    rows = [
        {"model": "-model", "prompt": prompt, "seed": -i, "ssim": 0.5 - i, "score": None, "file": f"p{i}.png"}
        for i, prompt in enumerate(prompts)
    ]
    parquet, written = write_table(tmp_path, rows)
    assert pyarrow.parquet.read_table(parquet).to_pylist() == rows
    with open(written, newline="", encoding="utf-8") as f:
        read = list(csv.reader(f))
    assert read == [list(rows[0])] + [[spreadsheet_safe(value) for value in row.values()] for row in rows]
    assert not any(cell and cell[0] in "=+@" for line in read for cell in line)  # nothing a spreadsheet would run
