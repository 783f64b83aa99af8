"""ComfyUI image metadata: its API `prompt` graph and UI `workflow` graph, read into this app's form and written for
every cell (to be written)."""

from .fields import ImageSettings

TEXTS: dict[str, int] = {}
# this app's sampler -> ComfyUI's KSampler (sampler_name, scheduler): the same algorithm and noise schedule
SAMPLERS = {
    "Euler a": ("euler_ancestral", "normal"),
    "Euler": ("euler", "normal"),
    "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M Karras": ("dpmpp_2m", "karras"),
    "DDIM": ("ddim", "ddim_uniform"),
    "UniPC": ("uni_pc", "normal"),
}


def our_sampler(sampler_name, scheduler) -> str | None:
    """This app's sampler for ComfyUI's (sampler_name, scheduler) pair, or None where none is the same."""
    return next((ours for ours, pair in SAMPLERS.items() if pair == (sampler_name, scheduler)), None)


def read(texts: dict[str, str]) -> ImageSettings | None:
    return None
