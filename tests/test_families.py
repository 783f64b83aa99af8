"""The family comes from the components: a transformer beside two CLIP encoders is SD 3, two encoders SDXL, an OpenCLIP
(gelu) encoder SD 2.x, else SD 1.x."""

import pytest

from clipskip.families import SD1, SD2, SD3, SDXL, denoiser, detect_family
from tests import tiny_models


@pytest.mark.parametrize(
    ("build", "family"),
    [(tiny_models.sd1, SD1), (tiny_models.sd2, SD2), (tiny_models.sdxl, SDXL), (tiny_models.sd3, SD3)],
)
def test_families_are_told_apart_by_their_components(build, family):
    assert detect_family(build()) is family


def test_the_embedded_model_is_sd1(pipe):
    assert detect_family(pipe) is SD1


def test_what_each_family_means():
    assert (SD1.final_norm, SD1.native_skip, SD1.pooled, SD1.t5) == (True, 1, (), None)
    assert SD2.final_norm and SD2.native_skip == 1
    assert (SDXL.final_norm, SDXL.native_skip, SDXL.pooled) == (False, 2, ("text_encoder_2",))
    assert [encoder for encoder, _ in SDXL.encoders] == ["text_encoder", "text_encoder_2"]
    # SD 3 (diffusers' pipeline_stable_diffusion_3.py): CLIP-L and CLIP-G at hidden_states[-2], no norm, both pooled
    assert (SD3.final_norm, SD3.native_skip, SD3.diffusers_offset) == (False, 2, 2)
    assert [encoder for encoder, _ in SD3.encoders] == ["text_encoder", "text_encoder_2"]
    assert SD3.pooled == ("text_encoder", "text_encoder_2") and SD3.t5 == ("text_encoder_3", "tokenizer_3")


def test_sd3_without_t5_is_still_sd3_and_its_denoiser_is_the_transformer():
    without_t5 = tiny_models.sd3(t5=False)
    assert detect_family(without_t5) is SD3 and without_t5.text_encoder_3 is None
    assert denoiser(without_t5) is without_t5.transformer
    assert denoiser(tiny_models.sd1()).__class__.__name__ == "UNet2DConditionModel"


def test_a_pipeline_without_a_first_text_encoder_is_refused():
    refiner_like = tiny_models.sdxl()
    refiner_like.text_encoder = None
    with pytest.raises(ValueError, match="has no first CLIP text encoder"):
        detect_family(refiner_like)
