"""Renders end with their requests, however the client leaves; never more at once than --concurrency; bodies,
uploads, sessions and the file cache bounded. Driven over raw HTTP (no heartbeat, no browser) and gradio_client.

Each test backs rows of docs/RELIABILITY.md.
"""

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio.utils import get_upload_folder
from gradio_client import Client
from gradio_client.exceptions import AppError

from clipskip import ui
from clipskip.comparison import Stopped, compare
from clipskip.formats.png import MAX_FILE_BYTES
from clipskip.server import BodyLimit, RenderGate, port_in_use, prune
from clipskip.settings import AppSettings, LoadOptions
from tests.test_ui import free_port

SLOW = ["a fox in the snow", "", 42, [1, 2, 3, 4], 150, 7.5, 256, 256, "Euler a", "embedded", "", False, 0, "a1111"]
SLOW += [""]  # loras
QUICK = ["a fox in the snow", "", 42, [1, 2], 2, 7.5, 64, 64, "Euler a", "embedded", "", False, 0, "a1111", ""]


class Renders:
    """Every render the app starts, watched from inside: steps done, how it ended, and the most at once."""

    def __init__(self):
        self.log: list[dict] = []
        self.running = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, pipe, *args, **kwargs):
        entry = {"steps": 0, "outcome": "running"}
        with self._lock:
            self.log.append(entry)
            self.running += 1
            self.most = max(self.most, self.running)
        report = kwargs["progress"]

        def progress(step, total):
            entry["steps"] = step
            report(step, total)

        try:
            result = compare(pipe, *args, **kwargs | {"progress": progress})
            entry["outcome"] = "finished"
            return result
        except Stopped:
            entry["outcome"] = "stopped"
            raise
        except Exception:
            entry["outcome"] = "refused"
            raise
        finally:
            with self._lock:
                self.running -= 1

    def wait(self, condition, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting; renders: {self.log}"
            time.sleep(0.02)

    def ended(self, count: int):
        return lambda: len(self.log) >= count and all(e["outcome"] != "running" for e in self.log[:count])

    def stop_within_a_step(self, index: int, leave) -> None:
        """Once render `index` has done a step, `leave()` (its client goes away somehow): the render must then end,
        stopped, after at most the step under way."""
        self.wait(lambda: len(self.log) > index and self.log[index]["steps"] >= 1)
        leave()
        steps_when_left = self.log[index]["steps"]
        self.wait(self.ended(index + 1), timeout_s=30)
        assert self.log[index]["outcome"] == "stopped"
        assert self.log[index]["steps"] <= steps_when_left + 1


def app_settings(concurrency: int = 1, max_queue: int = 20) -> AppSettings:
    return AppSettings(
        ("embedded",), "cpu", None, LoadOptions(), "127.0.0.1", free_port(), False, 32, concurrency, max_queue
    )


@pytest.fixture(scope="module")
def served(pipe):
    """The app, with every render watched (module-wide, since the app is)."""
    renders = Renders()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ui, "compare", renders)
        demo = ui.serve(app_settings(), prevent_thread_lock=True)
        url = demo.local_url.rstrip("/")
        config = httpx.get(f"{url}/config").json()
        fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "compare")
        yield demo, url, fn_index, renders
        demo.close()


@pytest.fixture
def app(served):
    demo, url, fn_index, renders = served
    renders.wait(renders.ended(len(renders.log)))  # nothing left running from an earlier test
    renders.log.clear()
    renders.most = 0
    return url, fn_index, renders


def join(url: str, fn_index: int, data: list, session: str) -> str:
    """Queue a /compare event the way the page does (no client library); its event id."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    answer = httpx.post(f"{url}/gradio_api/queue/join", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["event_id"]


def listen_until(url: str, session: str, done) -> dict:
    """Read the session's event stream until `done(message)`, then drop the connection; the last message."""
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                message = json.loads(line[6:])
                if done(message):
                    return message
    raise AssertionError("the stream ended first")


def at_step(n: int):
    return lambda m: m.get("msg") == "progress" and ((m.get("progress_data") or [{}])[0].get("index") or 0) >= n


