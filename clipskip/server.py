"""What keeps one visitor from stalling, outliving or outgrowing the server: bounded request bodies, a disk cap on
Gradio's file cache, renders that end with their request, and at most N of them at once; and whether the server's
port is free before it starts."""

import contextlib
import errno
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .formats.png import MAX_FILE_BYTES

log = logging.getLogger("clipskip")

MAX_BODY_BYTES = 256 * 2**10  # a /compare request is a few kB; 8 rows of 2,000-character prompts are 64 kB at most
MAX_QUERY_BYTES = 16 * 2**10  # a link with settings (clipskip.ui.COPY_LINK_JS) is under 12 kB at the app's limits
MAX_UPLOAD_BYTES = MAX_FILE_BYTES  # a settings PNG: the largest file the settings reader opens
CACHE_MAX_AGE_S = 3600  # files Gradio serves (bundles, uploads) go after an hour...
CACHE_MAX_BYTES = 1024 * 2**20  # ...and the oldest first while all of them together pass 1 GiB
PRUNE_EVERY_S = 30
FRESH_FOLDER_S = 300


class BodyLimit:
    """ASGI middleware: a request body larger than its bound is answered 413 before anything parses it, by its
    Content-Length when it says one and by counting the bytes as they arrive when it does not (chunked bodies).
    Uploads (`…/upload`) get `upload_bytes`, everything else `max_bytes`. An address whose query is longer than
    MAX_QUERY_BYTES is answered 414 (Gradio's own handling of one failed with a traceback and a bare 500)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, upload_bytes: int = MAX_UPLOAD_BYTES):
        self.app, self.max_bytes, self.upload_bytes = app, max_bytes, upload_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            return await refuse(send, 414, f"address too long: its query is over {MAX_QUERY_BYTES:,} bytes")
        limit = self.upload_bytes + 2**16 if scope["path"].endswith("/upload") else self.max_bytes  # + multipart
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or len(length) > 12 or int(length) > limit):
            return await too_large(send, limit)
        received, started, refused = 0, False, False

        async def counted():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # answer now; the app reads a disconnect and its own answer is dropped
                    if not started:
                        await too_large(send, limit)
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def watched(message):
            nonlocal started
            if not refused:
                started = started or message["type"] == "http.response.start"
                await send(message)

        await self.app(scope, counted, watched)


API_PATH = re.compile(r".*/(?:(queue)/join|(run|api|call|call/v2)/([^/]+))/?")  # Gradio's routes to an event


class KnownEvents:
    """ASGI middleware after `BodyLimit`, for Gradio's routes that start an event (`queue/join`, `run/NAME`,
    `api/NAME`, `call/NAME`, `call/v2/NAME`, each with or without a trailing slash): answers what Gradio's own lookup
    answered with a traceback and a bare 500. An endpoint name that is none of the page's is 404, naming the public
    ones; a `fn_index` that names no event is 422; a body nested too deeply to parse is 400; `call/v2`'s named values
    that do not fit the endpoint are 422 with Gradio's own sentence. `events` is the Blocks' own dict of events, read
    at each request. Other requests pass untouched."""

    def __init__(self, app, events: dict):
        self.app, self.events = app, events

    async def __call__(self, scope, receive, send):
        route = API_PATH.fullmatch(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        _, kind, name = route.groups()
        names = {fn.api_name for fn in self.events.values() if getattr(fn, "api_name", None)}
        if name is not None and not (kind in ("run", "api") and name == "predict") and name not in names:
            public = sorted(f"/{fn.api_name}" for fn in self.events.values() if is_public(fn))
            return await refuse(send, 404, f"no endpoint /{name[:40]} here; this server's: {', '.join(public)}")
        body, more = b"", True
        while more:  # bounded: BodyLimit stops it at its limit
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body, more = body + message.get("body", b""), message.get("more_body", False)
        try:
            index = json.loads(body).get("fn_index")
        except RecursionError:
            return await refuse(send, 400, "request body nests too deeply to read")
        except (ValueError, AttributeError):  # not JSON, or not an object: Gradio's own check answers it
            index = None
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index not in self.events):
            return await refuse(send, 422, f"fn_index {json.dumps(index)[:40]} is not an event of this page")
        sent, started = False, False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, replay, watched)
        except TypeError as error:  # call/v2: Gradio's sentence on values that do not fit ("No value provided …")
            if kind != "call/v2" or started:
                raise
            log.info("refused (call/v2/%s): %s", name, error)
            await refuse(send, 422, str(error).splitlines()[0][:300] if str(error) else "values that do not fit")


def is_public(fn) -> bool:
    return getattr(fn, "api_visibility", "public") == "public" and bool(getattr(fn, "api_name", None))


async def too_large(send, limit: int) -> None:
    await refuse(send, 413, f"request body too large: at most {limit:,} bytes")


async def refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def prune(root: Path, max_age_s: float = CACHE_MAX_AGE_S, max_bytes: int = CACHE_MAX_BYTES) -> int:
    """Delete files under `root` older than `max_age_s`, then the oldest while the rest pass `max_bytes`; empty
    folders go too. Returns the bytes left."""
    files = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:  # removed meanwhile
                continue
            files.append((stat.st_mtime, stat.st_size, path))
    files.sort()
    total, now = sum(size for _, size, _ in files), time.time()
    for mtime, size, path in files:
        if now - mtime <= max_age_s and total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
    for folder, _, _ in os.walk(root, topdown=False):
        # an empty folder younger than a few minutes may be one a writer has just made and is about to fill
        with contextlib.suppress(OSError):  # gone, not empty, or filled meanwhile
            if folder != str(root) and now - os.stat(folder).st_mtime > FRESH_FOLDER_S:
                os.rmdir(folder)
    return total


def keep_pruned(root: Path, stop: threading.Event, every_s: float = PRUNE_EVERY_S, **bounds) -> threading.Thread:
    """A daemon thread that prunes `root` every `every_s` seconds until `stop` is set."""

    def loop():
        while not stop.wait(every_s):
            try:
                prune(root, **bounds)
            except OSError as error:
                log.warning("pruning %s failed: %s", root, error)

    thread = threading.Thread(target=loop, name="clipskip-prune", daemon=True)
    thread.start()
    return thread


def port_in_use(host: str, port: int) -> bool:
    """Whether another server listens on `host:port`. Bound as uvicorn binds (SO_REUSEADDR), so a port a stopped
    server left in TIME_WAIT counts as free; a host that does not resolve is left for the server to report."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        return False
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


