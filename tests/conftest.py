"""Shared fixtures: the embedded pipeline on CPU, and a guard that fails any test reaching past this machine."""

import ipaddress
import os
import socket
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"  # set before anything imports huggingface_hub
# weights hashes are kept in a file: the tests' own, never the one in the home folder
os.environ["CLIPSKIP_HASH_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="clipskip-tests-"), "hashes.json")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import pytest  # noqa: E402

from clipskip import loading  # noqa: E402
from clipskip.loading import load_pipeline  # noqa: E402
from tests import tiny_models  # noqa: E402
from tests.single_file import save_sd3_single_file, save_single_file  # noqa: E402

TINY = {"steps": 2, "width": 64, "height": 64}  # the built-in model's native size, two denoising steps

_connect = socket.socket.connect


def spy_on_calls(monkeypatch, pipeline_class) -> dict:
    """The keyword arguments of the pipeline's next call, recorded as it runs."""
    seen = {}
    run = pipeline_class.__call__

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", spy)
    return seen


def _local_only(sock, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise OSError(f"test tried to reach the network: {address}")
    return _connect(sock, address)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where CUDA is available; elsewhere they are skipped, saying why."""
    import torch

    if torch.cuda.is_available():
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(autouse=True, scope="session")
def no_network():
    socket.socket.connect = _local_only
    yield
    socket.socket.connect = _connect


@pytest.fixture(autouse=True, scope="session")
def roomy_cache():
    """Every model the tests load stays loaded, so fixtures stay the objects load_pipeline returns."""
    loading.pipelines.max_loaded = 32


@pytest.fixture(scope="session")
def pipe():
    """The embedded pipeline on CPU, float32: built once, shared like the app shares it."""
    return load_pipeline("embedded", device="cpu")


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """Tiny SD 1.x, SD 2.x and SDXL checkpoints on disk: diffusers folders and single .safetensors files."""
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for family in ("sd1", "sd2", "sdxl"):
        model = getattr(tiny_models, family)()
        model.save_pretrained(root / family)
        save_single_file(model, root / f"{family}.safetensors")
        paths[family] = root / family
        paths[f"{family}.safetensors"] = root / f"{family}.safetensors"
    return paths


@pytest.fixture(scope="session")
def sd3_folder(tmp_path_factory):
    """A tiny SD 3 pipeline (CLIP-L, CLIP-G, T5, a transformer) saved once as a diffusers folder, and beside it as
    single files in Stability AI's layout: `sd3.safetensors` with T5, `sd3-no-t5.safetensors` without."""
    folder = tmp_path_factory.mktemp("models") / "sd3"
    model = tiny_models.sd3()
    model.save_pretrained(folder)
    save_sd3_single_file(model, folder.parent / "sd3.safetensors")
    save_sd3_single_file(model, folder.parent / "sd3-no-t5.safetensors", t5=False)
    return folder


@pytest.fixture(scope="session")
def sd3(sd3_folder):
    """The tiny SD 3 folder loaded as the app loads models, on CPU."""
    return load_pipeline(str(sd3_folder), device="cpu")
