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
# The samplers that work on a flow-matching model (SD 3): the ones above integrate a noise-prediction schedule, so
# they would take its velocity for noise. AUTOMATIC1111 and Forge call flow matching's Euler "Euler" too.
FLOW_SAMPLERS: dict[str, tuple[str, dict]] = {"Euler": ("FlowMatchEulerDiscreteScheduler", {})}


def flow_matching(model_scheduler) -> bool:
    """Whether the model's own scheduler is a flow-matching one (diffusers' FlowMatch… classes: SD 3)."""
    return type(model_scheduler).__name__.startswith("FlowMatch")


def samplers_for(model_scheduler) -> dict[str, tuple[str, dict]]:
    """The samplers offered for a model with this scheduler: FLOW_SAMPLERS for flow matching, else SAMPLERS."""
    return FLOW_SAMPLERS if flow_matching(model_scheduler) else SAMPLERS


def check_model_sampler(name: str | None, model_scheduler) -> None:
    """Refuse a sampler (one of SAMPLERS) that cannot sample this model: ValueError naming the ones that can."""
    if name is not None and name not in samplers_for(model_scheduler):
        offered = ", ".join(samplers_for(model_scheduler))
        raise ValueError(
            f"sampler {name!r} does not work with this model's flow-matching scheduler "
            f"({type(model_scheduler).__name__}); choose {offered}, or none for the model's own"
        )


def make_scheduler(name: str | None, model_scheduler):
    """A new scheduler for one request: `name` from `samplers_for(model_scheduler)`, or None for a copy of the
    model's own. Raises ValueError for a sampler the model's kind of scheduler cannot use (`check_model_sampler`)."""
    import diffusers  # here, so that the names above can be read without loading torch

    if name is None:
        return type(model_scheduler).from_config(model_scheduler.config)
    check_model_sampler(name, model_scheduler)
    class_name, settings = samplers_for(model_scheduler)[name]
    return getattr(diffusers, class_name).from_config(model_scheduler.config, **settings)


def sampler_label(name: str | None, model_scheduler) -> str:
    """What metadata and captions call the sampler: its A1111 name, else the model's scheduler class."""
    if name is not None:
        return name
    for label, (class_name, settings) in samplers_for(model_scheduler).items():
        config = model_scheduler.config
        if type(model_scheduler).__name__ == class_name and all(config.get(k) == v for k, v in settings.items()):
            return label
    return type(model_scheduler).__name__
