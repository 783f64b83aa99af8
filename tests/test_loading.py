"""Loading: the embedded model, diffusers folders and single files of each family, refusals that say why, a bounded
cache. Everything offline: checkpoints are tiny ones saved to a temp folder."""

import json
import re
import subprocess
import sys

import pytest
import torch
from huggingface_hub.errors import GatedRepoError, OfflineModeIsEnabled, RepositoryNotFoundError
from safetensors.torch import load_file

from clipskip.encoding import encoder_layers
from clipskip.families import SD1, SD2, SD3, SDXL, detect_family
from clipskip.loading import (
    LoadOptions,
    ModelLoadError,
    PipelineCache,
    explain,
    free_device_bytes,
    load_pipeline,
    model_name,
    pick_device,
    pick_dtype,
)
from tests import tiny_models

FAMILIES = [("sd1", SD1, "StableDiffusionPipeline", 6), ("sd2", SD2, "StableDiffusionPipeline", 5)]
FAMILIES += [("sdxl", SDXL, "StableDiffusionXLPipeline", 5)]  # 5 and 7 layers: the smaller counts


def same_weights(a, b) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_the_same_pipeline_object_every_time(pipe):
    assert load_pipeline("embedded", device="cpu") is pipe
    assert load_pipeline("embedded", device="cpu", dtype="fp32") is pipe


@pytest.mark.parametrize(("name", "family", "class_name", "layers"), FAMILIES)
def test_diffusers_folders_load_with_their_family(saved, name, family, class_name, layers):
    pipe = load_pipeline(str(saved[name]), device="cpu")
    assert type(pipe).__name__ == class_name
    assert detect_family(pipe) is family
    assert encoder_layers(pipe) == layers
    assert load_pipeline(str(saved[name]), device="cpu") is pipe


@pytest.mark.parametrize(("name", "family", "class_name", "layers"), FAMILIES)
def test_single_safetensors_files_load_with_a_local_config(saved, name, family, class_name, layers):
    options = LoadOptions(config=str(saved[name]))
    pipe = load_pipeline(str(saved[f"{name}.safetensors"]), device="cpu", options=options)
    folder = load_pipeline(str(saved[name]), device="cpu")
    assert type(pipe).__name__ == class_name and detect_family(pipe) is family
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if hasattr(folder, component):
            assert same_weights(getattr(pipe, component), getattr(folder, component)), component


def test_a_single_file_is_named_by_its_file_name_never_none(saved, tmp_path):
    """`Model: None` was written into every cell of a single file loaded with --config: it has no name_or_path."""
    from clipskip import compare
    from clipskip.formats import read_settings
    from clipskip.outputs import write_outputs
    from tests.conftest import TINY

    path = saved["sd1.safetensors"]
    pipe = load_pipeline(str(path), device="cpu", options=LoadOptions(config=str(saved["sd1"])))
    assert pipe.name_or_path is None and model_name(str(path)) == path.stem
    result = compare(pipe, "a red circle", seed=1, skips=[1], **TINY)
    assert result.metadata["model"] == path.stem
    write_outputs(result, tmp_path)
    assert read_settings(tmp_path / "skip-1.png", SD1)[0]["model"] == path.stem
    assert read_settings(tmp_path / "grid.png", SD1)[0]["model"] == path.stem
    assert model_name(str(saved["sd1"])) == saved["sd1"].name  # a folder by its name
    assert model_name(str(saved["sd1"]) + "/") == saved["sd1"].name
    assert (model_name("embedded"), model_name("org/model")) == ("embedded", "org/model")  # Hub ids as they are


def test_sd3_folders_load_as_sd3_pipelines_with_t5_and_a_sliced_tiled_vae(sd3, sd3_folder):
    assert type(sd3).__name__ == "StableDiffusion3Pipeline" and detect_family(sd3) is SD3
    assert encoder_layers(sd3) == 5 and type(sd3.text_encoder_3).__name__ == "T5EncoderModel"
    assert sd3.vae.use_slicing and sd3.vae.use_tiling
    assert load_pipeline(str(sd3_folder), device="cpu") is sd3


@pytest.mark.parametrize("t5", [True, False], ids=["with T5", "without T5"])
def test_sd3_single_files_load_with_a_local_config_and_without_t5_where_they_have_none(sd3, sd3_folder, t5):
    from clipskip import compare
    from tests.conftest import TINY

    path = sd3_folder.parent / ("sd3.safetensors" if t5 else "sd3-no-t5.safetensors")
    pipe = load_pipeline(str(path), device="cpu", options=LoadOptions(config=str(sd3_folder)))
    assert type(pipe).__name__ == "StableDiffusion3Pipeline" and detect_family(pipe) is SD3
    for component in ("transformer", "vae", "text_encoder", "text_encoder_2", *(("text_encoder_3",) if t5 else ())):
        assert same_weights(getattr(pipe, component), getattr(sd3, component)), component
    assert (pipe.text_encoder_3 is None, pipe.tokenizer_3 is None) == (not t5, not t5)
    result = compare(pipe, "a red circle", seed=1, skips=[2], prompt_syntax="plain", **TINY | {"steps": 1})
    assert result.metadata["columns"][0]["t5"] == ("unchanged" if t5 else "absent: zeros, as diffusers")
    assert result.metadata["model"] == path.stem and len(result.metadata["weights_sha256"] or "0" * 64) == 64


