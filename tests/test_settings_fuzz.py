"""Strangers' PNGs: whatever their text chunks hold, read_settings gives a form the app accepts or a clear ValueError.

Also the PNG builders the hostile-file tests use, and `worst_settings_files`, the slowest files to read that the
reader's bounds let through, for a benchmark.
"""

import json
import struct
import zlib
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipskip.families import SD1
from clipskip.formats import read_settings
from clipskip.formats.a1111 import MAX_PARAMETERS_CHARS, write_parameters
from clipskip.formats.fields import MAX_CLIP_SKIP, MAX_NAME_CHARS
from clipskip.formats.manifest import MAX_BYTES as MAX_MANIFEST_BYTES
from clipskip.formats.png import MAX_CHUNKS, MAX_FILE_BYTES
from clipskip.request import DEFAULT_GUIDANCE, DEFAULT_STEPS, RANDOM_SEED, ComparisonRequest, seed_list

# The fields of a real manifest that the form uses (tests/test_outputs.py checks a real one has them all)
MANIFEST = {
    "model": "embedded",
    "prompt": "a fox, at dawn",
    "negative_prompt": "blurry",
    "seed": 11,
    "rows_by": "seed",
    "skips": [2, 1],
    "reference_skip": 1,
    "steps": 2,
    "guidance_scale": 7.5,
    "sampler": "DPM++ 2M Karras",
    "width": 64,
    "height": 64,
    "rows": [{"prompt": "a fox, at dawn", "seed": 11}, {"prompt": "a fox, at dawn", "seed": 12}],
}
INFOTEXT = write_parameters(
    "a fox, at dawn",
    "blurry",
    {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 42, "Size": "512x768", "Model": "embedded"}
    | {"Clip skip": 2},
)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_chunk(key: str, text: str, kind: bytes = b"") -> bytes:
    """A tEXt chunk (or iTXt where the text is not Latin-1); `kind` b"zTXt" or b"iTXt" compresses it."""
    if not kind:
        kind = b"tEXt" if text.isascii() or all(ord(c) < 256 for c in text) else b"iTXt"
        return chunk(
            kind,
            key.encode()
            + b"\0"
            + (b"" if kind == b"tEXt" else b"\0\0\0\0")
            + text.encode("latin-1" if kind == b"tEXt" else "utf-8"),
        )
    if kind == b"zTXt":
        return chunk(kind, key.encode() + b"\0\0" + zlib.compress(text.encode("latin-1")))
    return chunk(kind, key.encode() + b"\0\1\0\0\0" + zlib.compress(text.encode("utf-8")))


