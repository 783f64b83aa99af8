"""The embedded model: a tiny Stable-Diffusion-architecture pipeline built in-process, so the app runs offline.

Its weights are random (drawn from a fixed seed), so it draws patterns rather than pictures, but every part is real
SD 1.x architecture: a 12-layer CLIP text encoder, a cross-attention UNet and an 8x VAE, run by the same code as a
real checkpoint. The tokenizer is a CLIP-format byte-level BPE whose vocabulary is learned here from `CORPUS`.
"""

import json

import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

NAME = "embedded"
INIT_SEED = 20240229
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_WINDOW = 77  # tokens, as in every Stable Diffusion text encoder

# Words people put in prompts; the BPE merges are learned from these, every other text falls back to bytes.
CORPUS = """
a an the of on in with and at by from under over behind beside near through into
photo painting drawing sketch illustration render portrait landscape still life close-up wide shot
cat dog bird horse fox owl fish dragon robot astronaut knight wizard girl boy woman man child person people
house castle city street tower bridge forest mountain mountains river lake sea ocean beach desert island sky
cloud clouds sun moon star stars night day sunset sunrise rain snow fog storm light shadow fire water stone
red green blue yellow white black orange purple pink brown grey gray gold silver colourful colorful dark bright
circle square triangle star shapes small large big tiny huge left right top bottom centre center background
highly detailed masterpiece best quality high quality low quality worst quality blurry sharp focus bokeh
cinematic lighting studio soft hard golden hour volumetric dramatic moody vibrant pastel muted
oil watercolor watercolour ink pencil charcoal digital art concept art anime manga cartoon comic pixel
realistic photorealistic hyperrealistic surreal abstract minimalist vintage retro futuristic cyberpunk steampunk
fantasy science fiction medieval ancient modern style by artist trending on artstation 4k 8k hdr
lowres bad anatomy extra fingers deformed ugly text watermark signature cropped jpeg artifacts
""".split()  # noqa: SIM905 (a word list reads better as text)


def build_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer (same normalisation, split and byte-level BPE as OpenAI's) with a vocabulary made here."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=4096, min_frequency=1, initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False
    )
    bpe.train_from_iterator(CORPUS, trainer)
    merges = [tuple(pair) for pair in json.loads(bpe.to_str())["model"]["merges"]]
    # CLIP's order: every byte, every byte ending a word, the merges in rank order, then the two special tokens.
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_WINDOW)


def build_embedded_pipeline() -> StableDiffusionPipeline:
    """The embedded pipeline, the same weights on every machine (fixed init seed, CPU float32)."""
    tokenizer = build_tokenizer()
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        torch.manual_seed(INIT_SEED)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=64,
                intermediate_size=256,
                num_hidden_layers=12,  # as in SD 1.x, so skips 1..12 mean what they mean there
                num_attention_heads=4,
                max_position_embeddings=CLIP_WINDOW,
                hidden_act="quick_gelu",
                projection_dim=64,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=64,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(16, 32, 32, 32),  # four blocks: 8x down-sampling, as in SD
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=256,
        )
    scheduler = DPMSolverMultistepScheduler(  # SD 1.x's noise schedule
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, use_karras_sigmas=True
    )
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.register_to_config(_name_or_path=NAME)
    return pipe
