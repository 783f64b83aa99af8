"""Samplers by their AUTOMATIC1111 names, each made fresh per request: schedulers keep per-call state."""

# name -> (diffusers scheduler class, settings on top of the model's own noise schedule)
SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),  # not the model's own, if it has Karras
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {"use_karras_sigmas": False}),
}
DEFAULT_SAMPLER = "DPM++ 2M Karras"


def make_scheduler(name: str | None, model_scheduler):
    """A new scheduler for one request: `name` from SAMPLERS, or None for a copy of the model's own."""
    import diffusers  # here, so that the names above can be read without loading torch

    if name is None:
        return type(model_scheduler).from_config(model_scheduler.config)
    class_name, settings = SAMPLERS[name]
    return getattr(diffusers, class_name).from_config(model_scheduler.config, **settings)


def sampler_label(name: str | None, model_scheduler) -> str:
    """What metadata and captions call the sampler: its A1111 name, else the model's scheduler class."""
    if name is not None:
        return name
    for label, (class_name, settings) in SAMPLERS.items():
        config = model_scheduler.config
        if type(model_scheduler).__name__ == class_name and all(config.get(k) == v for k, v in settings.items()):
            return label
    return type(model_scheduler).__name__
