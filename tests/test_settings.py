"""Flags and environment variables, read in one place."""

import argparse
from pathlib import Path

import pytest

from clipskip.settings import (
    AppSettings,
    LoadOptions,
    app_settings,
    cli_parser,
    hash_cache_file,
    load_options,
    lora_argument,
    skip_list,
)


def test_app_defaults_are_local_private_and_embedded():
    assert app_settings([], environ={}) == AppSettings(
        models=("embedded",),
        device="auto",
        dtype=None,
        options=LoadOptions(),
        host="127.0.0.1",
        port=7860,
        share=False,
        max_loaded=2,
    )


def test_app_honours_gradio_environment_and_flags_win():
    env = {"GRADIO_SERVER_PORT": "9000", "GRADIO_SERVER_NAME": "0.0.0.0"}
    assert (app_settings([], environ=env).port, app_settings([], environ=env).host) == (9000, "0.0.0.0")
    flags = app_settings(["--port", "9100", "--share", "--device", "cpu", "--dtype", "bf16"], environ=env)
    assert (flags.port, flags.share, flags.device, flags.dtype) == (9100, True, "cpu", "bf16")


def test_models_come_from_repeated_flags_or_the_environment():
    env = {"CLIPSKIP_MODELS": "embedded, stabilityai/sdxl-turbo ,,./local"}
    assert app_settings([], environ=env).models == ("embedded", "stabilityai/sdxl-turbo", "./local")
    flags = app_settings(["--model", "a/b", "--model", "c.safetensors", "--model", "a/b"], environ=env)
    assert flags.models == ("a/b", "c.safetensors")  # flags win; each model once


def test_load_options_from_flags():
    settings = app_settings(
        ["--config", "sd15", "--allow-pickle", "--no-safety-checker", "--offload", "--max-loaded", "3"], environ={}
    )
    assert settings.options == LoadOptions(config="sd15", allow_pickle=True, safety_checker=False, offload=True)
    assert settings.max_loaded == 3
    assert app_settings(["--compile"], environ={}).options == LoadOptions(compile=True)
    assert cli_parser().parse_args(["--prompt", "a", "--out", "x", "--compile"]).compile
    assert not settings.options.compile
    tuned = app_settings(["--max-batch", "4", "--cache-mb", "0", "--concurrency", "2", "--max-queue", "5"], {})
    assert (tuned.max_batch, tuned.cache_mb, tuned.concurrency, tuned.max_queue) == (4, 0, 2, 5)
    defaults = app_settings([], environ={})
    assert (defaults.max_batch, defaults.cache_mb, defaults.concurrency, defaults.max_queue) == (None, 256, 1, 20)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-loaded", "0"], "--max-loaded must be 1 or more"),
        (["--concurrency", "0"], "--concurrency must be 1 or more"),
        (["--max-queue", "-1"], "--max-queue must be 0 or more"),
        (["--cache-mb", "-1"], "--cache-mb must be 0 or more"),
        (["--max-batch", "0"], "argument --max-batch: must be a whole number, 1 or more, not '0'"),
        (["--max-batch", "-1"], "argument --max-batch: must be a whole number, 1 or more, not '-1'"),
        (["--max-batch", "2.5"], "argument --max-batch: invalid int value: '2.5'"),
        (
            ["--offload", "--concurrency", "2"],
            "--offload moves components on and off the GPU per render: use it with --concurrency 1",
        ),
        (["--port", "9" * 5000], "argument --port: invalid int value: '" + "9" * 38 + "…"),
        (
            ["--dtype", "f" * 5000],
            "argument --dtype: invalid choice: '" + "f" * 38 + "… (choose from 'fp16', 'bf16', 'fp32')",
        ),
        (
            ["--config", "./no/such/folder"],
            "argument --config: no such folder: './no/such/folder' (give a diffusers folder or a Hub id)",
        ),
    ],
)
def test_impossible_app_flags_are_refused_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        app_settings(flags, environ={})
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"app.py: error: {message}"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "argument --max-batch: must be a whole number, 1 or more, not '0'"),
        (["--max-batch", "-1"], "argument --max-batch: must be a whole number, 1 or more, not '-1'"),
        (["--seed", "9" * 5000], "argument --seed: invalid int value: '" + "9" * 38 + "…"),
        (["--steps", "2.5"], "argument --steps: invalid int value: '2.5'"),
        (["--cfg", "x" * 5000], "argument --cfg: invalid float value: '" + "x" * 38 + "…"),
        (
            ["--sampler", "Heun"],
            "argument --sampler: invalid choice: 'Heun' (choose from 'Euler a', 'Euler', "
            "'DPM++ 2M', 'DPM++ 2M Karras', 'DDIM', 'UniPC')",
        ),
        (
            ["--seeds", "random:" + "9" * 5000],
            "argument --seeds: seeds is 5,007 characters long; at most 200 (up to "
            "8 seeds, like 42, 43, 44, or random:3)",
        ),
        (
            ["--skips", "1," * 5000],
            "argument --skips: expected CLIP skips separated by commas, like 1,2,3,4 or 1,1.5,L1/G2, or a1111-sdxl; "
            "got 10,000 characters, more than the 200 any list of skips needs",
        ),
        (
            ["--config", "/no/such/folder"],
            "argument --config: no such folder: '/no/such/folder' (give a diffusers folder or a Hub id)",
        ),
    ],
)
def test_impossible_cli_flags_are_refused_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_parser().parse_args(["--prompt", "a", "--out", "o", *flags])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m clipskip: error: {message}"


