"""Files on disk carry their settings: cell PNGs for AUTOMATIC1111, the grid for this app; the zip holds them all."""

import json
import zipfile

import pytest
from PIL import Image

from clipskip import compare
from clipskip.outputs import read_settings, write_bundle, write_outputs, zip_path
from tests.conftest import TINY


@pytest.fixture(scope="module")
def result(pipe):
    return compare(pipe, "a fox, at dawn", negative_prompt="blurry", seed=[11, 12], skips=[2, 1], **TINY)


def test_files_and_their_text(result, tmp_path):
    paths = write_outputs(result, tmp_path)
    names = ["grid.png", "difference.png", "row1-skip-2.png", "row1-skip-1.png", "row2-skip-2.png"]
    assert [p.name for p in paths] == [*names, "row2-skip-1.png", "comparison.json"]
    cell = Image.open(tmp_path / "row2-skip-1.png").info["parameters"]
    assert cell.startswith(
        "a fox, at dawn\nNegative prompt: blurry\nSteps: 2, Sampler: DPM++ 2M Karras, CFG scale: 7.5"
    )
    assert "Seed: 12, Size: 64x64, Model hash: " + result.metadata["weights_sha256"][:10] in cell
    assert cell.endswith("Model: embedded, Clip skip: 1, Version: clipskip 0.1.0")  # written even when 1
    assert json.loads(Image.open(tmp_path / "grid.png").info["clipskip"]) == result.metadata


def test_settings_round_trip_through_the_grid_and_a_cell(result, tmp_path):
    write_outputs(result, tmp_path)
    form, notes = read_settings(tmp_path / "grid.png")
    assert notes == []
    assert form == {
        "prompt": "a fox, at dawn",
        "prompt_rows": False,
        "negative_prompt": "blurry",
        "seed": 11,
        "seeds": "11, 12",
        "skips": [2, 1],
        "steps": 2,
        "guidance_scale": 7.5,
        "width": 64,
        "height": 64,
        "model": "embedded",
        "reference": 1,
        "scheduler": "DPM++ 2M Karras",
    }
    form, _ = read_settings(tmp_path / "row2-skip-2.png")
    assert (form["prompt"], form["seed"], form["skips"], form["scheduler"]) == (
        "a fox, at dawn",
        12,
        [2],
        "DPM++ 2M Karras",
    )


def test_images_without_settings_say_so(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="this image carries no generation settings"):
        read_settings(tmp_path / "plain.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="^this file is not a PNG image that can be read; "):
        read_settings(tmp_path / "text.png")


def test_a_bundle_holds_the_files_and_a_zip_of_them(result, tmp_path):
    folder = write_bundle(result, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    with zipfile.ZipFile(zip_path(folder)) as bundle:
        assert len(bundle.namelist()) == 7 and "comparison.json" in bundle.namelist()
    assert (folder / "grid.png").exists() and (folder / "row2-skip-1.png").exists()


def test_old_and_excess_bundles_are_cleaned_up(result, tmp_path):
    first = write_bundle(result, tmp_path)
    size = sum(f.stat().st_size for f in first.iterdir())
    second = write_bundle(result, tmp_path, max_total_bytes=size * 2 + 1)
    assert first.exists() and second.exists()
    third = write_bundle(result, tmp_path, max_total_bytes=size * 2 + 1)  # three do not fit: the oldest goes
    assert not first.exists() and second.exists() and third.exists()
    fourth = write_bundle(result, tmp_path, max_age_s=-1)  # every older one is past its age
    assert sorted(tmp_path.iterdir()) == [fourth]
