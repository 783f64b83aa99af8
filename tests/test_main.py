"""The command line writes the grid, one PNG per skip and comparison.json; bad input is a short error, exit 2."""

import json
import subprocess
import sys

from PIL import Image

from clipskip.__main__ import main


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


def test_cli_refuses_an_empty_prompts_file(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    assert main(["--prompts-file", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "has no prompts (one per line)" in capsys.readouterr().err


def test_cli_bad_input_is_a_clear_error(pipe, tmp_path, capsys):
    code = main(["--prompt", "a fox", "--skips", "1,13", "--device", "cpu", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "clipskip: error: CLIP skip 13 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_explains_every_option():
    help_text = subprocess.run(
        [sys.executable, "-m", "clipskip", "--help"], capture_output=True, text=True, check=True
    ).stdout
    options = ["--prompt", "--prompts-file", "--negative-prompt", "--seed", "--seeds", "--reference", "--skips"]
    options += ["--steps", "--cfg", "--width", "--height"]
    options += ["--sampler", "--model", "--device", "--dtype", "--out"]
    for option in options:
        assert option in help_text
    assert "ComfyUI -N, diffusers clip_skip N-1" in " ".join(help_text.split())


def test_cli_runs_a_real_checkpoint_folder(saved, tmp_path):
    out = tmp_path / "sdxl"
    code = main(
        ["--prompt", "a fox", "--seed", "1", "--skips", "1,2", "--steps", "1", "--width", "64", "--height", "64"]
        + ["--model", str(saved["sdxl"]), "--device", "cpu", "--out", str(out)]
    )
    assert code == 0
    assert json.loads((out / "comparison.json").read_text())["family"] == "SDXL"


def test_cli_refuses_pickles_with_the_reason(tmp_path, capsys):
    (tmp_path / "model.ckpt").write_bytes(b"not even a pickle")
    code = main(["--prompt", "x", "--model", str(tmp_path / "model.ckpt"), "--device", "cpu", "--out", str(tmp_path)])
    assert code == 2
    assert "refusing model.ckpt: .ckpt files are Python pickles" in capsys.readouterr().err
