"""Each sampler is a fresh scheduler on the model's own noise schedule; the model's own is named when it matches."""

import re

import pytest

from clipskip.samplers import SAMPLERS, make_scheduler, sampler_label, samplers_for
from tests import tiny_models

# What each AUTOMATIC1111 name means in diffusers, written out here rather than read from SAMPLERS (which a test
# would then only compare with itself).
MEANINGS = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {"use_karras_sigmas": False}),
}


def test_every_sampler_offered_has_a_known_meaning():
    assert list(SAMPLERS) == list(MEANINGS)


@pytest.mark.parametrize(
    ("name", "own"),
    [(name, "embedded") for name in MEANINGS]
    + [(name, "plain Euler") for name in MEANINGS],  # a model scheduler without Karras sigmas, as SD 1.5's
)
def test_each_sampler_is_fresh_what_its_name_means_and_keeps_the_noise_schedule(pipe, name, own):
    model_scheduler = pipe.scheduler if own == "embedded" else tiny_models.scheduler()
    scheduler = make_scheduler(name, model_scheduler)
    class_name, settings = MEANINGS[name]
    assert type(scheduler).__name__ == class_name
    assert scheduler is not model_scheduler
    assert scheduler.config.beta_schedule == model_scheduler.config.beta_schedule == "scaled_linear"
    assert {key: scheduler.config[key] for key in settings} == settings


def test_none_copies_the_models_own_scheduler(pipe):
    copy = make_scheduler(None, pipe.scheduler)
    assert copy is not pipe.scheduler and dict(copy.config) == dict(pipe.scheduler.config)


def test_labels(pipe):
    assert sampler_label("Euler a", pipe.scheduler) == "Euler a"
    assert sampler_label(None, pipe.scheduler) == "DPM++ 2M Karras"  # the embedded model's own
    assert sampler_label(None, make_scheduler("DDIM", pipe.scheduler)) == "DDIM"
    plain = make_scheduler("DPM++ 2M", pipe.scheduler)
    assert sampler_label(None, plain) == "DPM++ 2M"


def test_a_flow_matching_model_is_offered_its_euler_only_and_other_samplers_are_refused():
    own = tiny_models.sd3().scheduler  # FlowMatchEulerDiscreteScheduler, shift 3
    assert list(samplers_for(own)) == ["Euler"]
    euler = make_scheduler("Euler", own)
    assert type(euler).__name__ == "FlowMatchEulerDiscreteScheduler" and euler is not own
    assert euler.config.shift == own.config.shift == 3.0  # the model's own flow schedule
    assert sampler_label(None, own) == "Euler"
    for name in set(SAMPLERS) - {"Euler"}:
        with pytest.raises(ValueError, match=re.escape(f"sampler '{name}' does not work with this model's flow")):
            make_scheduler(name, own)
