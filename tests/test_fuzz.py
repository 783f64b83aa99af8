"""Hypothesis drives the running app with generated values of every type, over raw HTTP (no client library to tidy
them up): every answer is a result or a clear message of one line, never a bare "Error", and the server goes on.

Backs the fuzz rows of docs/RELIABILITY.md.
"""

import json
import os

import gradio as gr
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipskip import ui
from tests.test_server import app_settings

NAMES = ["prompt", "negative_prompt", "seed", "skips", "steps", "guidance_scale", "width", "height", "scheduler"]
NAMES += ["model", "seeds", "prompt_rows", "reference", "prompt_syntax", "loras"]
GOOD = ["a fox", "", 42, [1, 2], 1, 7.5, 64, 64, "Euler a", "embedded", "", False, 0, "a1111", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has no NaN or infinity; the raw bodies below do
    st.text(max_size=40),
    st.tuples(st.text(min_size=1, max_size=3), st.integers(300, 3000)).map(lambda t: t[0] * t[1]),  # long texts
    st.sampled_from(["Euler a", "embedded", "random:3", "1,2,3", "1e308", "²", "-1", "", " ", "\x00"]),
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner)),
    max_leaves=8,
)
# values that pass their own check but are cheap to render, so the generated requests that are valid stay fast
cheap = {"steps": st.integers(1, 2), "width": st.just(64), "height": st.just(64), "skips": st.just([1, 2])}


REFUSED_BODIES = {
    (400, '{"detail":"There was an error parsing the body"}'),  # e.g. a number of over 4,300 digits
    (413, '{"detail": "request body too large: at most 262,144 bytes"}'),
}


@st.composite
def requests(draw):
    """A /compare request whose every value is either fuzzed (of any type) or a valid one that renders fast."""
    data = list(GOOD)
    for i, name in enumerate(NAMES):
        if draw(st.booleans()):
            data[i] = draw(anything)
        elif name in cheap:
            data[i] = draw(cheap[name])
    if not any(data[i] is not GOOD[i] for i in range(len(GOOD))):
        data[0] = draw(anything)
    return data


@pytest.fixture(scope="module")
def app(pipe):
    demo = ui.serve(app_settings(), prevent_thread_lock=True)
    url = demo.local_url.rstrip("/")
    dependencies = httpx.get(f"{url}/config").json()["dependencies"]
    index = {d["api_name"]: i for i, d in enumerate(dependencies)}
    yield url, index
    demo.close()


def answer(url: str, fn_index: int, body_data: str) -> dict:
    """Send an event as raw JSON text (so NaN and lone surrogates arrive as sent); its final message."""
    session = os.urandom(8).hex()
    body = f'{{"data": {body_data}, "fn_index": {fn_index}, "session_hash": "{session}", "event_data": null}}'
    joined = httpx.post(f"{url}/gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
    if joined.status_code != 200:
        return {"http": joined.status_code, "detail": joined.text}
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=120) as s:
        for line in s.iter_lines():
            if line.startswith("data: ") and (message := json.loads(line[6:])).get("msg") == "process_completed":
                return message
    raise AssertionError("the event stream ended without an answer")


def assert_clear(message: dict) -> None:
    if "http" in message:  # refused before it reached the app: a body Python's JSON cannot read, or too large
        assert (message["http"], message["detail"]) in REFUSED_BODIES, message
        return
    if message["success"]:
        assert message["output"]["data"][2]["skips"], message
        return
    error = message["output"].get("error")
    assert isinstance(error, str) and error not in ("", "Error"), message
    assert "\n" not in error and "Traceback" not in error and len(error) < 400, error


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=requests())
def test_compare_answers_every_generated_request_clearly(app, data):
    url, index = app
    assert_clear(answer(url, index["compare"], json.dumps(data)))


@pytest.mark.parametrize(
    "raw",
    ['"\\ud800"', "NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, '"' + "x" * 100_000 + '"'],
    ids=["lone-surrogate", "nan", "infinity", "minus-infinity", "overflowing-float", "5000-digits", "100k-text"],
)
@pytest.mark.parametrize("position", [0, 2, 3, 4, 5, 10])
def test_values_json_text_can_carry_but_python_json_cannot_are_answered_clearly(app, raw, position):
    url, index = app
    data = [json.dumps(value) for value in GOOD]
    data[position] = raw
    assert_clear(answer(url, index["compare"], "[" + ", ".join(data) + "]"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=anything, skips=anything, model=anything)
def test_the_private_settings_event_answers_every_generated_value_clearly(app, path, skips, model):
    url, index = app
    message = answer(url, index["load_settings"], json.dumps([path, skips, model]))
    if "http" not in message and not message["success"]:
        error = message["output"].get("error")
        assert isinstance(error, str) and error not in ("", "Error") and "\n" not in error, message
    assert httpx.get(f"{url}/config").is_success


def test_a_claimed_path_outside_the_uploads_is_neither_read_nor_deleted(app, tmp_path):
    url, index = app
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"not yours")
    file = {"path": str(victim), "meta": {"_type": "gradio.FileData"}, "orig_name": "victim.png"}
    message = answer(url, index["load_settings"], json.dumps([file, [1], "embedded"]))
    assert not message.get("success", False)
    assert victim.read_bytes() == b"not yours"


@pytest.fixture(scope="module")
def boxes():
    """Every value Gradio preprocesses for the page's events: (event, position), of events with a Python function."""
    demo = ui.build_demo(["embedded"], load=lambda path: None)
    events = [fn for fn in demo.fns.values() if fn.fn is not None and fn.preprocess]
    return [(fn, i) for fn in events for i, box in enumerate(fn.inputs) if not box.stateful]


def kinds_of(box) -> st.SearchStrategy:
    """Values of any type, and some of the kind the box holds (its choices, numbers in its range)."""
    choices = [value for _, value in getattr(box, "choices", None) or []]
    extra = [st.lists(st.sampled_from(choices), max_size=3), st.sampled_from(choices)] if choices else []
    return st.one_of(anything, st.integers(-5, 3000), st.floats(-5, 3000), *extra)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_value_the_event_check_lets_through_is_one_gradio_preprocesses(boxes, data):
    """`exact_inputs` either refuses a value in one line naming the parameter, or Gradio's preprocessing of the box
    takes it (Gradio's own failures were tracebacks and an empty error)."""
    fn, position = data.draw(st.sampled_from(boxes))
    box = fn.inputs[position]
    value = data.draw(kinds_of(box))
    takes = ui.refused_value(box, value)
    if takes is None:
        box.preprocess(value)
        return
    values = [None] * len(fn.inputs)  # refused at the first value that is not the box's kind
    values[position] = value
    first = next(i for i, box in enumerate(fn.inputs) if ui.refused_value(box, values[i]) is not None)
    with pytest.raises(gr.Error) as refused:
        ui.exact_inputs(fn, values)
    said, name = refused.value.message, ui.value_names(fn)[first]
    takes = ui.refused_value(fn.inputs[first], values[first])
    assert said == f"This event's {name} must be {takes}, not {ui.short_repr(values[first])}", said
    assert "\n" not in said and len(said) < 300 and said.encode("utf-8")


def test_every_box_an_event_preprocesses_is_checked(boxes):
    """A box of a kind `refused_value` does not know would reach Gradio's preprocessing unchecked."""
    assert all(ui.refused_value(fn.inputs[i], object()) is not None for fn, i in boxes)