def test_a_raw_http_client_that_disconnects_ends_its_render_within_one_step(app):
    url, fn_index, renders = app
    join(url, fn_index, SLOW, "gone-1")
    # the stream is read to step 2, then the connection drops: no cancel, no heartbeat, nothing
    renders.stop_within_a_step(0, lambda: listen_until(url, "gone-1", at_step(2)))


def test_a_rest_api_client_that_disconnects_ends_its_render_within_one_step(app):
    url, _, renders = app
    event_id = httpx.post(f"{url}/gradio_api/call/compare", json={"data": SLOW}).json()["event_id"]
    with httpx.stream("GET", f"{url}/gradio_api/call/compare/{event_id}", timeout=60) as stream:
        renders.stop_within_a_step(0, stream.close)


def test_gradio_client_cancel_ends_the_render_within_one_step(app):
    url, _, renders = app
    job = Client(url, verbose=False).submit(*SLOW, api_name="/compare")
    renders.stop_within_a_step(0, job.cancel)


def test_submit_and_cancel_in_a_loop_never_runs_more_than_the_concurrency(app):
    url, fn_index, renders = app
    for i in range(4):
        session = f"loop-{i}"
        event_id = join(url, fn_index, SLOW, session)
        renders.wait(lambda i=i: len(renders.log) > i and renders.log[i]["steps"] >= 1)
        cancel = {"session_hash": session, "fn_index": fn_index, "event_id": event_id}
        assert httpx.post(f"{url}/gradio_api/cancel", json=cancel).json() == {"success": True}
    renders.wait(renders.ended(4), timeout_s=30)
    assert [e["outcome"] for e in renders.log] == ["stopped"] * 4
    assert renders.most == 1  # each new render waited for the cancelled one's last step


def test_the_next_visitor_is_served_right_after_an_abandoned_render(app):
    url, fn_index, renders = app
    join(url, fn_index, SLOW, "abandoned")
    listen_until(url, "abandoned", at_step(1))
    grid, gallery, metadata = Client(url, verbose=False).predict(*QUICK, api_name="/compare")
    assert metadata["steps"] == 2 and [e["outcome"] for e in renders.log] == ["stopped", "finished"]


def test_cached_says_only_what_this_visitor_rendered(app):
    url, _, _ = app
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    cells = lambda metadata: [cell.get("cached", False) for cell in metadata["rows"][0]["cells"]]  # noqa: E731
    assert cells(first.predict(*QUICK, api_name="/compare")[2]) == [False, False]
    assert cells(first.predict(*QUICK, api_name="/compare")[2]) == [True, True]  # its own cells, again
    assert cells(second.predict(*QUICK, api_name="/compare")[2]) == [False, False]  # another's: rendered anew


