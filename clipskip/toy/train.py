"""Train the embedded model from nothing, SD 1.x's recipe at toy scale: `python -m clipskip.toy.train`.

1. A 12-layer CLIP text encoder learns captions against pictures (contrastive, as CLIP did), then is frozen. Half of
   each batch are near misses of the other half (a shape's kind or colour changed, or two shapes' colours swapped),
   so that it must tell them apart.
2. An `AutoencoderKL` learns to squeeze 64x64 pictures into 16x16x4 latents and back; its loss weighs the shapes'
   pixels and edges up, so that a star keeps its points.
3. A `UNet2DConditionModel` learns to denoise those latents, conditioned on the frozen encoder's last layer, with
   one caption in ten dropped so classifier-free guidance works.
4. The autoencoder's decoder alone learns on; the latents stay the ones the UNet learned.
5. The parts are saved as one diffusers pipeline (safetensors, float16) with the project's tokenizer.

Every random draw comes from `Recipe.seed`. Each finished stage is kept in the work folder with the settings it was
trained with (`STAGES`): a run that stops resumes at the stage it was in, and a changed setting trains again only the
stages that depend on it.
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel, compute_snr
from diffusers.utils import logging as diffusers_logging
from tqdm.auto import tqdm
from transformers import CLIPTextModel

from ..embedded import MODEL_DIR, build_tokenizer
from . import models
from .scenes import NEAR_MISSES, PALETTE, sample_scene, sample_scenes, scene_batch, twin


@dataclass(frozen=True)
class Recipe:
    seed: int = 20261126
    text_steps: int = 600
    text_batch: int = 128
    text_twins: float = 0.5  # the part of each text batch that is a near miss of another picture in it
    near_misses: str = "kind+colour+swap"  # what near misses change: scenes.NEAR_MISSES, one or several joined by +
    vae_steps: int = 1500
    vae_batch: int = 16
    scenes: int = 40_000  # the UNet's data set, encoded once
    unet_steps: int = 4200
    unet_lr: float = 1e-3
    decoder_steps: int = 600
    unet_batch: int = 64
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999

    def __post_init__(self):
        if not 0 <= self.text_twins <= 0.5:
            raise ValueError(f"text_twins must be 0 to 0.5 (a near miss copies a picture), not {self.text_twins}")
        if not set(self.near_misses.split("+")) <= set(NEAR_MISSES):
            raise ValueError(f"near_misses must be one or more of {', '.join(NEAR_MISSES)} joined by +")


# The recipe fields each stage's result depends on: its own, and those of the stages it reads. A finished stage is
# kept while these stay the same; change one and that stage, and every stage after it that reads it, trains again.
STAGES = {
    "text_encoder": ("seed", "text_steps", "text_batch", "text_twins", "near_misses"),
    "vae": ("seed", "vae_steps", "vae_batch"),
}
UNET_FIELDS = ("scenes", "unet_steps", "unet_lr", "unet_batch", "caption_dropout", "min_snr_gamma", "ema_decay")
STAGES["unet"] = STAGES["text_encoder"] + STAGES["vae"][1:] + UNET_FIELDS
STAGES["decoder"] = STAGES["vae"] + ("scenes", "decoder_steps")  # scenes: the latent scale measured on them

QUICK = replace(  # a smoke run: every stage, a few steps each
    Recipe(),
    text_steps=4,
    text_batch=16,
    vae_steps=4,
    vae_batch=8,
    scenes=64,
    unet_steps=4,
    unet_batch=16,
    decoder_steps=4,
)


def tokens(tokenizer, captions: list[str], padding="max_length") -> torch.Tensor:
    """Token ids padded as SD pads them: to the whole window, or to the longest (enough for the pooled output)."""
    window = tokenizer.model_max_length
    return tokenizer(captions, padding=padding, max_length=window, return_tensors="pt")["input_ids"]


def optimiser(model: torch.nn.Module, lr: float, steps: int):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    return opt, get_cosine_schedule_with_warmup(opt, num_warmup_steps=min(100, steps // 10), num_training_steps=steps)


def run_steps(name: str, steps: int, step) -> list[float]:
    """Call `step(i) -> loss` `steps` times under a progress bar; the loss curve, averaged every 50 steps."""
    losses, curve = [], []
    bar = tqdm(range(steps), desc=name, unit="step", mininterval=5)
    for i in bar:
        losses.append(step(i))
        if len(losses) == 50 or i == steps - 1:
            curve.append(round(float(np.mean(losses)), 5))
            bar.set_postfix(loss=curve[-1])
            losses = []
    return curve


# 1. Text encoder
def train_text_encoder(recipe: Recipe, tokenizer) -> tuple[CLIPTextModel, list[float]]:
    torch.manual_seed(recipe.seed + 1)
    rng = np.random.default_rng(recipe.seed + 1)
    pair = models.ContrastivePair(tokenizer).train()
    opt, schedule = optimiser(pair, 1e-3, recipe.text_steps)
    twins, changes = round(recipe.text_batch * recipe.text_twins), recipe.near_misses.split("+")

    def change():
        return changes[rng.integers(len(changes))] if len(changes) > 1 else changes[0]

    def step(_):
        scenes = [sample_scene(rng) for _ in range(recipe.text_batch - twins)]
        scenes += [twin(rng, scene, change()) for scene in scenes[:twins]]
        loss = pair(
            input_ids=tokens(tokenizer, [s.caption for s in scenes], padding="longest"),  # causal: pads change nothing
            pixel_values=torch.from_numpy(scene_batch(scenes)),
        )
        loss.backward()
        opt.step(), schedule.step(), opt.zero_grad()
        return loss.item()

    curve = run_steps("1/4 text encoder", recipe.text_steps, step)
    return models.text_encoder_of(pair, tokenizer).eval().requires_grad_(False), curve


# 2. Autoencoder
SHAPE_WEIGHT = 5.0  # a shape's pixels are a tenth of a picture, but they are what its caption is about


def pictures(rng: np.random.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` random scenes' pictures, and a weight per pixel: SHAPE_WEIGHT on shapes, 1 on the background."""
    scenes = [sample_scene(rng) for _ in range(count)]
    x = torch.from_numpy(scene_batch(scenes))
    background = torch.tensor([PALETTE[s.background] for s in scenes], dtype=torch.float32) / 127.5 - 1.0
    on_shape = (x - background[:, :, None, None]).abs().amax(dim=1, keepdim=True) > 0.02
    return x, torch.where(on_shape, SHAPE_WEIGHT, 1.0)


