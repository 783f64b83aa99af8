"""Where a comparison's images came from: a hash of the model's weights and the versions of the libraries used.

The weights hash is started when a model loads and never computed on a render's path: each weight file's SHA-256 is
read from the Hugging Face cache, which names a downloaded file by it, or from this app's hash cache (`HashCache`),
or else computed once (in a background thread when the files are large) and kept there. A render that starts before
it is known records none (see `weights_hash`).
"""

import contextlib
import hashlib
import itertools
import json
import os
import re
import tempfile
import threading
import weakref
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from weakref import WeakKeyDictionary

from .settings import hash_cache_file

LIBRARIES = ("torch", "diffusers", "transformers", "gradio")
# the modules whose weights the hash covers, those a pipeline has (SD 3: a transformer for the UNet, a third encoder)
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "transformer", "text_encoder_3")
# The weight files diffusers and transformers load, by name (clipskip asks for no variant): whole or in shards
WEIGHT_FILE = re.compile(r"(diffusion_pytorch_model|model)(-\d+-of-\d+)?\.(safetensors|bin)")
SHA256 = re.compile(r"[0-9a-f]{64}")
INLINE_BYTES = 64 * 2**20  # files to read, up to this size in all, are hashed at once (tens of ms); more in a thread
BLOCK = 1 << 24

_lock = threading.Lock()
_file_lock = threading.Lock()  # one writer of the hash cache at a time in this process
_hashes: WeakKeyDictionary = WeakKeyDictionary()  # pipeline -> its weights hash, once known
_settled: WeakKeyDictionary = WeakKeyDictionary()  # pipeline -> an Event set once the hash is known or unknowable
_tokens: WeakKeyDictionary = WeakKeyDictionary()  # pipeline -> a number no other pipeline of this process gets
_numbers = itertools.count(1)


class HashCache:
    """SHA-256 digests of files in a small JSON file, by resolved path, size and modification time (as AUTOMATIC1111
    keeps its hashes), so that each file is read once. It keeps the `MAX_ENTRIES` files added last and is written
    atomically. It is read with bounds (at most `MAX_BYTES`, strict types): an entry of another shape is dropped, a
    file that is not such JSON counts as empty, and the next write replaces it."""

    MAX_ENTRIES = 1024
    MAX_PATH_CHARS = 1024  # longer paths are not kept: with MAX_ENTRIES, the file stays under MAX_BYTES
    MAX_BYTES = 2 * 2**20

    def __init__(self, path: Path):
        self.path = path

    def get(self, file: Path) -> str | None:
        """The digest kept for `file` as it is now (same size and modification time), else None."""
        stat = file.stat()
        entry = self.entries().get(str(file.resolve()))
        return entry[2] if entry is not None and entry[:2] == [stat.st_size, stat.st_mtime_ns] else None

    def put(self, file: Path, digest: str, size: int, mtime_ns: int) -> None:
        """Keep `digest` for `file` as it was when read (`size` bytes, modified at `mtime_ns`). A cache that cannot be
        written costs only a second reading of the file."""
        key = str(file.resolve())
        if len(key) > self.MAX_PATH_CHARS:
            return
        with _file_lock:  # another process may write meanwhile: the last write wins, and a lost entry is read again
            entries = self.entries()
            entries.pop(key, None)
            entries[key] = [size, mtime_ns, digest]
            kept = dict(list(entries.items())[-self.MAX_ENTRIES :])
            temporary = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(
                    "w", dir=self.path.parent, prefix=".hashes-", delete=False, encoding="utf-8"
                ) as file_:
                    temporary = Path(file_.name)
                    json.dump({"sha256": kept}, file_)
                os.replace(temporary, self.path)
            except OSError:
                if temporary is not None:
                    with contextlib.suppress(OSError):
                        temporary.unlink()

    def entries(self) -> dict[str, list]:
        """path -> [size, mtime_ns, digest], in the order added; {} for a missing, oversized or malformed file."""
        try:
            with open(self.path, "rb") as file_:
                data = file_.read(self.MAX_BYTES + 1)
            found = json.loads(data) if len(data) <= self.MAX_BYTES else None
        except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep to parse
            return {}
        files = found.get("sha256") if isinstance(found, dict) else None
        if not isinstance(files, dict):
            return {}
        return {path: entry for path, entry in files.items() if len(path) <= self.MAX_PATH_CHARS and is_entry(entry)}


def is_entry(entry) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) == 3
        and all(type(number) is int and number >= 0 for number in entry[:2])  # type(): True is no size
        and isinstance(entry[2], str)
        and SHA256.fullmatch(entry[2]) is not None
    )


def hub_sha256(file: Path) -> str | None:
    """The SHA-256 the Hugging Face cache names `file` by: a snapshot's file links to `blobs/<name>`, and the Hub names
    a large (LFS) file's blob by its SHA-256. None for a file outside that cache."""
    target = file.resolve()
    return target.name if target.parent.name == "blobs" and SHA256.fullmatch(target.name) else None