@pytest.mark.parametrize("t5", [False, True], ids=["without T5", "with T5"])
def test_an_sd3_single_file_goes_to_diffusers_sd3_loader_without_t5_where_it_has_none(tmp_path, monkeypatch, t5):
    import diffusers
    from safetensors.torch import save_file

    tensors = {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": torch.zeros(1)}
    if t5:
        tensors["text_encoders.t5xxl.transformer.shared.weight"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "sd3.safetensors"))
    seen = {}

    def from_single_file(path, **kwargs):
        seen.update(kwargs, path=path)
        raise OSError("no configs here")

    monkeypatch.setattr(diffusers.StableDiffusion3Pipeline, "from_single_file", staticmethod(from_single_file))
    with pytest.raises(ModelLoadError, match=r"sd3.safetensors': OSError: no configs here \(pass --config with"):
        load_pipeline(str(tmp_path / "sd3.safetensors"), device="cpu")
    assert seen["path"] == str(tmp_path / "sd3.safetensors")
    without_t5 = {"text_encoder_3": None, "tokenizer_3": None}  # SD 3 runs without it; diffusers then uses zeros
    assert {key: seen[key] for key in without_t5 if key in seen} == ({} if t5 else without_t5)


def test_a_single_file_without_config_offline_says_to_pass_one(saved):
    with pytest.raises(ModelLoadError, match="pass --config with a diffusers folder or Hub id of the same"):
        load_pipeline(str(saved["sd1.safetensors"]), device="cpu")


# Written out rather than read from loading.PICKLE_SUFFIXES, so that dropping one there fails here.
PICKLES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


@pytest.mark.parametrize("suffix", PICKLES)
def test_pickled_single_files_are_refused_unless_allowed(saved, tmp_path, suffix):
    pickled = tmp_path / f"model{suffix}"
    torch.save({"state_dict": load_file(saved["sd1.safetensors"])}, pickled)
    refusal = (
        f"refusing model{suffix}: {suffix} files are Python pickles, and loading one can run arbitrary code. "
        "Use a .safetensors version of the model, convert it"
    )
    with pytest.raises(ModelLoadError, match=re.escape(refusal) + ".*or pass --allow-pickle if you trust its source"):
        load_pipeline(str(pickled), device="cpu", options=LoadOptions(config=str(saved["sd1"])))
    options = LoadOptions(config=str(saved["sd1"]), allow_pickle=True)
    assert detect_family(load_pipeline(str(pickled), device="cpu", options=options)) is SD1


def test_diffusers_folders_with_only_pickled_bin_weights_are_refused_unless_allowed(tmp_path):
    folder = tmp_path / "bin-weights"
    tiny_models.sd1().save_pretrained(folder, safe_serialization=False)  # the UNet and VAE as .bin
    encoder = folder / "text_encoder"  # transformers 5 writes only safetensors: pickle this one by hand
    torch.save(load_file(encoder / "model.safetensors"), encoder / "pytorch_model.bin")
    (encoder / "model.safetensors").unlink()
    assert not list(folder.rglob("*.safetensors"))
    refusal = r"refusing bin-weights: its text_encoder, unet, vae weights are only \.bin files, Python pickles"
    with pytest.raises(ModelLoadError, match=refusal):
        load_pipeline(str(folder), device="cpu")
    allowed = load_pipeline(str(folder), device="cpu", options=LoadOptions(allow_pickle=True))
    assert detect_family(allowed) is SD1


def test_missing_paths_and_other_folders_are_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match=r"could not load model '/no/such/model\.safetensors': no such file"):
        load_pipeline("/no/such/model.safetensors", device="cpu")
    with pytest.raises(ModelLoadError, match="a diffusers folder has a model_index.json and this one has none"):
        load_pipeline(str(tmp_path), device="cpu")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelLoadError, match="it is a FluxPipeline; Flux conditions on T5 and on CLIP-L's pooled"):
        load_pipeline(str(tmp_path), device="cpu")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(ModelLoadError, match="it is a KandinskyPipeline; clipskip compares CLIP skip on Stable Diff"):
        load_pipeline(str(tmp_path), device="cpu")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="expected a .safetensors file or a diffusers folder"):
        load_pipeline(str(tmp_path / "notes.txt"), device="cpu")


