"""Finished cells, kept by everything that changes an image, so that a re-run with one more skip value (or one more
seed row) renders only the new cells. Bounded by bytes; the least recently used cells go first."""

import threading
from collections import OrderedDict

from PIL import Image

DEFAULT_MAX_BYTES = 256 * 2**20


class CellCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._cells: OrderedDict[tuple, tuple[Image.Image, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[Image.Image, bool] | None:
        """(image, flagged by the safety checker), or None."""
        with self._lock:
            if key not in self._cells:
                return None
            self._cells.move_to_end(key)
            return self._cells[key]

    def put(self, key: tuple, image: Image.Image, flagged: bool) -> None:
        size = cell_bytes(image)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._cells:
                self.bytes -= cell_bytes(self._cells.pop(key)[0])
            self._cells[key] = (image, flagged)
            self.bytes += size
            while self.bytes > self.max_bytes:
                self.bytes -= cell_bytes(self._cells.popitem(last=False)[1][0])

    def __len__(self) -> int:
        return len(self._cells)

    def scoped(self, scope: str) -> "ScopedCache":
        """This cache as one visitor sees it: only the cells that visitor rendered."""
        return ScopedCache(self, scope)


class ScopedCache:
    """One visitor's view of a shared `CellCache`: keys carry the visitor's scope, so nobody is served another's
    cells or learns from a fast answer or a `cached` flag what someone else rendered. The byte bound stays shared."""

    def __init__(self, cache: CellCache, scope: str):
        self.cache, self.scope = cache, scope

    def get(self, key: tuple) -> tuple[Image.Image, bool] | None:
        return self.cache.get((self.scope, *key))

    def put(self, key: tuple, image: Image.Image, flagged: bool) -> None:
        self.cache.put((self.scope, *key), image, flagged)


def cell_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())
