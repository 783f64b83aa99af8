"""The family comes from the components: two encoders is SDXL, an OpenCLIP (gelu) encoder SD 2.x, else SD 1.x."""

import pytest

from clipskip.families import SD1, SD2, SDXL, detect_family
from tests import tiny_models


@pytest.mark.parametrize(
    ("build", "family"), [(tiny_models.sd1, SD1), (tiny_models.sd2, SD2), (tiny_models.sdxl, SDXL)]
)
def test_families_are_told_apart_by_their_components(build, family):
    assert detect_family(build()) is family


def test_the_embedded_model_is_sd1(pipe):
    assert detect_family(pipe) is SD1


def test_what_each_family_means():
    assert (SD1.final_norm, SD1.native_skip, SD1.pooled) == (True, 1, False)
    assert SD2.final_norm and SD2.native_skip == 1
    assert (SDXL.final_norm, SDXL.native_skip, SDXL.pooled) == (False, 2, True)
    assert [encoder for encoder, _ in SDXL.encoders] == ["text_encoder", "text_encoder_2"]


def test_a_pipeline_without_a_first_text_encoder_is_refused():
    refiner_like = tiny_models.sdxl()
    refiner_like.text_encoder = None
    with pytest.raises(ValueError, match="has no first CLIP text encoder"):
        detect_family(refiner_like)