def reconstruction_loss(reconstruction: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L2 + L1 per pixel, weighted, plus L1 between the two pictures' gradients: a blurred edge costs twice."""
    error = reconstruction - x
    loss = (weight * (error.square() + error.abs())).mean()
    for dim in (2, 3):
        loss = loss + F.l1_loss(reconstruction.diff(dim=dim), x.diff(dim=dim))
    return loss


def train_autoencoder(recipe: Recipe):
    torch.manual_seed(recipe.seed + 2)
    rng = np.random.default_rng(recipe.seed + 2)
    vae = models.autoencoder().train()
    opt, schedule = optimiser(vae, 2e-3, recipe.vae_steps)
    pixels_per_image = 3 * models.SIZE * models.SIZE

    def step(_):
        x, weight = pictures(rng, recipe.vae_batch)
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        # SD weighs the KL term 1e-6 against a summed reconstruction loss; per pixel that is this:
        loss = reconstruction_loss(reconstruction, x, weight) + 1e-6 * posterior.kl().mean() / pixels_per_image
        loss.backward()
        opt.step(), schedule.step(), opt.zero_grad()
        return loss.item()

    curve = run_steps("2/4 autoencoder", recipe.vae_steps, step)
    return vae.eval().requires_grad_(False), curve


# 3. UNet
@torch.no_grad()
def encode_data(recipe: Recipe, tokenizer, text_encoder, vae):
    """The UNet's data set, encoded once: latents (scaled to unit spread) and last-layer caption embeddings."""
    scenes = sample_scenes(recipe.seed + 3, recipe.scenes)
    latents, embeddings = [], []
    for start in tqdm(range(0, len(scenes), 256), desc="3/4 encoding the data", mininterval=5):
        chunk = scenes[start : start + 256]
        latents.append(vae.encode(torch.from_numpy(scene_batch(chunk))).latent_dist.mode())
        embeddings.append(text_encoder(tokens(tokenizer, [s.caption for s in chunk]))[0].half())
    latents = torch.cat(latents)
    vae.register_to_config(scaling_factor=round(1.0 / latents.std().item(), 5))
    empty = text_encoder(tokens(tokenizer, [""]))[0]
    return latents * vae.config.scaling_factor, torch.cat(embeddings), empty


def train_unet(recipe: Recipe, latents, embeddings, empty):
    torch.manual_seed(recipe.seed + 4)
    unet = models.denoiser().train()
    ema = EMAModel(unet.parameters(), decay=recipe.ema_decay)
    noise_schedule = models.training_scheduler()
    opt, schedule = optimiser(unet, recipe.unet_lr, recipe.unet_steps)

    def step(_):
        index = torch.randint(len(latents), (recipe.unet_batch,))
        clean, condition = latents[index], embeddings[index].float()
        dropped = torch.rand(recipe.unet_batch) < recipe.caption_dropout
        condition[dropped] = empty  # the empty prompt: what guidance subtracts at sampling time
        noise = torch.randn_like(clean)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (recipe.unet_batch,))
        prediction = unet(noise_schedule.add_noise(clean, noise, t), t, condition).sample
        snr = compute_snr(noise_schedule, t)
        weight = torch.clamp(snr, max=recipe.min_snr_gamma) / snr  # min-SNR weighting: faster to converge
        loss = (F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step(), schedule.step(), opt.zero_grad()
        ema.step(unet.parameters())
        return loss.item()

    curve = run_steps("3/4 UNet", recipe.unet_steps, step)
    ema.copy_to(unet.parameters())
    return unet.eval().requires_grad_(False), curve


# 4. Decoder
def train_decoder(recipe: Recipe, vae):
    """Train the autoencoder's decoder alone on, as Stability AI's ft-MSE VAE did for SD: the encoder, and so every
    latent the UNet learned, stays as it was."""
    torch.manual_seed(recipe.seed + 5)
    rng = np.random.default_rng(recipe.seed + 5)
    vae.requires_grad_(False)
    parts = [vae.post_quant_conv, vae.decoder]
    for part in parts:
        part.requires_grad_(True).train()
    opt, schedule = optimiser(torch.nn.ModuleList(parts), 5e-4, recipe.decoder_steps)

    def step(_):
        x, weight = pictures(rng, recipe.vae_batch)
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.sample()
        loss = reconstruction_loss(vae.decode(latents).sample, x, weight)
        loss.backward()
        opt.step(), schedule.step(), opt.zero_grad()
        return loss.item()

    curve = run_steps("4/4 decoder", recipe.decoder_steps, step)
    return vae.eval().requires_grad_(False), curve


# 5. Everything
def train(recipe: Recipe, out: Path, work: Path) -> dict:
    """Train every stage not already in `work` with the same settings, then write the pipeline to `out`; returns the
    training record."""
    work.mkdir(parents=True, exist_ok=True)
    record_path = work / "record.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record["recipe"] = asdict(recipe)
    tokenizer = build_tokenizer()

    def stage(name, build, load):
        settings = {field: record["recipe"][field] for field in STAGES[name]}
        if (work / name).exists() and record.get(name, {}).get("recipe") == settings:
            return load(work / name)
        began = time.perf_counter()
        model, curve = build()
        model.save_pretrained(work / name)
        record[name] = {"recipe": settings, "seconds": round(time.perf_counter() - began, 1), "loss": curve}
        record_path.write_text(json.dumps(record, indent=1))
        return model

    text_encoder = stage(
        "text_encoder", lambda: train_text_encoder(recipe, tokenizer), CLIPTextModel.from_pretrained
    ).requires_grad_(False)
    vae = stage("vae", lambda: train_autoencoder(recipe), models.AutoencoderKL.from_pretrained).requires_grad_(False)

    def unet_stage():
        latents, embeddings, empty = encode_data(recipe, tokenizer, text_encoder, vae)
        vae.save_pretrained(work / "vae")  # now with its scaling factor
        return train_unet(recipe, latents, embeddings, empty)

    unet = stage("unet", unet_stage, models.UNet2DConditionModel.from_pretrained)
    vae = stage("decoder", lambda: train_decoder(recipe, vae), models.AutoencoderKL.from_pretrained)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tokenizer(),  # a fresh one: fast tokenizers keep the last call's padding in their files
        unet=unet,
        scheduler=models.sampling_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # casting a whole pipeline to float16 on purpose, to halve the files
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    diffusers_logging.set_verbosity(verbosity)
    record["minutes"] = round(sum(record[n]["seconds"] for n in ("text_encoder", "vae", "unet", "decoder")) / 60, 1)
    (out / "training.json").write_text(json.dumps(record, indent=1))
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m clipskip.toy.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help=f"where the pipeline goes (default {MODEL_DIR})")
    parser.add_argument("--work", type=Path, default=Path("toy-training"), help="stages done (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage: checks the code, not the model")
    args = parser.parse_args(argv)
    record = train(QUICK if args.quick else Recipe(), args.out, args.work)
    print(f"Trained in {record['minutes']} minutes; saved to {args.out}")


if __name__ == "__main__":
    main()
