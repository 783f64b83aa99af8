"""invokeai image metadata, read into this app's form (to be written)."""

from .fields import ImageSettings

TEXTS: dict[str, int] = {}


def read(texts: dict[str, str]) -> ImageSettings | None:
    return None
