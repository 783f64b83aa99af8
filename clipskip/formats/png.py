"""Text chunks from a stranger's PNG, and bounded JSON: every size is checked before it is read. Pure Python.

Each text is read from the chunks before the pixel data, as Pillow's Image.open reads them; pixels are never decoded.
"""

import json
import os
import re
import struct
import zlib
from itertools import accumulate
from pathlib import Path

from .fields import MAX_DIGITS

MAX_FILE_BYTES = 64 * 2**20  # above an upscaled 4096² AUTOMATIC1111 PNG; only the chunks before the pixels are read
MAX_CHUNKS = 1000  # chunks before the pixel data; real PNGs have a handful
MAX_KEYWORD_BYTES = 79  # the PNG specification's limit
TEXT_CHUNK_FIELDS_BYTES = 1024  # room in a text chunk for its keyword and iTXt's language tag and translated keyword
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
STRING = re.compile(r'"(?:[^"\\]++|\\[\s\S])*+"?')  # a JSON string, or an unclosed one to the end; never retried
NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
NESTING = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
LONG_NUMBER = re.compile(rb"[-+0-9.eE]{%d,}" % (MAX_DIGITS + 3))  # outside strings only a number is made of these


def png_texts(path: Path, wanted: dict[str, int]) -> dict[str, str]:
    """The texts under the keys of `wanted` (each at most that many bytes) from the PNG at `path`.

    Reads the chunks before the first IDAT, as Pillow's Image.open does, skipping the others' data unread.
    """
    not_png = "this file is not a PNG image that can be read; settings are read from the PNGs image tools write"
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size > MAX_FILE_BYTES:
                raise ValueError(
                    f"this file is over {MAX_FILE_BYTES // 2**20} MiB; settings are read from smaller ones"
                )
            if file.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise ValueError(not_png)
            texts = {}
            for _ in range(MAX_CHUNKS + 1):  # and the first IDAT
                header = file.read(8)
                if len(header) < 8:
                    break  # cut short: what came before is all there is
                length, kind = struct.unpack(">I4s", header)
                if kind in (b"IDAT", b"IEND"):
                    break
                if kind not in TEXT_CHUNKS:
                    file.seek(length + 4, os.SEEK_CUR)  # data and CRC
                    continue
                keyword = file.read(min(length, MAX_KEYWORD_BYTES + 1))
                key = keyword.split(b"\0", 1)[0].decode("latin-1")
                if key not in wanted:
                    file.seek(length - len(keyword) + 4, os.SEEK_CUR)
                    continue
                if key in texts:
                    raise ValueError(f"this image carries two {key!r} texts; which one holds its settings is unclear")
                if length > wanted[key] + TEXT_CHUNK_FIELDS_BYTES:
                    raise ValueError(f"this image's {key!r} text is over {wanted[key]:,} bytes; it is not read")
                data = keyword + file.read(length - len(keyword))
                if len(data) < length or file.read(4) != struct.pack(">I", zlib.crc32(kind + data)):
                    raise ValueError(f"this image's {key!r} text is damaged (cut short, or its checksum is wrong)")
                texts[key] = chunk_text(kind, data, wanted[key], key)
            else:
                raise ValueError(f"this file has over {MAX_CHUNKS:,} chunks before its pixels; a PNG has a few")
    except OSError:
        raise ValueError(not_png) from None
    return texts


def chunk_text(kind: bytes, data: bytes, max_bytes: int, key: str) -> str:
    """The text of a tEXt (Latin-1), zTXt (compressed Latin-1) or iTXt (UTF-8, maybe compressed) chunk's data."""
    damaged = f"this image's {key!r} text is damaged (it does not decompress or decode)"
    too_long = f"this image's {key!r} text is over {max_bytes:,} bytes; it is not read"
    text = data.split(b"\0", 1)[1] if b"\0" in data else b""  # after the keyword
    compressed, encoding = kind == b"zTXt", "latin-1"
    if kind == b"iTXt":
        fields = text[2:].split(b"\0", 2)  # after the compression flag and method: language tag, translated keyword
        if len(text) < 2 or len(fields) < 3:
            raise ValueError(damaged)
        compressed, encoding, text = text[:1] == b"\1", "utf-8", fields[2]
    elif compressed:
        text = text[1:]  # the compression method
    try:
        if compressed:
            inflate = zlib.decompressobj()
            text = inflate.decompress(text, max_bytes + 1)  # never more than this, however well it packs
            if len(text) <= max_bytes and not inflate.eof:
                raise ValueError(damaged)
        if len(text) > max_bytes:
            raise ValueError(too_long)
        return text.decode(encoding)
    except (zlib.error, UnicodeDecodeError):
        raise ValueError(damaged) from None


def parse_json(text: str, what: str, max_depth: int, max_brackets: int):
    """`text`'s JSON, refused unparsed if it nests deeper than `max_depth` (json.loads recurses) or holds more than
    `max_brackets` lists and objects; `what` names the kind of file in the message ("a manifest nests 5 deep")."""
    outside_strings = STRING.sub("", text).encode("utf-8", "surrogatepass")  # brackets in strings do not nest
    brackets = outside_strings.translate(None, NOT_BRACKETS)
    depth = max(accumulate(map(NESTING.__getitem__, brackets[: max_brackets + 1])), default=0)
    if depth > max_depth:
        raise ValueError(f"its JSON is nested more than {max_depth} deep; {what}")
    if len(brackets) > max_brackets:
        raise ValueError(f"its JSON has {len(brackets):,} brackets; at most {max_brackets:,} are read")
    # numbers too long to be settings, found in one pass (json.loads's hooks cost a Python call per number)
    if number := LONG_NUMBER.search(outside_strings):
        raise ValueError(f"it holds a number {len(number[0]):,} characters long")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"it is not JSON ({error.msg} at character {error.pos:,})") from None
