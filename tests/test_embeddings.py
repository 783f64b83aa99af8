"""Textual-inversion files: good ones per family load with their shapes and AUTOMATIC1111's hashes; every other file
is refused with one line naming it. Files are written here with safetensors; widths come from the tiny pipelines."""

import hashlib
import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from clipskip.embeddings import (
    MAX_FILE_BYTES,
    MAX_VECTORS,
    EmbeddingError,
    check_for,
    load_embedding,
    load_embeddings,
)
from tests import tiny_models


@pytest.fixture(scope="module")
def pipes():
    return {family: getattr(tiny_models, family)() for family in ("sd1", "sd2", "sdxl")}


def widths(pipe) -> dict[str, int]:
    return {
        encoder: getattr(pipe, encoder).config.hidden_size
        for encoder in ("text_encoder", "text_encoder_2")
        if getattr(pipe, encoder, None) is not None
    }


def write(folder: Path, name: str, tensors: dict[str, torch.Tensor]) -> Path:
    path = folder / name
    save_file({key: tensor.contiguous() for key, tensor in tensors.items()}, str(path))
    return path


def good_tensors(pipe, count: int = 3) -> dict[str, torch.Tensor]:
    """The layout AUTOMATIC1111 and Civitai use for the pipeline's family."""
    found = widths(pipe)
    if "text_encoder_2" in found:
        return {
            "clip_l": torch.randn(count, found["text_encoder"]),
            "clip_g": torch.randn(count, found["text_encoder_2"]),
        }
    return {"emb_params": torch.randn(count, found["text_encoder"])}


def refused(call, *args) -> str:
    """The message of the EmbeddingError `call` raises: one line, naming no exception from safetensors or torch."""
    with pytest.raises(EmbeddingError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def sdxl_file(tmp_path, pipe, name="style.safetensors", **tensors):
    return write(tmp_path, name, good_tensors(pipe) | tensors)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_a_good_file_per_family_loads_with_its_shapes_and_hashes(pipes, tmp_path, family):
    pipe = pipes[family]
    tensors = good_tensors(pipe)
    path = write(tmp_path, "my_style-v2.1.safetensors", tensors)
    loaded = load_embeddings([path], pipe)
    assert list(loaded) == ["my_style-v2.1"]
    ti = loaded["my_style-v2.1"]
    assert ti.name == "my_style-v2.1" and ti.count == 3 and ti.path == str(path)
    expected = {"text_encoder": tensors.get("emb_params", tensors.get("clip_l"))}
    if family == "sdxl":
        expected["text_encoder_2"] = tensors["clip_g"]
    assert ti.vectors.keys() == expected.keys()
    for encoder, tensor in expected.items():
        assert ti.vectors[encoder].shape == (3, widths(pipe)[encoder])
        assert ti.vectors[encoder].dtype == torch.float32
        assert torch.equal(ti.vectors[encoder], tensor)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert ti.sha256 == digest
    assert ti.short_hash == digest[:12]  # AUTOMATIC1111's `TI hashes: my_style-v2.1: <these 12>`


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_diffusers_token_layout_with_one_flat_vector_in_any_float_type(pipes, tmp_path, dtype):
    vector = torch.randn(32).to(dtype)
    path = write(tmp_path, "cat-toy.safetensors", {"<cat-toy>": vector})
    ti = load_embeddings([path], pipes["sd1"])["cat-toy"]
    assert ti.count == 1 and ti.vectors["text_encoder"].shape == (1, 32)
    assert ti.vectors["text_encoder"].dtype == torch.float32
    assert torch.equal(ti.vectors["text_encoder"][0], vector.to(torch.float32))


def test_a_wrong_width_names_the_file_and_both_widths(pipes, tmp_path):
    path = write(tmp_path, "wide.safetensors", {"emb_params": torch.randn(2, 1024)})
    message = refused(load_embeddings, [path], pipes["sd1"])
    assert "'wide.safetensors'" in message and "1024 wide" in message and "takes 32" in message
    assert "SD 2.x" in message  # 1024 is SD 2.x's width: the likely mix-up is named


@pytest.mark.parametrize(
    ("key", "encoder", "expected"), [("clip_l", "text_encoder", 32), ("clip_g", "text_encoder_2", 48)]
)
def test_a_wrong_width_on_one_sdxl_encoder_names_its_key(pipes, tmp_path, key, encoder, expected):
    path = sdxl_file(tmp_path, pipes["sdxl"], **{key: torch.randn(3, 40)})
    message = refused(load_embeddings, [path], pipes["sdxl"])
    assert "'style.safetensors'" in message and f"{key} vectors are 40 wide" in message
    assert f"{encoder} takes {expected}" in message


def test_an_sdxl_file_on_an_sd1_model_and_an_sd1_file_on_sdxl_are_refused(pipes, tmp_path):
    sdxl_path = sdxl_file(tmp_path, pipes["sdxl"], name="xl.safetensors")
    message = refused(check_for, load_embedding(sdxl_path), pipes["sd1"])
    assert "'xl.safetensors'" in message and "SDXL embedding" in message and "SD 1.x model" in message
    sd1_path = write(tmp_path, "one.safetensors", good_tensors(pipes["sd1"]))
    message = refused(check_for, load_embedding(sd1_path), pipes["sdxl"])
    assert "'one.safetensors'" in message and "SD 1.x/2.x embedding" in message
    assert "clip_l (32 wide) and clip_g (48 wide)" in message


@pytest.mark.parametrize(("present", "missing"), [("clip_l", "clip_g"), ("clip_g", "clip_l")])
def test_an_sdxl_file_missing_one_key_is_refused(pipes, tmp_path, present, missing):
    path = write(tmp_path, "half.safetensors", {present: torch.randn(2, 32)})
    message = refused(load_embedding, path)
    assert "'half.safetensors'" in message and f"has {present} but no {missing}" in message


def test_sdxl_keys_with_different_counts_are_refused(pipes, tmp_path):
    path = sdxl_file(tmp_path, pipes["sdxl"], clip_g=torch.randn(4, 48))
    assert "clip_l holds 3 vectors and clip_g 4" in refused(load_embedding, path)


def test_a_file_of_several_unknown_tensors_is_refused(tmp_path):
    path = write(tmp_path, "lora.safetensors", {"a": torch.zeros(1, 32), "b": torch.zeros(1, 32)})
    assert "holds 2 tensors ['a', 'b']" in refused(load_embedding, path)


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".ckpt", ".pth", ".pkl", ".PT"])
def test_pickled_files_are_refused_unopened(tmp_path, suffix):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps(Payload()))
    message = refused(load_embedding, path)
    assert f"'evil{suffix}'" in message and "pickles" in message and ".safetensors" in message
    assert not marker.exists()


def test_other_suffixes_and_missing_files_are_refused(tmp_path):
    assert "expected a .safetensors" in refused(load_embedding, tmp_path / "preview.png")
    assert "no such file" in refused(load_embedding, tmp_path / "gone.safetensors")
    (tmp_path / "folder.safetensors").mkdir()
    assert "no such file" in refused(load_embedding, tmp_path / "folder.safetensors")


DAMAGES = ["truncated", "header_only", "empty", "lying_header", "huge_header_length", "not_json"]


def damaged(good: bytes, damage: str) -> bytes:
    length = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8 : 8 + length])
    header["emb_params"]["shape"] = [5, 32]  # more data than the file holds
    lying = json.dumps(header).encode()
    variants = {
        "truncated": good[:-10],
        "header_only": good[:20],
        "empty": b"",
        "lying_header": struct.pack("<Q", len(lying)) + lying + good[8 + length :],
        "huge_header_length": struct.pack("<Q", 10**12) + good[8:],
        "not_json": struct.pack("<Q", 4) + b"abcd",
    }
    return variants[damage]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_files_are_refused_in_one_line(tmp_path, damage):
    good = write(tmp_path, "good.safetensors", {"emb_params": torch.randn(2, 32)}).read_bytes()
    path = tmp_path / "broken.safetensors"
    path.write_bytes(damaged(good, damage))
    message = refused(load_embedding, path)
    assert "'broken.safetensors'" in message and "damaged or not a safetensors file" in message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e300])
def test_non_finite_values_are_refused(tmp_path, value):
    tensor = torch.randn(2, 32, dtype=torch.float64)
    tensor[1, 5] = value  # 1e300 is finite in float64 and infinite once read as float32
    path = write(tmp_path, "nan.safetensors", {"emb_params": tensor})
    assert "non-finite" in refused(load_embedding, path)


def test_non_float_tensors_and_other_shapes_are_refused(tmp_path):
    path = write(tmp_path, "ints.safetensors", {"emb_params": torch.zeros(2, 32, dtype=torch.int32)})
    assert "holds I32 numbers" in refused(load_embedding, path)
    path = write(tmp_path, "cube.safetensors", {"emb_params": torch.zeros(2, 2, 32)})
    assert "has shape [2, 2, 32]" in refused(load_embedding, path)
    path = write(tmp_path, "hollow.safetensors", {"emb_params": torch.zeros(2, 0)})
    assert "has shape [2, 0]" in refused(load_embedding, path)


def test_at_most_one_chunk_of_vectors(tmp_path):
    path = write(tmp_path, "full.safetensors", {"emb_params": torch.randn(MAX_VECTORS, 32)})
    assert load_embedding(path).count == 75
    path = write(tmp_path, "over.safetensors", {"emb_params": torch.randn(MAX_VECTORS + 1, 32)})
    assert "holds 76 vectors" in refused(load_embedding, path)
    path = write(tmp_path, "none.safetensors", {"emb_params": torch.randn(0, 32)})
    assert "holds 0 vectors" in refused(load_embedding, path)


def test_a_file_past_the_size_bound_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    message = refused(load_embedding, path)
    assert "'model.safetensors'" in message and "64.0 MiB" in message and "more than the 64 MiB" in message


@pytest.mark.parametrize(
    "stem", ["my style", "a(b)", "x" * 65, "BREAK", "-dash", ".hidden", "café", "bad\nname", "a:b", "a,b"]
)
def test_names_a_prompt_could_not_call_are_refused(tmp_path, stem):
    path = write(tmp_path, f"{stem}.safetensors", {"emb_params": torch.randn(1, 32)})
    message = refused(load_embedding, path)
    assert "rename the file" in message and ("BREAK" in message) == (stem == "BREAK")


def test_names_at_the_bounds_load(tmp_path):
    for stem in ("x" * 64, "7", "EasyNegative", "neg_v2.1-final"):
        path = write(tmp_path, f"{stem}.safetensors", {"emb_params": torch.randn(1, 32)})
        assert load_embedding(path).name == stem


def test_two_files_with_one_name_are_refused_and_one_file_twice_loads_once(pipes, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write(tmp_path / "a", "style.safetensors", {"emb_params": torch.randn(1, 32)})
    second = write(tmp_path / "b", "style.safetensors", {"emb_params": torch.randn(1, 32)})
    message = refused(load_embeddings, [first, second], pipes["sd1"])
    assert str(first) in message and str(second) in message and "rename one" in message
    upper = write(tmp_path / "b", "Style.safetensors", {"emb_params": torch.randn(1, 32)})
    assert "'style'" in refused(load_embeddings, [first, upper], pipes["sd1"])  # CLIP lower-cases prompts
    again = tmp_path / "a" / ".." / "a" / "style.safetensors"
    assert list(load_embeddings([first, again], pipes["sd1"])) == ["style"]


def test_textual_inversions_are_refused_for_sd3(sd3, pipes, tmp_path):
    path = sdxl_file(tmp_path, sd3, name="clips.safetensors")  # clip_l and clip_g, as wide as SD 3's CLIP encoders
    message = refused(check_for, load_embedding(path), sd3)
    assert message == "refusing 'clips.safetensors': textual inversions are not offered for SD 3 models"
