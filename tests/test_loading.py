"""A pipeline loads once and is shared; devices and precisions are picked sensibly; unknown names say so."""

import subprocess
import sys

import pytest
import torch

from clipskip.loading import load_pipeline, pick_device, pick_dtype


def test_the_same_pipeline_object_every_time(pipe):
    assert load_pipeline("embedded", device="cpu") is pipe
    assert load_pipeline("embedded", device="cpu", dtype="fp32") is pipe


def test_auto_device_is_cpu_without_an_accelerator():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    assert pick_device(None) == pick_device("auto") == torch.device("cpu")


def test_precision_defaults_and_names():
    assert pick_dtype(None, torch.device("cuda")) is torch.float16
    assert pick_dtype(None, torch.device("cpu")) is torch.float32
    assert pick_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'; use one of fp16, bf16, fp32"):
        pick_dtype("fp8", torch.device("cpu"))


def test_unknown_device_and_model_are_clear_errors():
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
    with pytest.raises(ValueError, match="unknown model 'sd-1.5'"):
        load_pipeline("sd-1.5", device="cpu")


def test_importing_clipskip_loads_no_model_and_no_torch():
    code = "import sys, clipskip; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "False False\n"
