"""clipskip: render one prompt and one seed at several CLIP skip values and lay the results side by side.

Importing the package loads no model and no torch: the public names below are imported on first use.
"""

import logging

__version__ = "0.1.0"
__all__ = ["Comparison", "compare", "load_pipeline", "skip_embeddings"]

_LAZY = {
    "Comparison": "comparison",
    "compare": "comparison",
    "load_pipeline": "loading",
    "skip_embeddings": "encoding",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'clipskip' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_LAZY[name]}", __name__), name)


# diffusers' safety-checker import asks transformers for CLIPImageProcessor, whose PIL fallback is all we need
logging.getLogger("transformers.utils.import_utils").addFilter(lambda record: "torchvision" not in record.getMessage())