def file_sha256(file: Path, cache: HashCache) -> str:
    """The SHA-256 of `file`: from the Hub's cache or `cache` where they know it, else read (and then kept)."""
    known = hub_sha256(file) or cache.get(file)
    if known is not None:
        return known
    stat = file.stat()
    digest = hashlib.sha256()
    with open(file, "rb") as opened:
        for block in iter(lambda: opened.read(BLOCK), b""):
            digest.update(block)  # hashlib releases the GIL on large blocks: renders go on meanwhile
    cache.put(file, digest.hexdigest(), stat.st_size, stat.st_mtime_ns)
    return digest.hexdigest()


def weight_files(pipe) -> list[tuple[str, Path]] | None:
    """`(component/file name, path)` for each weight file of the pipeline's UNet (or transformer), VAE and text
    encoders, as diffusers and transformers loaded them from a folder (a Hub snapshot is one): its .safetensors files
    by WEIGHT_FILE, or its .bin files where it has none. None where a component came from no folder (a pipeline built
    in memory)."""
    files = []
    for name in COMPONENTS:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        source = getattr(module.config, "_name_or_path", None)  # the folder diffusers or transformers read it from
        folder = Path(source) if source else None
        found = (
            sorted(p for p in folder.iterdir() if WEIGHT_FILE.fullmatch(p.name)) if folder and folder.is_dir() else []
        )
        found = [p for p in found if p.suffix == ".safetensors"] or found
        if not found:
            return None
        files += [(f"{name}/{p.name}", p) for p in found]
    return files


def folder_hash(files: list[tuple[str, Path]], cache: HashCache) -> str:
    """The SHA-256 of one line per file, `<component>/<file name> <its SHA-256>` and a newline, in the order given."""
    return hashlib.sha256(
        "".join(f"{label} {file_sha256(path, cache)}\n" for label, path in files).encode()
    ).hexdigest()


def remember_weights(pipe, cache_file: Path, checkpoint: Path | None = None) -> None:
    """Start finding `pipe`'s weights hash (see `weights_hash`): of the single `checkpoint` file it was loaded from,
    else of its components' weight files. Files that the Hub's cache or the `HashCache` in `cache_file` knows are not
    read; the rest are read at once when they are at most INLINE_BYTES in all, else in a background thread."""
    files = [("", Path(checkpoint))] if checkpoint is not None else weight_files(pipe)
    settled = threading.Event()
    with _lock:
        _settled[pipe] = settled
    if files is None:
        settled.set()  # no files, no hash
        return
    cache, owner = HashCache(cache_file), weakref.ref(pipe)

    def find() -> None:
        try:
            digest = file_sha256(files[0][1], cache) if checkpoint is not None else folder_hash(files, cache)
            with _lock:
                if (pipe := owner()) is not None:
                    _hashes[pipe] = digest
        except OSError:
            pass  # a file moved or went since it was loaded: the hash stays unknown
        finally:
            settled.set()

    unread = sum(path.stat().st_size for _, path in files if hub_sha256(path) is None and cache.get(path) is None)
    if unread <= INLINE_BYTES:
        find()
    else:
        threading.Thread(target=find, name="clipskip-weights-hash", daemon=True).start()


def weights_hash(pipe, timeout: float | None = 0) -> str | None:
    """The hash of `pipe`'s weights, as hex: for a single checkpoint file, its SHA-256 (its first 10 characters are
    AUTOMATIC1111's "Model hash"); for a diffusers folder or Hub model, the SHA-256 of the text with one line
    `<component>/<file name> <SHA-256 of the file>` per weight file of the UNet, VAE and text encoders (see
    `weight_files`), in that order of components and by file name, each line ending in a newline.

    Waits at most `timeout` seconds (None: until known) for a hash still being computed; None if it is not known by
    then, or never will be (a pipeline built in memory, or whose files went). A pipeline that `remember_weights` was
    not told of (one loaded without `load_pipeline`) starts its search here, in the default hash cache."""
    with _lock:
        settled = _settled.get(pipe)
    if settled is None:
        remember_weights(pipe, hash_cache_file())
        settled = _settled[pipe]
    settled.wait(timeout)
    with _lock:
        return _hashes.get(pipe)


def weights_identity(pipe) -> str:
    """What tells `pipe`'s weights apart in a key: its weights hash once known, else a name no other pipeline of
    this process gets (so a cell rendered before the hash is known is shared with no other pipeline)."""
    known = weights_hash(pipe)
    if known is not None:
        return known
    with _lock:
        if pipe not in _tokens:
            _tokens[pipe] = next(_numbers)
        return f"pipeline {_tokens[pipe]}"


def library_versions() -> dict[str, str | None]:
    return dict(installed_versions())  # a copy: each comparison's metadata is its own


@lru_cache(maxsize=1)  # installed versions do not change while the process runs; looking them up costs ~10 ms
def installed_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions
