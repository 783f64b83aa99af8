"""The weights hash: its definition, found off a render's path, kept in a hash cache that survives hostile files."""

import copy
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image

from clipskip import compare, provenance
from clipskip.embedded import MODEL_DIR
from clipskip.outputs import write_outputs
from clipskip.provenance import HashCache, file_sha256, remember_weights, weights_hash, weights_identity
from tests.conftest import TINY


class Pipeline:
    """Stands in for a pipeline where only its identity matters (a single file's hash needs no components)."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_hash(folder: Path, components=("unet", "vae", "text_encoder")) -> str:
    """The definition written out: a line `<component>/<file> <its SHA-256>` per weight file, hashed."""
    lines = [f"{c}/{f.name} {sha256(f)}\n" for c in components for f in sorted((folder / c).glob("*.safetensors"))]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def refuse_reading(monkeypatch) -> None:
    """Any weight file provenance opens fails the test: a hash found meanwhile came from a cache."""

    def refuse(path, *args, **kwargs):
        if Path(path).suffix == ".json":  # the hash cache itself
            return open(path, *args, **kwargs)
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(provenance, "open", refuse, raising=False)


def test_the_embedded_model_is_hashed_by_its_weight_files(pipe):
    assert weights_hash(pipe) == folder_hash(MODEL_DIR)


def test_a_single_file_is_read_once_then_its_hash_comes_from_the_cache(tmp_path, monkeypatch):
    checkpoint, cache = tmp_path / "model.safetensors", tmp_path / "cache" / "hashes.json"
    checkpoint.write_bytes(os.urandom(4096))
    first = Pipeline()
    remember_weights(first, cache, checkpoint)
    assert weights_hash(first) == sha256(checkpoint)  # small: hashed at once
    stat = checkpoint.stat()
    kept = json.loads(cache.read_text())["sha256"]
    assert kept == {str(checkpoint.resolve()): [stat.st_size, stat.st_mtime_ns, sha256(checkpoint)]}

    refuse_reading(monkeypatch)
    second = Pipeline()
    remember_weights(second, cache, checkpoint)
    assert weights_hash(second) == sha256(checkpoint)
    monkeypatch.undo()

    checkpoint.write_bytes(os.urandom(4096))  # the same path, other weights: the kept hash no longer applies
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    third = Pipeline()
    remember_weights(third, cache, checkpoint)
    assert weights_hash(third) == sha256(checkpoint) != weights_hash(first)


def hub_cache(folder: Path, root: Path, repo: str) -> Path:
    """`folder` laid out as the Hugging Face cache keeps a download of `repo`: blobs named by SHA-256 (large files)
    or by git's SHA-1 (small ones), a snapshot of links to them, and refs/main naming it."""
    home = root / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        name = hashlib.sha256(data).hexdigest() if path.suffix == ".safetensors" else hashlib.sha1(data).hexdigest()
        (home / "blobs").mkdir(parents=True, exist_ok=True)
        (home / "blobs" / name).write_bytes(data)
        link = home / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(home / "blobs" / name, link.parent))
    (home / "refs").mkdir()
    (home / "refs" / "main").write_text(commit)
    return home / "snapshots" / commit


def test_a_hub_model_is_hashed_from_the_names_of_its_cached_files_without_reading_them(saved, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from clipskip.loading import load_pipeline

    refuse_reading(monkeypatch)
    snapshot = hub_cache(saved["sd1"], tmp_path, "clipskip-tests/tiny-sd1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    pipe = load_pipeline("clipskip-tests/tiny-sd1", device="cpu")
    assert weights_hash(pipe) == folder_hash(snapshot) == folder_hash(saved["sd1"])
    result = compare(pipe, "a red circle", seed=1, skips=[1], **TINY)
    assert result.metadata["weights_sha256"] == folder_hash(saved["sd1"])


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff not json",
        b"[" * 100_000,  # nested past what json.loads can parse
        b'{"sha256": []}',
        b'{"sha256": {"/x": [true, 1, "' + b"a" * 64 + b'"], "/y": [1, 2, "short"], "/z": [1, 2]}}',
        b"[]",
        b" " * (HashCache.MAX_BYTES + 1),
    ],
    ids=["binary", "deep", "wrong-type", "bad-entries", "list", "oversized"],
)
def test_a_corrupt_or_hostile_cache_counts_as_empty_and_is_replaced(tmp_path, content):
    cache_file, checkpoint = tmp_path / "hashes.json", tmp_path / "model.safetensors"
    cache_file.write_bytes(content)
    checkpoint.write_bytes(b"weights")
    cache = HashCache(cache_file)
    assert cache.entries() == {}
    assert file_sha256(checkpoint, cache) == sha256(checkpoint)
    assert list(json.loads(cache_file.read_text())["sha256"]) == [str(checkpoint.resolve())]


