"""Flags and environment variables, read in one place."""

import argparse

import pytest

from clipskip.settings import AppSettings, LoadOptions, app_settings, cli_parser, load_options, skip_list


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
    "flags",
    [["--max-loaded", "0"], ["--concurrency", "0"], ["--max-queue", "-1"], ["--max-batch", "0"], ["--cache-mb", "-1"]]
    + [["--offload", "--concurrency", "2"]],
)
def test_impossible_app_flags_are_refused(flags, capsys):
    with pytest.raises(SystemExit):
        app_settings(flags, environ={})
    assert flags[0] in capsys.readouterr().err


def test_skip_lists():
    assert skip_list("1,2,3,4") == (1, 2, 3, 4)
    assert skip_list("4, 2") == (4, 2)
    with pytest.raises(argparse.ArgumentTypeError, match="like 1,2,3,4; got '1-4'"):
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
