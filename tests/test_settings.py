"""Flags and environment variables, read in one place."""

import argparse

import pytest

from clipskip.settings import AppSettings, app_settings, cli_parser, skip_list


def test_app_defaults_are_local_and_private():
    assert app_settings([], environ={}) == AppSettings("embedded", "auto", None, "127.0.0.1", 7860, False)


def test_app_honours_gradio_environment_and_flags_win():
    env = {"GRADIO_SERVER_PORT": "9000", "GRADIO_SERVER_NAME": "0.0.0.0"}
    assert (app_settings([], environ=env).port, app_settings([], environ=env).host) == (9000, "0.0.0.0")
    flags = app_settings(["--port", "9100", "--share", "--device", "cpu", "--dtype", "bf16"], environ=env)
    assert (flags.port, flags.share, flags.device, flags.dtype) == (9100, True, "cpu", "bf16")


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
