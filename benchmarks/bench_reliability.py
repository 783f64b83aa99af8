"""Benchmarks what one hostile visitor can do to the app: how fast the worst inputs are refused, whether the server
keeps answering meanwhile, and whether its memory stays flat over many sessions; prints Markdown.

Starts `python app.py` (the embedded model, CPU) in a subprocess on a free local port and talks to it over raw HTTP
and gradio_client, as a stranger would:

- refusals: each worst input is sent once to warm up, then `--repeats` times; the time from sending it to the
  answer (median, max), and the slowest answer of `/config` from a second client meanwhile (a parse holding the GIL
  would stall it);
- memory: `--sessions` fresh clients each render one 4-skip comparison; the server's resident memory after the
  first 10 and after all of them.

    python benchmarks/bench_reliability.py
    python benchmarks/bench_reliability.py --sessions 50 --repeats 5
"""

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import zlib
from datetime import date
from pathlib import Path

import httpx
import psutil
from gradio_client import Client
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[1]
GOOD = ["a large orange star in the centre, on a purple background", "", 3, [1, 2, 3, 4], 20, 7.5, 64, 64]
GOOD += ["Euler a", "embedded", "", False, 0, "a1111"]


def png(**texts: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def bomb() -> bytes:
    """A valid 8×8 PNG whose header declares 20000×20000 pixels (CRC fixed)."""
    data = bytearray(png())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = (20000).to_bytes(4, "big") * 2
    data[ihdr + 13 : ihdr + 17] = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])).to_bytes(4, "big")
    return bytes(data)


SETTINGS_FILES = {
    "`parameters`: one 40 KB line without a colon": lambda: png(parameters="a" * 40_000),
    "`parameters`: one 1 MB line without a colon": lambda: png(parameters="word " * 200_000),
    "manifest nested 100,000 deep": lambda: png(clipskip="[" * 100_000 + "]" * 100_000),
    "decompression bomb (20000×20000 declared)": bomb,
    "`Clip skip: 99999999999999999999`": lambda: png(
        parameters="x\nSteps: 20, Sampler: Euler, Clip skip: " + "9" * 20
    ),
    "size of 5,000 digits": lambda: png(parameters="x\nSteps: 20, Sampler: Euler, Size: " + "9" * 5000 + "x64"),
}
COMPARE_INPUTS = {  # index in GOOD -> value
    "steps 0 (an ordinary refusal: the queue's own cost)": {4: 0},
    "`skips`: 60,000 copies of 1": {3: [1] * 60_000},
    "`seeds`: `random:` + 5,000 nines": {10: "random:" + "9" * 5000},
    "`seeds`: 8,000 comma-separated numbers": {10: ",".join(["1"] * 8000)},
    "`skips`: [1e308]": {3: [1e308]},
    "prompt of 2,001 characters": {0: "x" * 2001},
    "prompt with a lone surrogate": {0: "a \ud800 b"},
    "`prompt_rows` with 8,000 lines": {0: "x\n" * 8000, 11: True},
}