def test_an_unknown_hub_id_offline_names_model_and_cause():
    with pytest.raises(ModelLoadError, match="could not load model 'nobody/no-such-model': not in the local Hugging"):
        load_pipeline("nobody/no-such-model", device="cpu")
    with pytest.raises(ModelLoadError, match="not a Hub id"):
        load_pipeline("not a model!", device="cpu")


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (GatedRepoError, "it is gated: accept its licence on huggingface.co and log in"),
        (RepositoryNotFoundError, "no such model on the Hugging Face Hub (check the spelling)"),
        (OfflineModeIsEnabled, "the Hub is unreachable"),
        (ConnectionError, "the Hugging Face Hub could not be reached"),
    ],
)
def test_hub_failures_are_explained(error, says):
    cause = error.__new__(error)  # only the type matters, and the Hub's own errors need a live HTTP response
    wrapper = OSError("diffusers could not load it")
    wrapper.__cause__ = cause
    assert says in explain(wrapper)


def test_safety_checker_stays_unless_turned_off(tmp_path):
    tiny_models.sd1_with_safety_checker().save_pretrained(tmp_path / "safe")
    kept = load_pipeline(str(tmp_path / "safe"), device="cpu")
    assert kept.safety_checker is not None
    off = load_pipeline(str(tmp_path / "safe"), device="cpu", options=LoadOptions(safety_checker=False))
    assert off.safety_checker is None and off is not kept


def test_cache_keeps_the_most_recently_used():
    cache, loads = PipelineCache(max_loaded=2), []

    def loader(name):
        return lambda: loads.append(name) or object()

    a = cache.get(("a",), loader("a"))
    cache.get(("b",), loader("b"))
    assert cache.get(("a",), loader("a")) is a  # a is now the most recent
    cache.get(("c",), loader("c"))  # evicts b
    assert cache.keys() == [("a",), ("c",)]
    cache.get(("b",), loader("b"))
    assert loads == ["a", "b", "c", "b"]


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


def test_unknown_device_and_offload_without_cuda_are_clear_errors():
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
    with pytest.raises(ValueError, match="--offload .* needs --device cuda"):
        load_pipeline("embedded", device="cpu", options=LoadOptions(offload=True))


def test_free_device_memory_is_measured_on_cuda_only_and_channels_last_is_for_cuda_only():
    assert free_device_bytes(torch.device("cpu")) is None
    assert load_pipeline("embedded", device="cpu").unet.conv_in.weight.is_contiguous()  # channels-last: CUDA only


def test_compile_option_compiles_the_unet_in_place_and_nothing_else():
    eager = load_pipeline("embedded", device="cpu")
    compiled = load_pipeline("embedded", device="cpu", options=LoadOptions(compile=True))
    assert compiled is not eager and type(compiled.unet) is type(eager.unet)  # still a UNet, with its config
    assert compiled.unet._compiled_call_impl is not None  # compiled on its first call, which this test never makes
    assert eager.unet._compiled_call_impl is None and compiled.vae._compiled_call_impl is None


def test_importing_clipskip_loads_no_model_and_no_torch():
    code = "import sys, clipskip; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "False False\n"


def test_loaded_pipelines_use_sdpa_attention_and_a_sliced_tiled_vae(saved):
    from diffusers.models.attention_processor import AttnProcessor2_0

    sdxl = load_pipeline(str(saved["sdxl"]), device="cpu")
    assert {type(p) for p in sdxl.unet.attn_processors.values()} == {AttnProcessor2_0}  # torch's SDPA
    assert sdxl.vae.use_slicing and sdxl.vae.use_tiling


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("model.diffusion_model.double_blocks.0.img_attn.qkv.weight", "it is a FluxPipeline; Flux conditions on T5"),
        ("double_blocks.0.img_attn.qkv.weight", "it is a FluxPipeline; Flux conditions on T5"),
    ],
)
def test_a_single_file_without_clip_skip_is_refused_with_the_reason_before_anything_loads(tmp_path, key, reason):
    from safetensors.torch import save_file

    save_file({key: torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelLoadError, match=f"could not load model '.*other.safetensors': {reason}"):
        load_pipeline(str(tmp_path / "other.safetensors"), device="cpu")


@pytest.mark.parametrize(
    "content", [b"garbage", b"\x00" * 8, (10**12).to_bytes(8, "little") + b"{}", (2).to_bytes(8, "little") + b"[]"]
)
def test_a_damaged_safetensors_file_is_a_load_error_naming_it_not_a_crash(tmp_path, content):
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(ModelLoadError, match=r"could not load model '.*bad.safetensors': it is not a readable"):
        load_pipeline(str(tmp_path / "bad.safetensors"), device="cpu")
