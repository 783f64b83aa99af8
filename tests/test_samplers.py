"""Each sampler is a fresh scheduler on the model's own noise schedule; the model's own is named when it matches."""

import pytest

from clipskip.samplers import SAMPLERS, make_scheduler, sampler_label


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_each_sampler_is_fresh_and_keeps_the_noise_schedule(pipe, name):
    scheduler = make_scheduler(name, pipe.scheduler)
    assert type(scheduler).__name__ == SAMPLERS[name][0]
    assert scheduler is not pipe.scheduler
    assert scheduler.config.beta_schedule == pipe.scheduler.config.beta_schedule == "scaled_linear"
    for key, value in SAMPLERS[name][1].items():
        assert scheduler.config[key] == value


def test_none_copies_the_models_own_scheduler(pipe):
    copy = make_scheduler(None, pipe.scheduler)
    assert copy is not pipe.scheduler and dict(copy.config) == dict(pipe.scheduler.config)


def test_labels(pipe):
    assert sampler_label("Euler a", pipe.scheduler) == "Euler a"
    assert sampler_label(None, pipe.scheduler) == "DPM++ 2M Karras"  # the embedded model's own
    assert sampler_label(None, make_scheduler("DDIM", pipe.scheduler)) == "DDIM"
    plain = make_scheduler("DPM++ 2M", pipe.scheduler)
    assert sampler_label(None, plain) == "DPM++ 2M"