def test_max_batch_and_config_that_are_fine_pass(tmp_path):
    args = cli_parser().parse_args(["--prompt", "a", "--out", "o", "--max-batch", "1", "--config", str(tmp_path)])
    assert (args.max_batch, args.config) == (1, str(tmp_path))
    hub = cli_parser().parse_args(["--prompt", "a", "--out", "o", "--config", "stabilityai/sdxl-turbo"])
    assert hub.config == "stabilityai/sdxl-turbo"  # a Hub id is not looked for on disk


def test_skip_lists():
    assert skip_list("1,2,3,4") == (1, 2, 3, 4)
    assert skip_list("4, 2") == (4, 2)
    assert skip_list("1, 1.5,l1/g2,L2/G2, A1111-SDXL") == (1, "1.5", "L1/G2", 2, "a1111-sdxl")
    with pytest.raises(
        argparse.ArgumentTypeError,
        match="^expected CLIP skips separated by commas, like 1,2,3,4 or 1,1.5,L1/G2, or a1111-sdxl; got '1-4'$",
    ):
        skip_list("1-4")


def test_cli_options():
    args = cli_parser().parse_args(["--prompt", "a fox", "--out", "o", "--skips", "2,1", "--sampler", "Euler a"])
    assert (args.prompt, args.skips, args.sampler, args.seed, args.model) == (
        "a fox",
        (2, 1),
        "Euler a",
        -1,
        "embedded",
    )
    assert load_options(args) == LoadOptions()
    args = cli_parser().parse_args(["--prompt", "x", "--out", "o", "--model", "m.ckpt", "--allow-pickle"])
    assert load_options(args) == LoadOptions(allow_pickle=True)


def test_the_hash_cache_is_in_the_user_cache_folder_unless_the_environment_names_another():
    home = Path.home()
    assert hash_cache_file({}) == home / ".cache" / "clipskip" / "hashes.json"
    assert hash_cache_file({"XDG_CACHE_HOME": "/var/cache/me"}) == Path("/var/cache/me/clipskip/hashes.json")
    named = {"XDG_CACHE_HOME": "/var/cache/me", "CLIPSKIP_HASH_CACHE": "~/h.json"}
    assert hash_cache_file(named) == home / "h.json"


def test_lora_flag_takes_a_file_and_a_weight(tmp_path):
    lora = tmp_path / "detail.safetensors"
    lora.write_bytes(b"")  # read when the model loads; the flag checks the name and that it exists
    args = app_settings(["--lora", str(lora), "--lora", f"{lora}:0.5", "--lora", f"{lora}:-4"], {})
    assert args.options.loras == (str(lora),)  # one file, loaded once
    assert args.lora_weights == (("detail", -4.0),)  # the last weight given for a name
    assert app_settings(["--lora", f"{lora}:0"], {}).lora_weights == (("detail", 0.0),)
    for text, message in [
        (f"{lora}:5", "must be from -4 to 4"),
        (f"{lora}:nan", "must be from -4 to 4"),
        (f"{tmp_path / 'style.pt'}:1", "is not a .safetensors file"),
        (str(tmp_path / "missing.safetensors"), "no such file"),
    ]:
        with pytest.raises(SystemExit):
            app_settings(["--lora", text], {})
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            lora_argument(text)
