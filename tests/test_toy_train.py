"""Training: the quick recipe runs every stage and writes a pipeline clipskip loads; stages are kept while their
settings stay."""

import json
from dataclasses import asdict, replace

import pytest
import torch
from safetensors import safe_open

from clipskip.embedded import build_tokenizer
from clipskip.loading import load_pipeline
from clipskip.toy import models
from clipskip.toy import train as train_module
from clipskip.toy.train import QUICK, STAGES, main, train, train_decoder


def test_quick_training_writes_a_loadable_float16_pipeline(tmp_path):
    main(["--quick", "--out", str(tmp_path / "model"), "--work", str(tmp_path / "work")])
    pipe = load_pipeline(str(tmp_path / "model"), device="cpu")
    assert pipe.text_encoder.config.num_hidden_layers == 12 and pipe.unet.dtype == torch.float32
    assert pipe.tokenizer.get_vocab() == build_tokenizer().get_vocab()
    with safe_open(tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16  # half the bytes in the repo
    record = json.loads((tmp_path / "model" / "training.json").read_text())
    assert record["recipe"]["unet_steps"] == QUICK.unet_steps and len(record["unet"]["loss"]) == 1
    assert set(record) >= {"text_encoder", "vae", "unet", "decoder", "minutes"}
    assert pipe.vae.config.scaling_factor != 0.18215  # measured on the data, as SD measured its own
    saved = json.loads((tmp_path / "model" / "tokenizer" / "tokenizer.json").read_text())
    assert saved["padding"] is None and saved["truncation"] is None  # no state left over from training's calls


# The least training that still runs every stage: what is kept and what trains again does not depend on how long
TINY = replace(
    QUICK, text_steps=1, text_batch=4, vae_steps=1, vae_batch=2, scenes=8, unet_steps=1, unet_batch=4, decoder_steps=1
)


def test_finished_stages_are_kept_and_a_changed_setting_retrains_only_what_depends_on_it(tmp_path, monkeypatch):
    train(TINY, tmp_path / "model", tmp_path / "work")
    first = json.loads((tmp_path / "work" / "record.json").read_text())
    ran = []
    for stage in ("train_text_encoder", "train_autoencoder", "train_unet", "train_decoder"):
        real = getattr(train_module, stage)
        monkeypatch.setattr(train_module, stage, lambda *a, s=stage, f=real: ran.append(s) or f(*a))
    train(TINY, tmp_path / "again", tmp_path / "work")
    assert ran == [] and json.loads((tmp_path / "work" / "record.json").read_text()) == first

    train(replace(TINY, unet_steps=2), tmp_path / "unet", tmp_path / "work")
    assert ran == ["train_unet"]
    record = json.loads((tmp_path / "work" / "record.json").read_text())
    assert record["unet"]["recipe"]["unet_steps"] == 2 and record["text_encoder"] == first["text_encoder"]

    ran.clear()
    train(replace(TINY, unet_steps=2, text_twins=0.25), tmp_path / "text", tmp_path / "work")
    assert ran == ["train_text_encoder", "train_unet"]  # the UNet reads the text encoder; the autoencoder does not
    ran.clear()
    train(replace(TINY, unet_steps=2, text_twins=0.25, seed=1), tmp_path / "seed", tmp_path / "work")
    assert ran == ["train_text_encoder", "train_autoencoder", "train_unet", "train_decoder"]


def test_near_misses_are_checked():
    with pytest.raises(ValueError, match="text_twins must be 0 to 0.5"):
        replace(QUICK, text_twins=0.6)
    with pytest.raises(ValueError, match="near_misses must be one or more of kind, colour, swap joined by +"):
        replace(QUICK, near_misses="kind+size")


def test_every_setting_belongs_to_a_stage():
    assert {f for fields in STAGES.values() for f in fields} == set(asdict(QUICK))
    assert set(STAGES["unet"]) >= set(STAGES["text_encoder"]) | set(STAGES["vae"])  # it reads both
    assert set(STAGES["decoder"]) >= set(STAGES["vae"])


def test_the_decoder_stage_leaves_the_encoder_and_so_the_latents_alone():
    vae = models.autoencoder()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    after = train_decoder(TINY, vae)[0].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("decoder.", "post_quant_conv.")) for k in changed)
