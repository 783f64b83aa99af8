"""The command line writes the grid, one PNG per skip and comparison.json; bad input is a short error, exit 2."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, PngImagePlugin

from clipskip import loading, outputs
from clipskip.__main__ import MAX_PROMPTS_FILE_BYTES, main
from clipskip.settings import cli_parser

TINY_CLI = ["--skips", "1,2", "--steps", "1", "--width", "64", "--height", "64", "--device", "cpu"]


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a model is loaded: the refusals under test come before any."""

    def load_pipeline(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(loading, "load_pipeline", load_pipeline)


def refused(argv, capsys) -> str:
    """The one line a refused command prints; it must exit with status 2 and print nothing else."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.splitlines()
    usage = lines[:-1]  # argparse prints its usage first
    assert not usage or (usage[0].startswith("usage:") and all(line.startswith(" ") for line in usage[1:]))
    return lines[-1]


def test_cli_writes_grid_cells_and_json_with_their_settings(pipe, tmp_path, capsys):
    code = main(
        ["--prompt", "a fox", "--seed", "42", "--skips", "3,1", "--steps", "2", "--width", "64", "--height", "64"]
        + ["--device", "cpu", "--out", str(tmp_path / "out")]
    )
    assert code == 0
    out = tmp_path / "out"
    names = ["comparison.json", "difference.png", "grid.png", "skip-1.png", "skip-3.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    metadata = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert (metadata["seed"], metadata["skips"], metadata["prompt"]) == (42, [3, 1], "a fox")
    cell = Image.open(out / "skip-3.png")
    assert cell.size == (64, 64) and "Clip skip: 3" in cell.info["parameters"]
    assert json.loads(Image.open(out / "grid.png").info["clipskip"]) == metadata
    captured = capsys.readouterr()
    assert "seed 42: wrote grid.png, difference.png, skip-3.png, skip-1.png, comparison.json" in captured.out
    assert "Denoising all cells" in captured.err  # the progress bar
    assert "clipskip: note: the built-in model does not know “fox”: it draws coloured shapes only" in captured.err


def test_the_built_in_model_note_names_each_prompts_unknown_words_only_for_that_model():
    from clipskip.__main__ import built_in_model_notes

    caption = "a large red circle in the centre, on a blue background"
    assert built_in_model_notes("embedded", caption) == []  # a scene caption: every word known
    notes = built_in_model_notes("embedded", [caption, "a watercolr painting"])
    assert len(notes) == 1 and notes[0].startswith(
        "the built-in model does not know “watercolr”, “painting”: it draws coloured shapes only"
    )
    assert built_in_model_notes("runwayml/stable-diffusion-v1-5", "a watercolor painting") == []


def test_cli_rows_of_seeds_and_of_prompts(pipe, tmp_path):
    tiny = ["--skips", "1,2", "--steps", "1", "--width", "64", "--height", "64", "--device", "cpu"]
    assert main(["--prompt", "a fox", "--seeds", "5,6,7", *tiny, "--out", str(tmp_path / "seeds")]) == 0
    metadata = json.loads((tmp_path / "seeds" / "comparison.json").read_text())
    assert [row["seed"] for row in metadata["rows"]] == [5, 6, 7]
    assert (tmp_path / "seeds" / "row3-skip-2.png").exists()
    (tmp_path / "prompts.txt").write_text("a fox\n\n  a castle at dusk  \n", encoding="utf-8")
    assert (
        main(["--prompts-file", str(tmp_path / "prompts.txt"), "--seed", "3", *tiny, "--out", str(tmp_path / "p")])
        == 0
    )
    metadata = json.loads((tmp_path / "p" / "comparison.json").read_text())
    assert [row["prompt"] for row in metadata["rows"]] == ["a fox", "a castle at dusk"]
    assert metadata["rows_by"] == "prompt"


def test_cli_refuses_an_empty_prompts_file(tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("empty.txt").write_text("\n \n", encoding="utf-8")
    message = "clipskip: error: the prompts file 'empty.txt' has no prompts (one per line)"
    assert refused(["--prompts-file", "empty.txt", "--out", "o"], capsys) == message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: None, "cannot read the prompts file 'p': No such file or directory"),
        (lambda: os.mkdir("p"), "the prompts file 'p' is not a regular file; give a text file, one prompt per line"),
        # a pipe: opening it would wait for a writer for ever
        (lambda: os.mkfifo("p"), "the prompts file 'p' is not a regular file; give a text file, one prompt per line"),
        (
            lambda: Path("p").write_bytes(b"a\n" * (MAX_PROMPTS_FILE_BYTES // 2 + 1)),
            "the prompts file 'p' is 65,538 bytes; at most 65,536 (8 prompts of up to 2,000 characters)",
        ),
        (
            lambda: Path("p").write_bytes(b"a fox\n\xff\n"),
            "cannot read the prompts file 'p': it is not UTF-8 text (invalid start byte)",
        ),
        (
            lambda: Path("p").write_text("a fox\n\n" + "x" * 2001 + "\n"),
            "line 3 of the prompts file 'p' is 2,001 characters long; shorten it to at most 2,000",
        ),
    ],
    ids=["missing", "folder", "pipe", "too-big", "not-utf-8", "a-prompt-too-long"],
)
def test_cli_checks_the_prompts_file_before_reading_it(make, message, tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make()
    assert refused(["--prompts-file", "p", "--out", "o"], capsys) == f"clipskip: error: {message}"
    assert not Path("o").exists()


@pytest.mark.parametrize(
    ("make", "out", "message"),
    [
        (lambda: None, "", "--out must name a folder to write into, not ''"),
        (
            lambda: Path("taken").write_text("mine"),
            "taken",
            "--out 'taken' is a file; name a folder (it is made if missing)",
        ),
        (lambda: Path("taken").write_text("mine"), "taken/a/b", "--out 'taken/a/b' cannot be made: 'taken' is a file"),
        (lambda: None, "x" * 300, "--out '" + "x" * 118 + "… cannot be used: File name too long"),
    ],
    ids=["empty", "a-file", "under-a-file", "name-too-long"],
)
def test_cli_refuses_an_out_it_could_not_write_before_any_work(
    make, out, message, tmp_path, capsys, no_model, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    make()
    before = sorted(tmp_path.rglob("*"))
    assert refused(["--prompt", "a fox", "--out", out], capsys) == f"clipskip: error: {message}"
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    if Path("taken").exists():
        assert Path("taken").read_text() == "mine"


def test_cli_refuses_an_out_in_a_folder_without_write_permission(tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("locked", 0o500)
    if os.access("locked", os.W_OK):
        pytest.skip("this user may write in a folder without write permission (root, with CAP_DAC_OVERRIDE)")
    message = "clipskip: error: --out 'locked/out' cannot be written: no permission to write in 'locked'"
    assert refused(["--prompt", "a fox", "--out", "locked/out"], capsys) == message


@pytest.mark.skipif(os.access("/proc/self", os.W_OK), reason="this kernel reports /proc/self as writable")
def test_cli_refuses_an_out_where_nobody_may_write_even_root(capsys, no_model):
    """procfs holds no files of ours, whoever asks: this runs as root too, where a chmod'ed folder would not do."""
    message = (
        "clipskip: error: --out '/proc/self/clipskip-out' cannot be written: no permission to write in '/proc/self'"
    )
    assert refused(["--prompt", "a fox", "--out", "/proc/self/clipskip-out"], capsys) == message


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "-1"], "argument --max-batch: must be a whole number, 1 or more, not '-1'"),
        (["--max-batch", "0"], "argument --max-batch: must be a whole number, 1 or more, not '0'"),
        (
            ["--config", "./no-such-folder"],
            "argument --config: no such folder: './no-such-folder' (give a diffusers folder or a Hub id)",
        ),
        (
            ["--seeds", "random:" + "9" * 5000],
            "argument --seeds: seeds is 5,007 characters long; at most 200 (up to "
            "8 seeds, like 42, 43, 44, or random:3)",
        ),
        (
            ["--seed", "5", "--seeds", "1,2"],
            "give --seed or --seeds, not both: --seeds gives one row per seed and replaces --seed",
        ),
    ],
)
def test_cli_refuses_impossible_flags_before_loading(flags, message, tmp_path, capsys, no_model):
    line = refused(["--prompt", "a fox", *flags, "--out", str(tmp_path / "o")], capsys)
    assert line == f"python -m clipskip: error: {message}"
    assert not (tmp_path / "o").exists()


