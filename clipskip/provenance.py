"""Where a comparison's images came from: a hash of the model's weights and the versions of the libraries used."""

import hashlib
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from weakref import WeakKeyDictionary

import torch

LIBRARIES = ("torch", "diffusers", "transformers", "gradio")
_files: WeakKeyDictionary = WeakKeyDictionary()  # pipeline -> the single checkpoint file it was loaded from
_hashes: WeakKeyDictionary = WeakKeyDictionary()  # pipeline -> its weights hash, computed once


def remember_file(pipe, path: Path) -> None:
    _files[pipe] = Path(path)


def weights_hash(pipe) -> str:
    """sha256 of the checkpoint file for single files (its first 10 characters are AUTOMATIC1111's "Model hash"),
    else of every weight of the UNet, VAE and text encoders in a fixed order. Computed once per loaded pipeline."""
    if pipe not in _hashes:
        digest = hashlib.sha256()
        if pipe in _files:
            with open(_files[pipe], "rb") as file:
                for block in iter(lambda: file.read(1 << 24), b""):
                    digest.update(block)
        else:
            for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
                module = getattr(pipe, name, None)
                for key, tensor in sorted(module.state_dict().items()) if module is not None else ():
                    digest.update(key.encode())
                    digest.update(
                        tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                    )
        _hashes[pipe] = digest.hexdigest()
    return _hashes[pipe]


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