def test_only_well_formed_entries_are_kept_and_a_stale_one_is_not_believed(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    stat, wrong = checkpoint.stat(), "f" * 64
    entries = {
        str(checkpoint.resolve()): [stat.st_size + 1, stat.st_mtime_ns, wrong],  # another size: another file
        "/elsewhere": [1, 2, "e" * 64],
        "/bad": [1, 2, "E" * 64],
    }
    (tmp_path / "hashes.json").write_text(json.dumps({"sha256": entries}))
    cache = HashCache(tmp_path / "hashes.json")
    assert list(cache.entries()) == [str(checkpoint.resolve()), "/elsewhere"]
    assert file_sha256(checkpoint, cache) == sha256(checkpoint) != wrong


def test_the_cache_keeps_the_files_added_last(tmp_path, monkeypatch):
    monkeypatch.setattr(HashCache, "MAX_ENTRIES", 3)
    cache = HashCache(tmp_path / "hashes.json")
    files = []
    for k in range(5):
        files.append(tmp_path / f"{k}.safetensors")
        files[-1].write_bytes(bytes([k]))
        file_sha256(files[-1], cache)
    assert list(cache.entries()) == [str(f.resolve()) for f in files[2:]]
    assert (tmp_path / "hashes.json").stat().st_size < HashCache.MAX_BYTES
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".hashes-")) == []  # no temporary left


def test_an_unwritable_cache_costs_only_a_second_reading(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    (tmp_path / "file").write_text("a file where the cache's folder should be")
    cache = HashCache(tmp_path / "file" / "hashes.json")
    assert file_sha256(checkpoint, cache) == sha256(checkpoint) and cache.entries() == {}


def test_a_render_never_waits_for_the_hash_and_records_none_until_it_is_known(pipe, tmp_path, monkeypatch):
    """A model whose files are still being hashed in the background: renders go on, their files say nothing of its
    hash, and their cells are kept for this pipeline alone; the hash comes when the files are read."""
    from clipskip.cache import CellCache

    gate, hashing = threading.Event(), threading.Event()
    read = provenance.file_sha256

    def slow(path, cache):
        hashing.set()
        assert gate.wait(60)
        return read(path, cache)

    monkeypatch.setattr(provenance, "INLINE_BYTES", 0)  # the embedded model's files count as large
    monkeypatch.setattr(provenance, "file_sha256", slow)
    fresh = copy.copy(pipe)  # the same weights, another pipeline
    remember_weights(fresh, tmp_path / "hashes.json")  # an empty cache: every file must be read
    assert hashing.wait(10) and weights_hash(fresh) is None

    try:
        cells = CellCache()
        result = compare(fresh, "a red circle", seed=1, skips=[1], cache=cells, **TINY)
        assert not gate.is_set() and result.metadata["weights_sha256"] is None
        write_outputs(result, tmp_path / "out")
        parameters = Image.open(tmp_path / "out" / "skip-1.png").info["parameters"]
        assert "Model hash" not in parameters and "Model: embedded, Clip skip: 1" in parameters
        again = compare(fresh, "a red circle", seed=1, skips=[1], cache=cells, **TINY)
        assert again.metadata["rows"][0]["cells"][0]["cached"] is True  # kept under this pipeline's own name
        assert weights_identity(fresh).startswith("pipeline ")
    finally:
        gate.set()
    assert weights_hash(fresh, timeout=60) == weights_hash(pipe) == weights_identity(fresh)


def test_a_pipeline_from_no_file_has_no_hash(pipe):
    built = copy.copy(pipe)
    built.unet = copy.copy(pipe.unet)
    built.unet.register_to_config(_name_or_path="")  # as a UNet made in memory has no folder
    assert weights_hash(built) is None and weights_identity(built).startswith("pipeline ")


def test_a_folder_copied_elsewhere_has_the_same_hash(saved, tmp_path):
    from clipskip.loading import load_pipeline

    shutil.copytree(saved["sd1"], tmp_path / "copy")
    assert weights_hash(load_pipeline(str(tmp_path / "copy"), device="cpu")) == folder_hash(saved["sd1"])