def test_bodies_past_the_bound_are_refused_before_parsing(app):
    url, fn_index, _ = app
    body = json.dumps({"data": ["x" * 300_000], "fn_index": fn_index, "session_hash": "big"})
    answer = httpx.post(f"{url}/gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "at most 262,144 bytes" in answer.text

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * 65536

    answer = httpx.post(f"{url}/gradio_api/queue/join", content=chunks())
    assert answer.status_code == 413
    big = {"files": ("big.png", b"\x89PNG" + b"\0" * (MAX_FILE_BYTES + 2**17), "image/png")}
    assert httpx.post(f"{url}/gradio_api/upload", files=big).status_code == 413
    assert httpx.post(f"{url}/gradio_api/upload", files={"files": ("ok.png", b"\x89PNG", "image/png")}).is_success


def test_a_session_keeps_only_a_folder_name(served, app):
    demo, *_ = served
    url, *_ = app
    client = Client(url, verbose=False)
    client.predict(*QUICK, api_name="/compare")
    kept = [session.state_data[key] for session in demo.server_app.state_holder.session_data.values()
            for key in session.state_data if isinstance(demo.blocks[key], gr.State)]  # fmt: skip
    assert any(isinstance(value, str) and Path(value, "comparison.json").is_file() for value in kept)
    assert all(value is None or isinstance(value, str) for value in kept)  # a folder's name, no images


def test_render_gate_holds_the_bound_and_lets_a_stopped_waiter_go():
    gate, inside, most, lock = RenderGate(2), [0], [0], threading.Lock()

    def work():
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1

    threads = [threading.Thread(target=gate.run, args=(work, lambda: False, RuntimeError)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2
    hold, release = threading.Event(), threading.Event()
    threading.Thread(target=gate.run, args=(lambda: hold.set() or release.wait(), lambda: False, RuntimeError)).start()
    threading.Thread(target=gate.run, args=(lambda: hold.set() or release.wait(), lambda: False, RuntimeError)).start()
    hold.wait()
    time.sleep(0.1)
    assert gate.busy()
    with pytest.raises(Stopped):
        gate.run(work, lambda: True, lambda: Stopped("stopped"))  # waiting, then told to stop: it never runs
    release.set()


def test_an_event_with_too_many_or_too_few_values_or_no_such_event_is_refused_saying_what_it_takes(app, capfd):
    """Each of these was a traceback and a bare 500, or an empty error, from Gradio's own handling."""
    url, fn_index, renders = app
    takes = (
        "/compare takes 15 values (prompt, negative_prompt, seed, skips, steps, guidance_scale, width, height, "
        "scheduler, model, seeds, prompt_rows, reference, prompt_syntax, loras)"
    )
    for n, data in enumerate([QUICK[:1], [], QUICK + ["x" * 100_000], QUICK + [None] * 40]):
        join(url, fn_index, data, f"counted-{n}")
        said = listen_until(url, f"counted-{n}", lambda m: m.get("msg") == "process_completed")
        assert said["output"]["error"] == f"{takes}, not {len(data):,}", said
        assert said["output"]["title"] == "Wrong number of values"
    for index in (9999, -1, "0", True, 1.5, [fn_index]):
        body = {"data": QUICK, "fn_index": index, "session_hash": "s", "event_data": None, "trigger_id": None}
        for path in ("queue/join", "run/predict", "run/predict/", "api/compare", "run/compare/"):
            answer = httpx.post(f"{url}/gradio_api/{path}", json=body)
            assert answer.status_code == 422, (index, path, answer.text)
            assert answer.json() == {"detail": f"fn_index {json.dumps(index)} is not an event of this page"}
    for path in ("call/nope", "call/v2/nope/", "run/nope", "api/" + "x" * 500):
        answer = httpx.post(f"{url}/gradio_api/{path}", json={"data": QUICK})
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["detail"].endswith("here; this server's: /compare")
    deep = '{"fn_index": 1, "data": ' + "[" * 100_000 + "}"  # Python's JSON reader gives up: RecursionError
    answer = httpx.post(f"{url}/gradio_api/queue/join", content=deep)
    assert (answer.status_code, answer.json()) == (400, {"detail": "request body nests too deeply to read"})
    answer = httpx.post(f"{url}/gradio_api/call/v2/compare", json={"prompt": "a fox", "bogus": 1})
    assert answer.status_code == 422 and "Parameter `bogus` is not a valid key-word argument" in answer.text
    assert renders.log == []  # nothing of it rendered
    join(url, fn_index, QUICK, "counted-right")  # and the right count still renders
    assert listen_until(url, "counted-right", lambda m: m.get("msg") == "process_completed")["success"]
    logged = capfd.readouterr()
    assert "Traceback" not in logged.out + logged.err and "xxxxxxxxxx" not in logged.out + logged.err


def test_body_limit_counts_chunked_bodies():
    seen = []

    async def app(scope, receive, send):
        while (message := await receive()).get("more_body"):
            seen.append(len(message["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(parts: list[bytes]):
        sent, queue = [], [{"type": "http.request", "body": p, "more_body": True} for p in parts]
        queue.append({"type": "http.request", "body": b"", "more_body": False})

        async def receive():
            return queue.pop(0)

        async def send(message):
            sent.append(message)

        await BodyLimit(app, max_bytes=100)({"type": "http", "path": "/x", "headers": []}, receive, send)
        return sent[0]["status"]

    assert asyncio.run(call([b"x" * 60])) == 200
    assert asyncio.run(call([b"x" * 60, b"x" * 60])) == 413


def test_prune_removes_old_files_then_the_oldest_past_the_size(tmp_path):
    now = time.time()
    (tmp_path / "fresh").mkdir()  # empty, but perhaps just made by a writer about to fill it: kept
    for name, age, size in [("old/a", 7200, 10), ("b", 300, 40), ("c", 200, 40), ("d/e", 100, 40)]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age, now - age))
    assert prune(tmp_path, max_age_s=3600, max_bytes=90) == 80
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["c", "d", "d/e", "fresh", "old"]  # old/a went (too old), then b (oldest past 90 bytes)
    for folder in ("old", "fresh"):
        os.utime(tmp_path / folder, (now - 600, now - 600))
    prune(tmp_path, max_age_s=3600, max_bytes=90)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["c", "d", "d/e"]  # empty, old


def test_the_settings_event_reads_only_uploads_and_deletes_nothing(served, app, tmp_path):
    from PIL import Image, PngImagePlugin

    url, *_ = app
    demo, *_ = served
    handler = next(fn.fn for fn in demo.fns.values() if fn.fn is not None and fn.fn.__name__ == "load_settings")
    Client(url, verbose=False).predict(*QUICK, api_name="/compare")
    bundles = (Path(get_upload_folder()) / "clipskip-downloads").glob("clipskip-*/grid.png")
    grid = max(bundles, key=lambda path: path.stat().st_mtime)  # the server's own file, in Gradio's cache
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a fox\nSteps: 7, Seed: 3, Clip skip: 13")
    path = tmp_path / "settings.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    uploaded = httpx.post(f"{url}/gradio_api/upload", files={"files": ("s.png", path.read_bytes(), "image/png")})
    stored = Path(uploaded.json()[0])
    for claimed in (grid, Path(__file__), stored.parent):  # not uploads: nothing read, nothing deleted
        assert (
            handler({"path": str(claimed), "meta": {"_type": "gradio.FileData"}}, [1], "embedded") == [gr.skip()] * 18
        )
        assert claimed.exists()
    filled = handler({"path": str(stored), "meta": {"_type": "gradio.FileData"}}, [1, 2], "embedded")
    assert filled[0] == "a fox" and filled[5].value == [1, 2]  # skip 13 left out: the model has 12 layers
    assert (filled[3], filled[4], filled[12].value) == ("", False, 0)  # one row, no prompt rows, reference native
    assert stored.exists()  # kept for Gradio's pruning: an identical upload from someone else has this same path


def test_a_refused_request_is_logged_as_one_line_without_a_traceback(app, capfd, caplog):
    url, fn_index, _ = app
    caplog.set_level("INFO", logger="clipskip")
    capfd.readouterr()
    with pytest.raises(AppError, match="Steps must be 1 to 150, not 0"):
        Client(url, verbose=False).predict(*QUICK[:4], 0, *QUICK[5:], api_name="/compare")
    assert [r.getMessage() for r in caplog.records if r.name == "clipskip"] == [
        "refused (Please change a setting): steps must be 1 to 150, not 0"
    ]
    assert "Traceback" not in capfd.readouterr().err


def test_a_client_that_never_listens_has_its_render_ended(app, monkeypatch):
    from clipskip import server

    monkeypatch.setattr(server, "UNREAD_S", 1.0)
    url, fn_index, renders = app
    join(url, fn_index, SLOW, "never-listens")  # the event is queued, its stream never opened
    renders.wait(renders.ended(1), timeout_s=30)
    assert renders.log[0]["outcome"] == "stopped" and renders.log[0]["steps"] < 150
    assert httpx.post(f"{url}/gradio_api/call/compare", json={"data": SLOW}).is_success  # its result never fetched
    renders.wait(renders.ended(2), timeout_s=30)
    assert renders.log[1]["outcome"] == "stopped" and renders.log[1]["steps"] < 150


def test_a_port_is_in_use_while_a_server_listens_on_it_and_free_after():
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert port_in_use("127.0.0.1", port) and port_in_use("0.0.0.0", port) and port_in_use("localhost", port)
    assert not port_in_use("127.0.0.1", port)


def test_an_address_too_long_is_answered_414_not_a_traceback(app):
    """Gradio's own page handler failed on a 70,000-character link with a traceback and a bare 500."""
    url, *_ = app
    answer = httpx.get(f"{url}/?prompt=" + "x" * 20_000)
    assert answer.status_code == 414 and "address too long" in answer.json()["detail"]
    assert httpx.get(f"{url}/?prompt=" + "x" * 2_000).status_code == 200  # a real link opens


def test_the_token_count_takes_any_model_value_a_client_sends(served):
    """A list for the model made the built-in model's word check raise TypeError (unhashable) in a private event."""
    demo, *_ = served
    count = next(fn.fn for fn in demo.fns.values() if getattr(fn.fn, "func", None) is not None)
    for model in (["embedded"], {"a": 1}, None, "nothing"):
        assert count("a red cirlce", "a1111", model) == (
            "5/75 tokens · ⚠ the built-in model does not know “cirlce” (did you mean “circle”?)"
        )


def test_a_links_skips_the_model_lacks_are_named_when_the_page_opens(served):
    import asyncio
    import types

    demo, *_ = served
    opened = next(fn.fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "page_opened")
    answer = asyncio.run(opened(None, types.SimpleNamespace(query_params={"skips": "0,2,13"})))
    assert answer[3].value == [2]  # the skips box: the one this model has
    said = answer[13]["value"].replace("\\", "")  # the status, Markdown with its escapes taken out
    assert "The link's skips 0, 13 were left out: this model takes 1 to 12" in said  # 0 was "beyond this model's 12"


def private_events(demo) -> dict:
    """The page's private events a raw client can still call by fn_index, by what they do."""
    named = {fn.api_name: i for i, fn in demo.fns.items()}
    preset = next(i for i, fn in demo.fns.items() if fn.preprocess and [b.label for b in fn.inputs] == ["Model"])
    copy_link = next(i for i, fn in demo.fns.items() if fn.fn is None and len(fn.inputs) > 1)
    return {
        "gallery": named["pick_from_gallery"],
        "skips": named["follow_skips"],
        "size": named["check_size"],
        "rows": named["rows_state"],
        "example": named["load_example"],
        "preset": preset,
        "copy_link": copy_link,
    }


GOOD_SKIPS = [[1, 2], 0, "embedded", ""]
HOSTILE = [  # (event, its values, its event data, the one-line message's start)
    ("gallery", [None], None, "A gallery click's event data must be {'index': a cell's number, …}, not None"),
    ("gallery", [None], {"value": None}, "A gallery click's event data must be"),
    ("gallery", [None], {"index": "0", "value": None}, "A gallery click's event data must be"),
    ("gallery", [None], {"index": True, "value": None}, "A gallery click's event data must be"),
    ("gallery", [None], [1, 2], "A gallery click's event data must be"),
    ("skips", [None, *GOOD_SKIPS[1:]], None, "This event's ticked must be a list of values from [1, 2, 3,"),
    ("skips", [5, *GOOD_SKIPS[1:]], None, "This event's ticked must be a list of values from"),
    ("skips", [[True], *GOOD_SKIPS[1:]], None, "This event's ticked must be a list of values from"),
    ("skips", [[99], *GOOD_SKIPS[1:]], None, "This event's ticked must be a list of values from"),
    ("skips", [["\ud800"], *GOOD_SKIPS[1:]], None, "This event's ticked must be a list of values from"),
    ("skips", [[1], [0], "embedded", ""], None, "This event's reference must be one of"),
    ("skips", [[1], 0, 5, ""], None, "This event's model must be one of ['embedded'], not 5"),
    ("skips", [[1], 0, "embedded", {"a": 1}], None, "This event's more must be text (valid UTF-8) of at most"),
    ("skips", [[1], 0, "embedded", "x" * 20_000], None, "This event's more must be text (valid UTF-8) of at most"),
    ("size", ["x", 64, "embedded"], None, "This event's width must be a number from 64 to 2048, not 'x'"),
    ("size", [None, 64, "embedded"], None, "This event's width must be a number from 64 to 2048, not None"),
    ("size", [64, True, "embedded"], None, "This event's height must be a number from 64 to 2048, not True"),
    ("size", [64, 10**400, "embedded"], None, "This event's height must be a number from 64 to 2048"),
    ("size", [64, 0, "embedded"], None, "This event's height must be a number from 64 to 2048, not 0"),
    ("size", [64, 64, ["embedded"]], None, "This event's model must be one of ['embedded'], not ['embedded']"),
    ("preset", ["\ud800"], None, "This event's model must be one of ['embedded'], not '\\ud800'"),
    ("rows", [5, False], None, "This event's seeds must be text (valid UTF-8) of at most"),
    ("rows", ["\ud800", False], None, "This event's seeds must be text (valid UTF-8) of at most"),
    ("rows", ["", "yes"], None, "This event's prompt_rows must be true or false, not 'yes'"),
    ("rows", ["", None], None, "This event's prompt_rows must be true or false, not None"),
    ("example", ["0"], None, "This event's example_tuple must be the number of one of its"),
    ("example", [None], None, "This event's example_tuple must be the number of one of its"),
    ("example", [99], None, "This event's example_tuple must be the number of one of its"),
    ("copy_link", [None] * 14, None, "This event runs in the page only"),
]


def test_a_private_event_sent_values_of_the_wrong_kind_is_refused_in_one_line(served, app, capfd, caplog):
    """Each of these was `{"error": null}` and a traceback from Gradio's preprocessing (or its SelectData), and a
    lone surrogate that Gradio echoed broke the event stream."""
    demo, *_ = served
    url, _, renders = app
    events = private_events(demo)
    caplog.set_level("INFO", logger="clipskip")
    capfd.readouterr()
    for n, (event, data, event_data, said) in enumerate(HOSTILE):
        body = {"data": data, "fn_index": events[event], "session_hash": f"kind-{n}", "event_data": event_data}
        sent = json.dumps(body | {"trigger_id": None})  # ASCII: a lone surrogate arrives as JSON's \ud800
        joined = httpx.post(f"{url}/gradio_api/queue/join", content=sent, headers={"content-type": "application/json"})
        assert joined.status_code == 200, joined.text
        message = listen_until(url, f"kind-{n}", lambda m: m.get("msg") == "process_completed")
        error = message["output"]["error"]
        assert error.startswith(said) and "\n" not in error and len(error) < 300, (event, data, error)
        assert message["output"]["title"] in ("Wrong value", "Not an event of the server")
    answer = httpx.post(
        f"{url}/gradio_api/run/predict", json={"data": ["x", 64, "embedded"], "fn_index": events["size"]}
    )
    assert answer.json()["error"].startswith("This event's width must be a number from 64 to 2048, not 'x'")
    refused = [r.getMessage() for r in caplog.records if r.name == "clipskip" and r.getMessage().startswith("refused")]
    assert len(refused) == len(HOSTILE) + 1
    # and the server goes on: the same events answer good values
    for n, (event, data) in enumerate([("skips", GOOD_SKIPS), ("size", [64, 64, "embedded"]), ("rows", ["1", True])]):
        body = {"data": data, "fn_index": events[event], "session_hash": f"good-{n}", "event_data": None}
        assert httpx.post(f"{url}/gradio_api/queue/join", json=body | {"trigger_id": None}).status_code == 200
        assert listen_until(url, f"good-{n}", lambda m: m.get("msg") == "process_completed")["success"], event
    # a menu's choices are the session's: More columns' "1.5" is a reference choice once its change has answered
    for data in ([[1], 0, "embedded", "1.5"], [[1], "1.5", "embedded", "1.5"]):
        body = {"data": data, "fn_index": events["skips"], "session_hash": "more", "event_data": None}
        assert httpx.post(f"{url}/gradio_api/queue/join", json=body | {"trigger_id": None}).status_code == 200
        said = listen_until(url, "more", lambda m: m.get("msg") == "process_completed")
        assert said["success"] and said["output"]["data"][0]["choices"][-1] == ["1.5", "1.5"], said
    assert renders.log == []
    logged = capfd.readouterr()
    assert "Traceback" not in logged.out + logged.err and "xxxxxxxxxx" not in logged.out + logged.err