def test_cli_refuses_text_that_is_not_valid_unicode(pipe, tmp_path, capsys):
    """Bytes that are not UTF-8 in a command line reach Python as lone surrogates (surrogateescape)."""
    line = refused(["--prompt", "a \udcff", *TINY_CLI, "--out", str(tmp_path / "o")], capsys)
    assert line == (
        "clipskip: error: prompt contains a character that is not valid text (a lone surrogate, U+DCFF, at position 3)"
    )
    assert not (tmp_path / "o").exists()


def test_cli_says_so_when_writing_fails_after_the_render(pipe, tmp_path, capsys, monkeypatch):
    def disk_full(result, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "write_outputs", disk_full)
    monkeypatch.chdir(tmp_path)
    assert main(["--prompt", "a fox", *TINY_CLI, "--out", "o"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no "wrote …" line
    assert (
        captured.err.splitlines()[-1] == "clipskip: error: could not write to 'o': [Errno 28] No space left on device"
    )


def test_cli_bad_input_is_a_clear_error(pipe, tmp_path, capsys):
    line = refused(["--prompt", "a fox", "--skips", "1,13", "--device", "cpu", "--out", str(tmp_path / "out")], capsys)
    assert line == "clipskip: error: CLIP skip 13 is out of range: this text encoder has 12 layers, so use 1 to 12"
    assert not (tmp_path / "out").exists()


def test_help_explains_every_option():
    help_text = subprocess.run(
        [sys.executable, "-m", "clipskip", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "ComfyUI -N, diffusers clip_skip N-1" in " ".join(help_text.split())
    for action in cli_parser()._actions:  # every option has its own line of help, not just a place in the usage
        assert action.help, action.option_strings
        assert " ".join(action.help.split()[:4]) in " ".join(help_text.split())


def test_cli_runs_a_real_checkpoint_folder(saved, tmp_path):
    out = tmp_path / "sdxl"
    code = main(
        ["--prompt", "a fox", "--seed", "1", "--skips", "1,2", "--steps", "1", "--width", "64", "--height", "64"]
        + ["--model", str(saved["sdxl"]), "--device", "cpu", "--out", str(out)]
    )
    assert code == 0
    assert json.loads((out / "comparison.json").read_text())["family"] == "SDXL"


def test_cli_renders_sd3_with_its_sampler_and_syntax_and_refuses_others_it_was_given(sd3_folder, tmp_path, capsys):
    argv = ["--prompt", "a red circle", "--seed", "1", "--skips", "1,2", "--steps", "1", "--model", str(sd3_folder)]
    argv += ["--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "sd3")]) == 0
    written = json.loads((tmp_path / "sd3" / "comparison.json").read_text())
    assert (written["family"], written["sampler"], written["prompt_syntax"]) == ("SD 3", "Euler", "plain")
    assert written["columns"][0]["t5"] == "unchanged" and written["width"] == 64
    err = capsys.readouterr().err
    assert "note: sampler Euler: the one this model's flow-matching scheduler takes" in err
    assert "note: prompts read as plain: the only syntax offered for SD 3 models" in err
    assert main([*argv, "--sampler", "DDIM", "--out", str(tmp_path / "ddim")]) == 2
    assert "clipskip: error: sampler 'DDIM' does not work with this model's flow-matching" in capsys.readouterr().err


def test_cli_refuses_pickles_with_the_reason(tmp_path, capsys):
    (tmp_path / "model.ckpt").write_bytes(b"not even a pickle")
    line = refused(
        ["--prompt", "x", "--model", str(tmp_path / "model.ckpt"), "--device", "cpu", "--out", str(tmp_path)], capsys
    )
    assert line.startswith(
        "clipskip: error: refusing model.ckpt: .ckpt files are Python pickles, and loading one can run"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]  # nothing written


def test_cli_reads_prompts_by_syntax_with_embeddings_and_writes_their_fields(pipe, tmp_path):
    from safetensors.torch import save_file

    save_file({"emb_params": torch.randn(2, pipe.text_encoder.config.hidden_size)}, tmp_path / "shiny.safetensors")
    out = tmp_path / "out"
    code = main(
        ["--prompt", "a (large:1.2) shiny star", "--negative-prompt", "blurry", "--seed", "1", "--skips", "1,2"]
        + ["--steps", "1", "--device", "cpu", "--embedding", str(tmp_path / "shiny.safetensors")]
        + ["--prompt-syntax", "a1111-no-norm", "--out", str(out)]
    )
    assert code == 0
    manifest = json.loads((out / "comparison.json").read_text())
    digest = hashlib.sha256((tmp_path / "shiny.safetensors").read_bytes()).hexdigest()[:12]
    assert manifest["prompt_syntax"] == "a1111-no-norm" and manifest["textual_inversions"] == {"shiny": digest}
    parameters = Image.open(out / "skip-2.png").info["parameters"]
    assert f'Emphasis: No norm, TI hashes: "shiny: {digest}"' in parameters


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        (["--prompt-syntax", "sd"], "argument --prompt-syntax: invalid choice: 'sd'"),
        (["--embedding", "/no/such.safetensors"], "argument --embedding: no such file: '/no/such.safetensors'"),
        (["--embedding", "style.pt"], "argument --embedding: 'style.pt' is not a .safetensors file;"),
        (["--prompt", "a [cat:dog:0.5] fox"], "prompt editing [cat:dog:0.5] is not supported"),
    ],
    ids=["unknown-syntax", "missing-embedding", "pickled-embedding", "prompt-editing"],
)
def test_cli_refuses_a_bad_syntax_embedding_or_construct(pipe, tmp_path, capsys, arguments, line):
    argv = ["--prompt", "a fox", "--steps", "1", "--device", "cpu", *arguments, "--out", str(tmp_path / "out")]
    assert line in refused(argv, capsys)
    assert not (tmp_path / "out").exists()


def test_cli_from_image_takes_every_setting_and_flags_override(pipe, tmp_path, capsys):
    """A cell of one render, fed back: the same settings, skips 1-4 with the cell's as the reference; a grid gives
    its own skips and rows; flags given with it win."""
    first = ["--prompt", "a red circle (small:1.2)", "--negative-prompt", "blue", "--seed", "7", "--cfg", "5"]
    first += ["--steps", "2", "--sampler", "Euler", "--skips", "3,1", "--width", "64", "--height", "72"]
    assert main([*first, "--device", "cpu", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert (
        main(["--from-image", str(tmp_path / "a" / "skip-3.png"), "--device", "cpu", "--out", str(tmp_path / "b")])
        == 0
    )
    assert "clipskip: settings from a clipskip cell" in capsys.readouterr().err
    a, b = (json.loads((tmp_path / x / "comparison.json").read_text()) for x in "ab")
    same = ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "sampler", "width", "height", "model")
    assert {k: b[k] for k in same} == {k: a[k] for k in same} and b["prompt_syntax"] == a["prompt_syntax"]
    assert (b["skips"], b["reference_skip"]) == ([1, 2, 3, 4], 3)  # the cell's own skip is the reference
    argv = ["--from-image", str(tmp_path / "a" / "grid.png"), "--steps", "1", "--prompt", "a green star"]
    assert main([*argv, "--device", "cpu", "--out", str(tmp_path / "c")]) == 0
    c = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert (c["skips"], c["reference_skip"], c["seed"], c["steps"], c["prompt"]) == ([3, 1], 1, 7, 1, "a green star")


def test_cli_from_another_tools_image_names_its_model_or_asks_for_one(pipe, tmp_path, capsys):
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a blue square\nNegative prompt: red\nSteps: 1, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, "
        "Seed: 9, Size: 64x64, Model: anime-v3, Clip skip: 2, Hires upscale: 2, Version: v1.10.1",
    )
    Image.new("RGB", (8, 8)).save(tmp_path / "a1111.png", pnginfo=info)
    argv = ["--from-image", str(tmp_path / "a1111.png"), "--device", "cpu", "--out", str(tmp_path / "out")]
    assert refused(argv, capsys).startswith("clipskip: error: the image's model 'anime-v3' is a checkpoint's name")
    assert main([*argv, "--model", "embedded"]) == 0
    err = capsys.readouterr().err
    assert "clipskip: settings from AUTOMATIC1111" in err
    assert "clipskip: note: hires fix ×2 not applied: loaded at the first pass's size 64x64" in err
    metadata = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert (metadata["prompt"], metadata["seed"], metadata["sampler"], metadata["reference_skip"]) == (
        "a blue square",
        9,
        "DPM++ 2M Karras",
        2,
    )
    os.mkfifo(tmp_path / "pipe.png")
    line = refused(["--from-image", str(tmp_path / "pipe.png"), "--out", str(tmp_path / "x")], capsys)
    assert line.endswith("pipe.png' is not a regular file; give a PNG")
    assert refused(["--out", str(tmp_path / "x")], capsys).endswith("--prompts-file --from-image is required")


def test_cli_from_an_image_naming_a_hub_model_asks_for_it_rather_than_fetching_it(tmp_path, capsys, no_model):
    """A stranger's PNG must not pick what is downloaded."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 1, Sampler: Euler, Seed: 9, Model: someone/model, Version: v1.10.1")
    Image.new("RGB", (8, 8)).save(tmp_path / "hub.png", pnginfo=info)
    line = refused(["--from-image", str(tmp_path / "hub.png"), "--out", str(tmp_path / "o")], capsys)
    assert line == (
        "clipskip: error: the image names the Hub model 'someone/model'; give --model 'someone/model' to load it "
        "(or another)"
    )