def png_file(path: Path, *chunks: bytes, width: int = 8, height: int = 8) -> Path:
    """A PNG whose header declares `width`×`height` (8-bit grey), with `chunks` before its pixel data."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 9 * 8))  # 8 rows of 8: all a bigger header gets, which is the point
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + b"".join(chunks) + pixels + chunk(b"IEND", b""))
    return path


def worst_settings_files(folder: Path) -> dict[str, Path]:
    """The files that cost read_settings most among those its bounds let through (and one each just past them)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, m = MAX_PARAMETERS_CHARS, MAX_MANIFEST_BYTES
    parameters = {  # texts of the largest size read
        "line-without-colon-64k": "a b-c/" * (n // 6),  # AUTOMATIC1111's regex: ~48 s
        "line-without-colon-40k": "a" * 40_000,  # the regex: ~10 s
        "most-pairs-64k": ("ab:," * n)[:n],
        "quoted-values-64k": ('ab: "x"y,' * n)[:n],
        "escapes-64k": ('ab: "' + "\\x" * n)[:n],
    }
    manifests = {  # and of the largest manifest read
        "deepest-manifest-512k": "[" * m,
        "most-lists-manifest-512k": "[" + "[]," * ((m - 4) // 3) + "[]]",
        "most-strings-manifest-512k": ('"\\""' * m)[:m],
        "longest-valid-manifest-512k": json.dumps(MANIFEST | {"padding": "x" * (m - 1000)}),
    }
    files = {
        name: png_file(folder / f"{name}.png", text_chunk("parameters", text)) for name, text in parameters.items()
    }
    files |= {name: png_file(folder / f"{name}.png", text_chunk("clipskip", text)) for name, text in manifests.items()}
    files["manifest-zlib-bomb"] = png_file(  # 64 MiB of spaces in 64 KB: inflated only up to the bound
        folder / "manifest-zlib-bomb.png", chunk(b"zTXt", b"clipskip\0\0" + zlib.compress(b" " * 2**26, 9))
    )
    files["most-chunks"] = png_file(
        folder / "most-chunks.png",
        *[chunk(b"tEXt", b"comment\0" + b"x" * 1000)] * (MAX_CHUNKS - 2),  # with IHDR and parameters: all read
        text_chunk("parameters", INFOTEXT),
    )
    files["decompression-bomb-header"] = png_file(
        folder / "decompression-bomb-header.png", text_chunk("parameters", INFOTEXT), width=20000, height=20000
    )
    with open(folder / "over-the-size-limit.png", "wb") as big:  # sparse: no disk used
        big.truncate(MAX_FILE_BYTES + 1)
    files["over-the-size-limit"] = folder / "over-the-size-limit.png"
    return files


def assert_usable_or_refused(path: Path) -> None:
    """read_settings gives a form whose every value the app accepts, or a one-line ValueError of its own."""
    try:
        form, notes = read_settings(path, SD1)
    except ValueError as error:
        assert type(error) is ValueError, repr(error)  # not JSONDecodeError, UnicodeDecodeError, ...
        message = str(error)
        assert message[:1].islower() and "\n" not in message and len(message) < 300, message
        return
    for note in notes:
        assert "\n" not in note and len(note) < 300, note
    orjson.dumps(form)  # what Gradio sends the page: refuses lone surrogates and integers past 64 bits
    if "model" in form:
        assert isinstance(form["model"], str) and len(form["model"]) <= MAX_NAME_CHARS
    prompt = form.get("prompt", "")
    if form.get("prompt_rows"):  # as the app's Generate reads the prompt box
        prompt = [line.strip() for line in prompt.splitlines() if line.strip()]
    ComparisonRequest.from_inputs(  # the app's own checks, as Generate makes them
        prompt,
        negative_prompt=form.get("negative_prompt", ""),
        seed=seed_list(form["seeds"]) if form.get("seeds") else form.get("seed", RANDOM_SEED),
        skips=form["skips"] or [1],  # [] from AUTOMATIC1111: the form keeps its own skips
        steps=form.get("steps", DEFAULT_STEPS),
        guidance_scale=form.get("guidance_scale", DEFAULT_GUIDANCE),
        width=form.get("width"),
        height=form.get("height"),
        scheduler=form.get("scheduler"),
        reference=form.get("reference"),
        max_skip=MAX_CLIP_SKIP,
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(list(MANIFEST)) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=25,
)
NUMBER_TEXTS = st.sampled_from(["0", "-1", "²", "٣", "1e30", "nan", "1_000", " 7", "7.5", "64", "65", "9" * 5000])
VALUE = st.text(max_size=30) | NUMBER_TEXTS | st.integers().map(str) | st.floats().map(str)
KEYS = st.sampled_from(["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Clip skip", "Model"])
SETTINGS_LINE = st.lists(st.tuples(KEYS | st.text(max_size=12), VALUE), max_size=10).map(
    lambda pairs: ", ".join(f"{key}: {json.dumps(v) if st_quote(v) else v}" for key, v in pairs)
)
CHUNK_KIND = st.sampled_from([b"", b"zTXt", b"iTXt"])


def st_quote(value: str) -> bool:
    return len(value) % 3 == 0  # some values JSON-quoted, as AUTOMATIC1111 quotes awkward ones


def fuzz_png(tmp_path_factory, key: str, text: str, kind: bytes) -> Path:
    if kind == b"zTXt" and any(ord(c) > 255 for c in text):
        kind = b"iTXt"
    return png_file(tmp_path_factory.mktemp("fuzz") / "fuzz.png", text_chunk(key, text, kind))


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(text=st.text(max_size=300) | st.builds("\n".join, st.lists(st.text(max_size=60) | SETTINGS_LINE, max_size=4)))
def test_any_parameters_text(tmp_path_factory, text):
    assert_usable_or_refused(fuzz_png(tmp_path_factory, "parameters", text, b""))


@FUZZ
@given(key=KEYS, value=VALUE, kind=CHUNK_KIND)
def test_an_automatic1111_text_with_one_value_changed(tmp_path_factory, key, value, kind):
    line = INFOTEXT.splitlines()[-1]
    start = line.find(f"{key}: ")
    changed = f"{key}: {value}, " + line if start < 0 else line.replace(line[start:].split(",")[0], f"{key}: {value}")
    assert_usable_or_refused(fuzz_png(tmp_path_factory, "parameters", INFOTEXT.replace(line, changed), kind))


@FUZZ
@given(text=st.text(max_size=200) | JSON.map(json.dumps), kind=CHUNK_KIND)
def test_any_manifest(tmp_path_factory, text, kind):
    assert_usable_or_refused(fuzz_png(tmp_path_factory, "clipskip", text, kind))


@FUZZ
@given(
    field=st.sampled_from(list(MANIFEST)),
    row_field=st.sampled_from([None, "prompt", "seed"]),
    value=JSON | NUMBER_TEXTS | st.just("delete"),
    by_prompt=st.booleans(),
)
def test_a_manifest_with_one_field_changed(tmp_path_factory, field, row_field, value, by_prompt):
    manifest = json.loads(json.dumps(MANIFEST)) | ({"rows_by": "prompt"} if by_prompt else {})
    target, name = (manifest["rows"][1], row_field) if row_field else (manifest, field)
    if value == "delete":
        del target[name]
    else:
        target[name] = value
    assert_usable_or_refused(fuzz_png(tmp_path_factory, "clipskip", json.dumps(manifest), b""))


@FUZZ
@given(
    kind=st.sampled_from([b"tEXt", b"zTXt", b"iTXt"]),
    key=st.sampled_from(["parameters", "clipskip"]),
    data=st.binary(),
)
def test_any_text_chunk_bytes(tmp_path_factory, kind, key, data):
    path = png_file(tmp_path_factory.mktemp("fuzz") / "fuzz.png", chunk(kind, key.encode() + b"\0" + data))
    assert_usable_or_refused(path)


def test_the_valid_examples_load(tmp_path):
    """The fuzz tests' starting points are good files: what they change is what is wrong."""
    form, notes = read_settings(png_file(tmp_path / "a.png", text_chunk("clipskip", json.dumps(MANIFEST))), SD1)
    assert (form["seeds"], form["skips"], notes) == ("11, 12", [2, 1], [])
    form, notes = read_settings(png_file(tmp_path / "b.png", text_chunk("parameters", INFOTEXT)), SD1)
    assert (form["seed"], form["skips"], form["width"], notes) == (42, [2], 512, [])
    assert_usable_or_refused(tmp_path / "a.png")
    assert_usable_or_refused(tmp_path / "b.png")


def test_the_worst_files_are_read_or_refused(tmp_path):
    for path in worst_settings_files(tmp_path).values():
        assert_usable_or_refused(path)
