"""The embedded model: a tiny Stable Diffusion 1.x pipeline trained by this project, so the app runs offline.

It draws 64x64 scenes of coloured shapes ("a small red circle on the left and a blue square on the right, on a
yellow background"), the world it was trained on (`clipskip.toy`), with SD 1.x's parts: a 12-layer CLIP text
encoder, a cross-attention UNet and a 4x VAE, run by the same code as a real checkpoint. Its tokenizer is a
CLIP-format byte-level BPE whose vocabulary is learned here from `CORPUS`. The weights (float16 safetensors, about
11 MB) are committed under `clipskip/toy/model`; `python -m clipskip.toy.train` makes them again from nothing.
"""

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch, diffusers and transformers are imported when a pipeline is built: the page starts first
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

NAME = "embedded"
MODEL_DIR = Path(__file__).parent / "toy" / "model"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_WINDOW = 77  # tokens, as in every Stable Diffusion text encoder
CLIP_PIECES = r"[^\W\d_]+|\d|[^\s\w]+"  # how CLIP splits words before BPE: letters, single digits, punctuation

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


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Byte-pair merges in rank order, until every word is one token; ties go to the alphabetically first pair.

    Written out rather than taken from `tokenizers`' trainer, whose tie order changes from one process to the next
    (it numbers symbols in hash order), which would give the same words other ids on every build."""
    splits = [[*word[:-1], word[-1] + "</w>"] for word in dict.fromkeys(words)]
    merges = []
    while True:
        counts = Counter(pair for split in splits for pair in zip(split, split[1:], strict=False))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for split in splits:
            i = 0
            while i < len(split) - 1:
                if (split[i], split[i + 1]) == best:
                    split[i : i + 2] = [split[i] + split[i + 1]]
                i += 1


def build_tokenizer() -> "CLIPTokenizer":
    """A CLIP tokenizer (same normalisation, split and byte-level BPE as OpenAI's) with a vocabulary made here."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = learn_merges([piece for word in CORPUS for piece in re.findall(CLIP_PIECES, word)])
    # CLIP's order: every byte, every byte ending a word, the merges in rank order, then the two special tokens.
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_WINDOW)


def build_embedded_pipeline() -> "StableDiffusionPipeline":
    """The embedded pipeline from its committed files, in float32 on the CPU; no network, no training."""
    import torch
    from diffusers import StableDiffusionPipeline

    if not (MODEL_DIR / "model_index.json").exists():
        raise FileNotFoundError(
            f"the embedded model's files are missing from {MODEL_DIR}; restore them from git "
            "(git checkout -- clipskip/toy/model) or rebuild them with: python -m clipskip.toy.train"
        )
    pipe = StableDiffusionPipeline.from_pretrained(
        MODEL_DIR, dtype=torch.float32, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.register_to_config(_name_or_path=NAME)
    return pipe