class RenderGate:
    """At most `limit` renders at once, counted by the render threads themselves. Gradio frees a request's queue
    slot the moment it is cancelled, while its render thread still finishes the step it is in; without this gate a
    visitor who submits and cancels in a loop runs any number of renders at once."""

    def __init__(self, limit: int):
        self._slots = threading.BoundedSemaphore(limit)
        self._free = limit
        self._lock = threading.Lock()

    def busy(self) -> bool:
        """Whether every slot is taken now (a new render would wait)."""
        return self._free == 0

    def run(self, work: Callable[[], object], should_stop: Callable[[], bool], stopped: Callable[[], Exception]):
        """`work()` once a slot is free; `stopped()` is raised instead if `should_stop` turns true while waiting."""
        while not self._slots.acquire(timeout=0.1):
            if should_stop():
                raise stopped()
        with self._lock:
            self._free -= 1
        try:
            if should_stop():
                raise stopped()
            return work()
        finally:
            with self._lock:
                self._free += 1
            self._slots.release()


UNREAD_S = 10.0  # a client that leaves its event's messages unread this long is taken as gone


def current_event_alive() -> Callable[[], bool]:
    """Whether the Gradio event being handled still has a client: Gradio marks an event dead when its client's
    stream closes (a closed tab, a dropped HTTP connection) but lets the handler run on; and a client that never
    opens the stream (a bare `queue/join`, a REST call never fetched) leaves its messages unread, which Gradio never
    notices: gone too once they stay unread for `UNREAD_S`. Reads Gradio 6.31's queue (requirements.txt pins it;
    `tests/test_server.py` fails if a new version changes this)."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    event = queue.event_ids_to_events.get(event_id) if queue is not None and event_id else None
    if event is None:
        return lambda: True
    unread_since = [None]

    def alive() -> bool:
        messages = queue.pending_messages_per_session.get(event.session_hash)
        if messages is None or messages.empty():
            unread_since[0] = None
        elif unread_since[0] is None:
            unread_since[0] = time.monotonic()
        return event.alive and (unread_since[0] is None or time.monotonic() - unread_since[0] < UNREAD_S)

    return alive