HTTP = httpx.Client(timeout=60)  # one connection pool, as a browser keeps: connecting is not part of an answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(port: int) -> subprocess.Popen:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen(
        [sys.executable, "app.py", "--device", "cpu", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/config", timeout=2).is_success:
                return app
        except httpx.HTTPError:
            time.sleep(0.2)
    app.kill()
    raise SystemExit("the app did not start within 2 minutes")


def fn_index(url: str, name: str) -> int:
    dependencies = httpx.get(f"{url}/config").json()["dependencies"]
    for i, dependency in enumerate(dependencies):
        if dependency.get("api_name") == name:
            return i
    raise SystemExit(f"no event {name!r} in the app")


def event(url: str, index: int, data: list) -> tuple[float, str]:
    """Send one event as the page does; seconds to its final message, and that message's text (cut short)."""
    session = os.urandom(8).hex()
    start = time.perf_counter()
    body = {"data": data, "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None}
    text = json.dumps(body)  # ASCII, so a lone surrogate travels as the escape JSON allows
    joined = HTTP.post(f"{url}/gradio_api/queue/join", content=text, headers={"content-type": "application/json"})
    if joined.status_code != 200:
        return time.perf_counter() - start, f"HTTP {joined.status_code}"
    params = {"session_hash": session}
    with HTTP.stream("GET", f"{url}/gradio_api/queue/data", params=params) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and (message := json.loads(line[6:])).get("msg") == "process_completed":
                output = message.get("output", {})
                return time.perf_counter() - start, str(output.get("error") or "answered")[:90]
    return time.perf_counter() - start, "stream ended"


def upload(url: str, data: bytes) -> dict:
    path = HTTP.post(f"{url}/gradio_api/upload", files={"files": ("s.png", data, "image/png")}).json()[0]
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "s.png"}


def watch_config(url: str, stop: threading.Event, slowest: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        httpx.get(f"{url}/config", timeout=60)
        slowest[0] = max(slowest[0], time.perf_counter() - start)
        time.sleep(0.01)


def refusals(url: str, repeats: int) -> list[tuple[str, float, float, str]]:
    compare, settings = fn_index(url, "compare"), fn_index(url, "load_settings")
    rows = []
    for name, make in SETTINGS_FILES.items():
        data = make()
        times, answer = [], ""
        event(url, settings, [upload(url, data), [1, 2, 3, 4], "embedded"])  # warm-up, not timed
        for _ in range(repeats):
            file = upload(url, data)  # read once and deleted: uploaded anew each time (not timed)
            seconds, answer = event(url, settings, [file, [1, 2, 3, 4], "embedded"])
            times.append(seconds)
        rows.append((f"settings image: {name}", statistics.median(times), max(times), answer))
    for name, change in COMPARE_INPUTS.items():
        data = [change.get(i, value) for i, value in enumerate(GOOD)]
        times = []
        event(url, compare, data)  # warm-up, not timed
        for _ in range(repeats):
            seconds, answer = event(url, compare, data)
            times.append(seconds)
        rows.append((f"/compare: {name}", statistics.median(times), max(times), answer))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        answer = HTTP.post(f"{url}/gradio_api/queue/join", content=b"x" * (8 * 2**20)).status_code
        times.append(time.perf_counter() - start)
    rows.append(("a request body of 8 MB", statistics.median(times), max(times), f"HTTP {answer}"))
    return rows


def sessions(url: str, pid: int, count: int) -> list[tuple[int, float]]:
    process, rss = psutil.Process(pid), []
    for i in range(count):
        Client(url, verbose=False).predict(*GOOD[:2], 1000 + i, *GOOD[3:], api_name="/compare")
        if i + 1 in (1, 10, 20, 30, 40, 50, count):
            rss.append((i + 1, process.memory_info().rss / 2**20))
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    app = start_app(port)
    url = f"http://127.0.0.1:{port}"
    try:
        stop, slowest = threading.Event(), [0.0]
        watcher = threading.Thread(target=watch_config, args=(url, stop, slowest))
        watcher.start()
        refused = refusals(url, args.repeats)
        stop.set()
        watcher.join()
        memory = sessions(url, app.pid, args.sessions)
    finally:
        app.terminate()
        app.wait(30)
    machine = f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
    machine += f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    print(f"## {date.today()} · {machine} · `python app.py` on the embedded model, CPU\n")
    print(f"### Refusals of the worst inputs ({args.repeats} each, from sending to the answer)\n")
    print("| input | median | slowest | answer |\n|---|---|---|---|")
    for name, median, worst, answer in refused:
        print(f"| {name} | {median * 1000:.0f} ms | {worst * 1000:.0f} ms | {answer.replace('|', '/')} |")
    print(f"\nSlowest `/config` answer to another client meanwhile: {slowest[0] * 1000:.0f} ms.\n")
    print(f"### Resident memory over {args.sessions} sessions (each a new client, one 4-skip render)\n")
    print("| sessions | server RSS |\n|---|---|")
    for count, mib in memory:
        print(f"| {count} | {mib:.0f} MiB |")


if __name__ == "__main__":
    main()
