"""The app on localhost, driven through gradio_client at /compare: good, bad, bad, good again."""

import asyncio
import json
import re
import socket
import sys
import types
from dataclasses import replace

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from clipskip.settings import AppSettings, LoadOptions
from clipskip.ui import main, serve

GOOD = {
    "prompt": "a fox in the snow",
    "negative_prompt": "blurry",
    "seed": 42,
    "skips": [1, 2, 3],
    "steps": 2,
    "guidance_scale": 7.5,
    "width": 64,
    "height": 64,
    "scheduler": "Euler a",
    "model": "embedded",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings(*models: str) -> AppSettings:
    return AppSettings(models, "cpu", None, LoadOptions(), "127.0.0.1", free_port(), False, 32)


@pytest.fixture(scope="module")
def client(pipe):
    demo = serve(settings("embedded"), prevent_thread_lock=True)
    yield Client(demo.local_url, verbose=False)
    demo.close()


def test_compare_endpoint_good_bad_bad_good(client):
    grid, gallery, metadata = client.predict(**GOOD, api_name="/compare")
    assert Image.open(grid).format == "PNG"
    assert len(gallery) == 3
    assert [item["caption"] for item in gallery] == [f"skip {n} · layer {13 - n}/12" for n in (1, 2, 3)]
    assert Image.open(gallery[0]["image"]).size == (64, 64)
    assert "Seed: 42, Size: 64x64" in Image.open(gallery[0]["image"]).info["parameters"]  # files keep their text
    assert json.loads(Image.open(grid).info["clipskip"])["seed"] == 42
    assert (metadata["seed"], metadata["skips"], metadata["sampler"]) == (42, [1, 2, 3], "Euler a")

    with pytest.raises(AppError, match="Choose at least one CLIP skip value"):
        client.predict(**GOOD | {"skips": []}, api_name="/compare")
    with pytest.raises(AppError, match="Width must be a multiple of 8 from 64 to 2048, not 100"):
        client.predict(**GOOD | {"width": 100}, api_name="/compare")

    _, again, metadata = client.predict(**GOOD | {"skips": [4]}, api_name="/compare")
    assert len(again) == 1 and metadata["skips"] == [4]


def test_endpoint_parameters_are_named_as_documented(client):
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/compare"]["parameters"]
    names = [*GOOD, "seeds", "prompt_rows", "reference", "prompt_syntax", "loras"]
    assert [p["parameter_name"] for p in parameters] == names
    assert [p["parameter_has_default"] for p in parameters][-6:] == [True] * 6  # model, rows, reference, syntax, loras


def test_a_random_seed_is_reported_and_renders_the_same_cell(client, pipe):
    from clipskip import compare

    _, gallery, metadata = client.predict(**GOOD | {"seed": -1, "skips": [1]}, api_name="/compare")
    assert metadata["rows"][0]["seed_requested"] == -1
    args = {k: v for k, v in GOOD.items() if k not in ("prompt", "model", "skips", "seed")}
    again = compare(pipe, GOOD["prompt"], **args, skips=[1], seed=metadata["seed"])
    got = np.asarray(Image.open(gallery[0]["image"]).convert("RGB")).astype(int)
    assert np.abs(got - np.asarray(again.images[1]).astype(int)).max() <= 2


def test_several_models_each_offered_by_name_and_a_broken_one_does_not_stop_the_others(
    pipe, saved, tmp_path, monkeypatch
):
    from clipskip import ui

    broken, real, loads = str(tmp_path / "missing.safetensors"), ui.load_pipeline, []
    monkeypatch.setattr(ui, "load_pipeline", lambda model, **kwargs: loads.append(model) or real(model, **kwargs))
    demo = serve(settings("embedded", str(saved["sdxl"]), broken), prevent_thread_lock=True)
    try:
        client = Client(demo.local_url, verbose=False)
        grid, gallery, metadata = client.predict(**GOOD | {"model": "sdxl"}, api_name="/compare")
        assert metadata["family"] == "SDXL" and metadata["model"] == "sdxl"  # its name, not the server's path
        assert len(metadata["weights_sha256"]) == 64  # which tells two files of one name apart
        assert [column["native"] for column in metadata["columns"]] == [False, True, False]
        texts = [json.dumps(metadata), Image.open(grid).info["clipskip"]]
        texts += [Image.open(item["image"]).info["parameters"] for item in gallery]
        texts.append(httpx.get(f"{demo.local_url}config").text)
        assert not [text for text in texts if str(tmp_path.parent) in text or str(saved["sdxl"]) in text]
        for _ in range(2):  # the second answered at once: a model whose files are wrong is not loaded again
            with pytest.raises(AppError, match=r"Could not load model 'missing.safetensors': no such file or folder"):
                client.predict(**GOOD | {"model": "missing.safetensors"}, api_name="/compare")
        assert loads.count(broken) == 1
        for path in (str(saved["sdxl"]), str(saved["sd1"])):  # only the server's own names: nobody types a path
            with pytest.raises(AppError, match="Unknown model '/.*; this server offers: embedded, sdxl, missing"):
                client.predict(**GOOD | {"model": path}, api_name="/compare")
        _, _, metadata = client.predict(**GOOD, api_name="/compare")
        assert metadata["model"] == "embedded"
    finally:
        demo.close()


def test_public_names_hide_paths_and_stay_unique(tmp_path):
    from clipskip.ui import public_names

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.safetensors").touch()
    (tmp_path / "b" / "x.safetensors").touch()
    models = ["embedded", "stabilityai/sdxl-turbo", str(tmp_path / "a" / "x.safetensors")]
    models += [str(tmp_path / "b" / "x.safetensors"), "./relative/model"]
    assert public_names(models) == {
        "embedded": "embedded",
        "stabilityai/sdxl-turbo": "stabilityai/sdxl-turbo",
        "x": models[2],  # as AUTOMATIC1111 names a checkpoint: its file name without extension
        "x (2)": models[3],
        "model": "./relative/model",
    }


def test_app_exits_with_the_reason_when_its_first_model_cannot_load(capsys, tmp_path):
    code = main(["--model", str(tmp_path / "nothing.safetensors"), "--port", str(free_port()), "--device", "cpu"])
    assert code == 2
    assert "clipskip: error: could not load model" in capsys.readouterr().err


def test_renders_run_under_spaces_gpu_on_zerogpu_and_unchanged_elsewhere(monkeypatch):
    from clipskip.ui import on_zero_gpu

    def render():
        return "image"

    wrapped = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration: lambda fn: wrapped.append((fn, duration)) or fn
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert on_zero_gpu(render)() == "image" and wrapped == [(render, 120)]
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError, as off Spaces
    assert on_zero_gpu(render) is render


def test_the_form_follows_the_model_native_skip_marked_and_selected_around_it(pipe, saved):
    from clipskip.loading import load_pipeline
    from clipskip.ui import describe

    embedded = describe("embedded", pipe)
    assert embedded.skips == [1, 2, 3, 4] and embedded.choices[0] == ("1 (native)", 1) and len(embedded.choices) == 12
    assert (embedded.width, embedded.height) == (64, 64)
    sdxl = describe("x", load_pipeline(str(saved["sdxl"]), device="cpu"))
    assert sdxl.skips == [1, 2, 3, 4] and sdxl.choices[1] == ("2 (native)", 2) and len(sdxl.choices) == 5
    assert "SDXL · text encoder layers: 5 and 7 · native CLIP skip 2" in sdxl.note


def test_reuse_takes_the_first_seed_used():
    from clipskip.ui import reuse_seed

    assert (reuse_seed("42"), reuse_seed("42, 43"), reuse_seed(""), reuse_seed(None)) == (42, 42, -1, -1)
    assert (reuse_seed("4294967295"), reuse_seed("4294967296"), reuse_seed(["7"]), reuse_seed("²")) == (
        2**32 - 1,
        -1,
        -1,
        -1,
    )


def test_the_page_lists_the_servers_textual_inversions_by_name(pipe):
    import copy

    from clipskip.ui import describe

    assert "textual inversions" not in describe("embedded", pipe).note
    with_two = copy.copy(pipe)
    with_two.clipskip_embeddings = {"easynegative": object(), "shiny": object()}
    assert describe("embedded", with_two).note.endswith(" · textual inversions: `easynegative`, `shiny`")


def test_lora_weights_are_the_servers_own_names_within_bounds():
    from clipskip.ui import MAX_LORA_TEXT_CHARS, lora_text, lora_weights

    server = {"detail": 0.0, "style": 1.0}
    assert lora_weights("", server) == server and lora_weights(None, server) == server
    assert lora_weights(" detail:0.5 ,style:-1", server) == {"detail": 0.5, "style": -1.0}
    assert lora_weights(lora_text(["detail", "style"], [0.25, 0]), server) == {"detail": 0.25, "style": 0.0}
    for text, message in [
        ("other:1", "loras names 'other:1'; give name:weight for this server's LoRAs: detail, style"),
        ("detail", "loras names 'detail'"),
        ("detail:5", "must be from -4 to 4"),
        ("detail:nan", "must be from -4 to 4"),
        ("detail:x", "not 'x'"),
        ("detail:1, style:0, detail:0", "loras gives detail twice; give each LoRA's weight once"),
        ("detail, style", "loras names 'detail'"),
        ("x" * (MAX_LORA_TEXT_CHARS + 1), "at most 4,000"),
        (["detail:1"], "loras must be text"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            lora_weights(text, server)
    with pytest.raises(ValueError, match="none \\(the server loads them with --lora FILE\\)"):
        lora_weights("detail:1", {})


def test_the_page_lists_the_servers_loras_and_compare_takes_their_weights(saved, tmp_path):
    from tests.test_loras import diffusers_file, peft_weights

    lora = diffusers_file("sd1", tmp_path, peft_weights("sd1"))
    options = LoadOptions(loras=(str(lora),))
    app = AppSettings((str(saved["sd1"]),), "cpu", None, options, "127.0.0.1", free_port(), False, 32)
    demo = serve(replace(app, lora_weights=(("detail", 0.0),)), prevent_thread_lock=True)
    try:
        client = Client(demo.local_url, verbose=False)
        asked = GOOD | {"model": "sd1", "skips": [1], "prompt": "a fox"}
        _, off, metadata = client.predict(**asked, api_name="/compare")
        assert "loras" not in metadata["rows"][0]
        _, on, metadata = client.predict(**asked | {"loras": "detail:1"}, api_name="/compare")
        assert metadata["rows"][0]["loras"] == {"detail": 1.0} and list(metadata["loras"]) == ["detail"]
        _, tagged, _ = client.predict(**asked | {"prompt": "a fox <lora:detail:1>"}, api_name="/compare")
        pixels = [np.asarray(Image.open(g[0]["image"])).astype(int) for g in (off, on, tagged)]
        assert np.abs(pixels[0] - pixels[1]).max() > 0 and np.array_equal(pixels[1], pixels[2])
        with pytest.raises(AppError, match="this server's LoRAs: detail"):
            client.predict(**asked | {"loras": "nope:1"}, api_name="/compare")
        components = httpx.get(demo.local_url + "config", timeout=30).json()["components"]
        sliders = [c["props"] for c in components if c["type"] == "slider" and c["props"].get("label") == "detail"]
        assert [(s["minimum"], s["maximum"], s["value"]) for s in sliders] == [(-4, 4, 0)]
        opened = next(fn.fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "page_opened")
        link = types.SimpleNamespace(query_params={"loras": "detail:0.75"})
        answer = asyncio.run(opened(None, link))  # nothing saved in the browser
        assert answer[-2:] == ["detail:0.75", 0.75]  # /compare's hidden text, then the slider
        answer = asyncio.run(opened(None, types.SimpleNamespace(query_params={"loras": "detail:9"})))
        assert answer[-3:] == [gr.skip()] * 3
        said = answer[13]["value"].replace("\\", "")  # Markdown, its escapes taken out
        assert "The link's LoRA weights were left out: loras: the weight of detail must be from -4 to 4" in said
    finally:
        demo.close()


def test_a_links_lora_weights_are_read_against_the_servers_loras():
    from starlette.datastructures import QueryParams

    from clipskip.ui import link_loras, link_settings

    form, notes = link_settings(QueryParams("loras=detail%3A0.5%2C+style%3A0"))
    assert (form, notes) == ({"loras": "detail:0.5, style:0"}, [])
    server = {"detail": 1.0, "style": 1.0, "other": 0.5}
    assert link_loras(form["loras"], server) == ({"detail": 0.5, "style": 0.0, "other": 0.5}, None)
    assert link_loras("detail:1", {}) == (None, "the link's LoRA weights were left out: this server has no LoRAs")
    weights, note = link_loras("detail:1, nope:1", server)
    assert weights is None and note.startswith("the link's LoRA weights were left out: loras names 'nope:1'")


def busy_line(port: int) -> str:
    return f"clipskip: error: port {port} is in use; give another --port, or stop the server listening on it\n"


def test_a_busy_port_is_one_line_and_status_2_before_any_model_loads(monkeypatch, capsys):
    from clipskip import ui

    def load_pipeline(*args, **kwargs):
        raise AssertionError("a model was loaded before the port was checked")

    monkeypatch.setattr(ui, "load_pipeline", load_pipeline)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code = main(["--port", str(port), "--device", "cpu"])
    captured = capsys.readouterr()
    assert (code, captured.out, captured.err) == (2, "", busy_line(port))


def test_a_port_taken_after_the_check_is_the_same_line_and_no_server_is_left(monkeypatch, capsys):
    import threading

    from clipskip import ui

    port = free_port()
    other = socket.socket()
    checked = ui.port_in_use

    def port_in_use(host, port_):  # another server takes the port right after this one first checked it
        if other.getsockname()[1] == 0:
            other.bind((host, port_))
            other.listen()
            return False
        return checked(host, port_)

    monkeypatch.setattr(ui, "port_in_use", port_in_use)
    before = set(threading.enumerate())
    with other:
        code = main(["--port", str(port), "--device", "cpu"])
    captured = capsys.readouterr()
    assert (code, captured.out, captured.err) == (2, "", busy_line(port))
    assert set(threading.enumerate()) <= before  # Gradio's server thread ended with its failed start


def test_the_server_answers_while_its_first_model_loads_and_the_page_says_so(pipe, monkeypatch):
    import threading

    from clipskip import ui

    release = threading.Event()

    def load_pipeline(*args, **kwargs):  # a model that takes its time
        assert release.wait(60)
        return pipe

    monkeypatch.setattr(ui, "load_pipeline", load_pipeline)
    demo = ui.serve(settings("embedded"), prevent_thread_lock=True)
    try:
        page = httpx.get(demo.local_url, timeout=10)
        assert page.status_code == 200 and not demo.first_model.done()
        config = httpx.get(f"{demo.local_url}config", timeout=10).text
        assert "Loading model **embedded**" in config and "Loading the model…" in config
        release.set()
        assert demo.first_model.result(timeout=60) is pipe
    finally:
        release.set()
        demo.close()


def test_the_form_shown_while_the_built_in_model_loads_is_its_own(pipe):
    from clipskip.ui import describe, loading_view

    shown, loaded = loading_view("embedded", "embedded"), describe("embedded", pipe)
    assert (shown.choices, shown.skips, shown.width, shown.height) == (
        loaded.choices,
        loaded.skips,
        loaded.width,
        loaded.height,
    )


def test_strangers_text_shows_as_written():
    """A model name or note from a stranger's PNG reached the page as HTML (a link, an image) or Markdown."""
    from clipskip.ui import as_text

    autolinked = as_text("see http://evil.example, HTTPS://x.example, www.evil.example or me@evil.example")
    assert not re.search(r"(?i)https?://|www\\?\.|\w@\w", autolinked)  # GFM's autolinks need them unbroken
    assert autolinked.replace("\u200b", "").replace("\\", "") == (
        "see http://evil.example, HTTPS://x.example, www.evil.example or me@evil.example"
    )  # shown as written: only zero-width spaces and Markdown escapes added
    shown = as_text('<a href="//evil.example">here</a> [x](http://e) **b** ![i](x.png) `c`')
    assert "<" not in shown and "](" not in shown and "**" not in shown and "`c`" not in shown
    import markdown_it

    html = markdown_it.MarkdownIt().render(shown)
    assert "<a" not in html and "<img" not in html and "<strong>" not in html and "<code>" not in html
    assert "here" in html and "[x]" in html  # the words stay


def test_a_link_carries_settings_each_checked_as_a_strangers():
    from clipskip.ui import link_settings

    form, notes = link_settings(
        {"prompt": "a red circle", "seed": "-1", "skips": "12,1,4", "steps": "7", "cfg": "5.5", "width": "72"}
        | {"height": "64", "sampler": "Euler", "syntax": "comfyui", "seeds": "5, 6"}
        | {"__theme": "dark", "view": "api"}  # Gradio's own
    )
    assert form == {
        "prompt": "a red circle",
        "seed": -1,
        "skips": [1, 4, 12],
        "steps": 7,
        "guidance_scale": 5.5,
        "width": 72,
        "height": 64,
        "scheduler": "Euler",
        "prompt_syntax": "comfyui",
        "seeds": "5, 6",
    }
    assert notes == []
    form, notes = link_settings(
        {"prompt": "x" * 2001, "seed": "1e9", "skips": "1;2", "steps": "٣", "cfg": "nan", "width": "65"}
        | {"sampler": "<b>Heun</b>", "syntax": "sd", "height": "64"}
    )
    assert form == {}
    assert len(notes) == 8 and all(note.isprintable() for note in notes)
    assert notes[0] == "the link's prompt (2,001 characters) was left out: it is too long"
    assert link_settings({}) == ({}, [])
    form, notes = link_settings({"skips": "2,l1/g2,1.5"})  # fractional and per-encoder columns: More columns
    assert (form, notes) == ({"skips": [2], "more_skips": "L1/G2, 1.5"}, [])


def test_a_link_says_what_it_changed_or_left_out_rather_than_doing_it_silently():
    """Found by a stranger: each of these was taken, cut or refused without a word, or with a wrong one."""
    from clipskip.ui import LINK_SKIPS, link_settings

    form, notes = link_settings({"skips": "1,4,1.0,L1/G2,l1/g2", "width": "96"})
    assert form == {"skips": [1, 4], "more_skips": "L1/G2", "width": 96}  # the height stays the model's
    assert notes == ["the link lists skip 1, L1/G2 more than once: one column each"]
    form, notes = link_settings({"skips": ",".join(["1"] * LINK_SKIPS + ["2"]), "height": "65"})
    assert form == {"skips": [1]}
    assert notes == [
        "the link's height '65' was left out: a multiple of 8 from 64 to 2048",
        "the link's skips past the first 64 were left out",
        "the link lists skip 1 more than once: one column each",
    ]
    form, notes = link_settings({"seeds": "1,2", "rows": "prompts"})
    assert form == {"seeds": "1,2"}
    assert notes == [
        "the link's rows=prompts was left out: rows are several seeds or several prompts, and it gives seeds"
    ]


def test_a_link_keeps_the_automatic1111_sdxl_preset_for_more_columns():
    from clipskip.ui import link_settings

    form, notes = link_settings({"skips": "2,1.5,A1111-SDXL"})
    assert (form["skips"], form["more_skips"], notes) == ([2], "1.5, A1111-SDXL", [])


def test_a_links_unknown_repeated_and_bad_row_keys_are_named():
    from starlette.datastructures import QueryParams

    from clipskip.ui import link_settings

    form, notes = link_settings(QueryParams("promt=a&seed=1&seed=2&x=1&y=2&z=3&seeds=random:99&rows=seeds"))
    assert form == {"seed": 2}
    assert notes == [
        "the link's 'promt', 'x', 'y' and 1 more are not settings of this page (it reads prompt, negative_prompt, "
        "seed, skips, steps, cfg, width, height, sampler, syntax, seeds, rows, loras)",
        "the link gives seed more than once; the last is used",
        "the link's seeds were left out: random seeds: ask for 1 to 8, not 99",
        "the link's rows 'seeds' was left out: it is rows=prompts or nothing",
    ]
    _, notes = link_settings(QueryParams("&".join(f"k{i}=1" for i in range(5000))))
    assert notes == [
        "the link's 'k0', 'k1', 'k2' and 4,997 more are not settings of this page (it reads prompt, negative_prompt, "
        "seed, skips, steps, cfg, width, height, sampler, syntax, seeds, rows, loras)"
    ]


def test_a_stored_comparison_is_only_ever_a_bundle_folder_of_this_server(tmp_path):
    from clipskip.ui import saved_bundle

    name = "clipskip-20261129-150347-seed3-af91029b6554c960"
    assert saved_bundle(tmp_path, name) is None  # cleaned up since
    (tmp_path / name).mkdir()
    (tmp_path / "elsewhere").mkdir()
    assert saved_bundle(tmp_path, name) == tmp_path / name
    hostile = ["../" + name, name + "/..", f"{name}/../elsewhere", "/etc", "elsewhere", name.upper(), name + "\n"]
    hostile += [None, 7, [name], {"name": name}, name * 20_000, "clipskip-" + "1" * 100_000]
    assert [saved_bundle(tmp_path, value) for value in hostile] == [None] * len(hostile)


def test_an_sd3_model_renders_through_the_endpoint_and_its_form_offers_what_works(sd3, sd3_folder, pipe, saved):
    from clipskip.loading import load_pipeline
    from clipskip.ui import describe, family_menus

    view = describe("sd3", sd3)
    assert view.samplers == ("Euler",) and view.plain_only and (view.width, view.height) == (64, 64)
    assert view.skips == [1, 2, 3, 4] and view.choices[1] == ("2 (native)", 2) and len(view.choices) == 5
    assert "SD 3 · text encoder layers: 5 and 7 · native CLIP skip 2 · pooled and T5 unchanged" in view.note
    sampler, syntax, preset = family_menus(view)
    assert preset.visible is False  # the AUTOMATIC1111 SDXL button: SDXL only
    assert (sampler.value, [value for _, value in sampler.choices]) == ("Euler", ["Euler"])
    assert (syntax.value, [value for _, value in syntax.choices]) == ("plain", ["plain"])
    from clipskip.samplers import SAMPLERS
    from clipskip.ui import SYNTAX_CHOICES

    others = family_menus(describe("embedded", pipe))  # back to every sampler and syntax, the visitor's kept
    assert family_menus(describe("x", load_pipeline(str(saved["sdxl"]), device="cpu")))[2].visible is True
    assert [value for _, value in others[0].choices] == list(SAMPLERS) and "value" not in others[0].constructor_args
    assert [value for _, value in others[1].choices] == [value for _, value in SYNTAX_CHOICES]
    from clipskip.ui import image_menus

    notes = []  # an AUTOMATIC1111 image loaded while an SD 3 model is chosen: the model's menus, saying why
    menus = image_menus(view, {"scheduler": "DPM++ 2M Karras", "prompt_syntax": "a1111"}, notes)
    assert (menus["scheduler"].value, [value for _, value in menus["scheduler"].choices]) == ("Euler", ["Euler"])
    assert (menus["prompt_syntax"].value, [value for _, value in menus["prompt_syntax"].choices]) == (
        "plain",
        ["plain"],
    )
    assert notes == [
        "its sampler DPM++ 2M Karras does not work on SD 3 models here; Euler is used",
        "its prompt syntax a1111 does not apply to SD 3 models; plain is used",
    ]
    menus = image_menus(view, {"scheduler": "Euler", "prompt_syntax": "plain"}, notes)  # an SD 3 image's own
    assert [value for _, value in menus["prompt_syntax"].choices] == ["plain"] and len(notes) == 2
    notes = []  # and an SD 3 image's Euler on the built-in model: every sampler offered again, the image's chosen
    menus = image_menus(describe("embedded", pipe), {"scheduler": "Euler", "prompt_syntax": "plain"}, notes)
    assert menus["scheduler"].value == "Euler" and len(menus["scheduler"].choices) == len(SAMPLERS)
    assert menus["prompt_syntax"].value == "plain" and len(menus["prompt_syntax"].choices) == len(SYNTAX_CHOICES)
    assert notes == []
    demo = serve(settings(str(sd3_folder)), prevent_thread_lock=True)
    try:
        client = Client(demo.local_url, verbose=False)
        sd3_form = GOOD | {"model": "sd3", "skips": [1, 2], "scheduler": "Euler", "prompt_syntax": "plain"}
        _, gallery, metadata = client.predict(**sd3_form, api_name="/compare")
        assert (metadata["family"], metadata["sampler"], metadata["prompt_syntax"]) == ("SD 3", "Euler", "plain")
        assert [item["caption"] for item in gallery] == [
            "skip 1 · CLIP-L and CLIP-G layers 5/5+7/7",
            "skip 2 · CLIP-L and CLIP-G layers 4/5+6/7",
        ]
        graph = json.loads(Image.open(gallery[0]["image"]).info["prompt"])  # ComfyUI's: −1 sets CLIP-L and CLIP-G
        assert graph["10"]["inputs"]["stop_at_clip_layer"] == -1 and graph["3"]["inputs"]["sampler_name"] == "euler"
        with pytest.raises(AppError, match="Sampler 'Euler a' does not work with this model's flow-matching"):
            client.predict(**sd3_form | {"scheduler": "Euler a"}, api_name="/compare")
        with pytest.raises(AppError, match="Prompt_syntax 'a1111' is not offered for SD 3 models"):
            client.predict(**sd3_form | {"prompt_syntax": "a1111"}, api_name="/compare")
    finally:
        demo.close()


def test_the_api_takes_fractional_skips_as_text_and_refuses_a_skip_per_encoder_on_sd1(client):
    _, gallery, metadata = client.predict(**GOOD | {"skips": [1, "1.5", 2.25]}, api_name="/compare")
    assert metadata["skips"] == [1, "1.5", "2.25"]
    assert [item["caption"] for item in gallery][1] == "skip 1.5 · layers 12–11/12"
    with pytest.raises(AppError, match="CLIP skip L1/G2 gives each CLIP text encoder its own layer, but this model"):
        client.predict(**GOOD | {"skips": ["L1/G2"]}, api_name="/compare")


def test_more_columns_are_checked_joined_offered_and_split_back():
    from clipskip.ui import a1111_sdxl_columns, form_view, merged_skips, reference_choices, split_columns

    assert merged_skips([1, 2], " 1.5, L1/G2 ,") == [1, 2, "1.5", "L1/G2"]
    assert merged_skips([1], "") == [1] and merged_skips([1], None) == [1]
    with pytest.raises(ValueError, match="^More columns is 5,000 characters long; at most 400"):
        merged_skips([1], "1" * 5000)
    with pytest.raises(ValueError, match="^More columns must be text"):
        merged_skips([1], ["1.5"])
    with pytest.raises(ValueError, match="^each value of More columns must be a whole number, not 'L1'"):
        merged_skips([1], "1.5, L1")
    view = form_view("", 12, 2, 1024, 1024, family="SDXL")
    assert reference_choices(view, [2], "1.5, x, 2, L1/G2") == [
        ("native (else the first)", 0),
        ("2 (native)", 2),
        ("1.5", "1.5"),
        ("L1/G2", "L1/G2"),
    ]
    assert split_columns([2, "L1/G2", "1.5", 3]) == ([2, 3], "L1/G2, 1.5")
    ticked, more, status = a1111_sdxl_columns("SDXL")
    assert (ticked.value, more) == ([], "L1/G2, 2, L3/G2, L4/G2")
    assert "without the option it renders every SDXL image at skip 2" in status["value"]
    _, _, refused = a1111_sdxl_columns("SD 1.x")
    assert refused["value"] == "**The AUTOMATIC1111 SDXL preset is for SDXL models**; this model is SD 1.x."
