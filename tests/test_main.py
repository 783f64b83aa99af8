"""The command line writes the grid, one PNG per skip and comparison.json; bad input is a short error, exit 2."""

import json
import subprocess
import sys

from PIL import Image

from clipskip.__main__ import main


def test_cli_writes_its_three_outputs(pipe, tmp_path, capsys):
    code = main(
        ["--prompt", "a fox", "--seed", "42", "--skips", "3,1", "--steps", "2", "--width", "64", "--height", "64"]
        + ["--device", "cpu", "--out", str(tmp_path / "out")]
    )
    assert code == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["comparison.json", "grid.png", "skip-1.png", "skip-3.png"]
    metadata = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert (metadata["seed"], metadata["skips"], metadata["prompt"]) == (42, [3, 1], "a fox")
    assert Image.open(out / "skip-3.png").size == (64, 64)
    assert Image.open(out / "grid.png").width > 2 * 64
    captured = capsys.readouterr()
    assert "seed 42: wrote grid.png, skip-3.png, skip-1.png and comparison.json" in captured.out
    assert "Denoising all cells" in captured.err  # the progress bar


def test_cli_bad_input_is_a_clear_error(pipe, tmp_path, capsys):
    code = main(["--prompt", "a fox", "--skips", "1,13", "--device", "cpu", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "clipskip: error: CLIP skip 13 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_explains_every_option():
    help_text = subprocess.run(
        [sys.executable, "-m", "clipskip", "--help"], capture_output=True, text=True, check=True
    ).stdout
    options = ["--prompt", "--negative-prompt", "--seed", "--skips", "--steps", "--cfg", "--width", "--height"]
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
