"""Loading a pipeline once per (model, device, dtype) and handing the same object to every caller."""

import threading

import torch

from . import embedded

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
_pipelines: dict[tuple[str, str, torch.dtype], object] = {}
_lock = threading.Lock()


def pick_device(device: str | None = None) -> torch.device:
    """`None` or "auto": CUDA, else Apple MPS, else CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`None`: float16 on CUDA, float32 elsewhere (CPU and MPS half precision is slow or lossy)."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_pipeline(model: str = "embedded", device: str | None = None, dtype: str | torch.dtype | None = None):
    """A diffusers pipeline for `model`, loaded on first use and the same object on every later call."""
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    key = (model, str(device), dtype)
    with _lock:
        if key not in _pipelines:
            pipe = build(model).to(device)
            if pipe.unet.dtype != dtype:
                pipe.to(dtype=dtype)
            _pipelines[key] = pipe
        return _pipelines[key]


def build(model: str):
    if model == embedded.NAME:
        return embedded.build_embedded_pipeline()
    raise ValueError(f"unknown model {model!r}; this version runs the built-in model only: use {embedded.NAME!r}")
