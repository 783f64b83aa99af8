"""Writes a diffusers SD 1.x, SD 2.x or SDXL pipeline as one original-LDM-format checkpoint, as Civitai ships them, and
an SD 3 pipeline in Stability AI's single-file layout."""

import re

import torch
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING
from safetensors.torch import save_file

# diffusers' ResNet parameter names -> LDM's (inverting update_unet_resnet_ldm_to_diffusers)
UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
# diffusers' VAE attention names -> LDM's (inverting update_vae_attentions_ldm_to_diffusers)
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
UNET_PART = re.compile(r"(down_blocks|mid_block|up_blocks)\.(?:(\d+)\.)?(\w+)\.(\d+)\.(.+)")


def save_single_file(pipe, path) -> None:
    """Write `pipe` (a diffusers StableDiffusionPipeline or StableDiffusionXLPipeline) as ONE original-LDM-format
    (AUTOMATIC1111 / Civitai style) .safetensors checkpoint at `path`: UNet under `model.diffusion_model.`, VAE under
    `first_stage_model.`, text encoder(s) under the keys diffusers' single-file loader expects
    (`cond_stage_model.transformer.text_model.` for SD 1.x; for SDXL `conditioner.embedders.0.transformer.text_model.`
    and the OpenCLIP-style `conditioner.embedders.1.model.` layout for the second encoder)."""
    state = prefixed("model.diffusion_model.", unet_to_ldm(pipe.unet))
    state |= prefixed("first_stage_model.", vae_to_ldm(pipe.vae))
    if getattr(pipe, "text_encoder_2", None) is not None:
        state |= prefixed("conditioner.embedders.0.transformer.", clip_to_ldm(pipe.text_encoder))
        state |= prefixed("conditioner.embedders.1.model.", open_clip_to_ldm(pipe.text_encoder_2))
    elif pipe.text_encoder.config.hidden_act == "gelu":  # SD 2.x: an OpenCLIP encoder, stored in OpenCLIP's layout
        state |= prefixed("cond_stage_model.model.", open_clip_to_ldm(pipe.text_encoder))
    else:
        state |= prefixed("cond_stage_model.transformer.", clip_to_ldm(pipe.text_encoder))
    save_file(state, str(path))


def prefixed(prefix: str, state: dict) -> dict:
    return {prefix + key: value for key, value in state.items()}


def unet_to_ldm(unet) -> dict:
    tables = DIFFUSERS_TO_LDM_MAPPING["unet"]
    fixed = tables["layers"] | tables["class_embed_type"] | tables["addition_embed_type"]
    per_block = unet.config.layers_per_block + 1  # LDM's input/output blocks come this many to a level
    ldm = {}
    for key, value in unet.state_dict().items():
        if key in fixed:
            ldm[fixed[key]] = value
            continue
        key = re.sub(r"(resnets\.\d+\.)(\w+)", lambda m: m[1] + UNET_RESNET[m[2]], key)
        where, block, kind, layer, rest = UNET_PART.fullmatch(key).groups()
        block = int(block or 0)
        # a downsampler takes the slot after its block's layers; an upsampler joins its block's last layer
        layer = per_block - 1 if kind in ("downsamplers", "upsamplers") else int(layer)
        if where == "down_blocks":
            rest = rest.replace("conv.", "op.") if kind == "downsamplers" else rest
            slot = 1 if kind == "attentions" else 0
            ldm[f"input_blocks.{1 + block * per_block + layer}.{slot}.{rest}"] = value
        elif where == "mid_block":
            ldm[f"middle_block.{2 * layer if kind == 'resnets' else 1}.{rest}"] = value
        else:
            slot = {"resnets": 0, "attentions": 1, "upsamplers": 1 + hasattr(unet.up_blocks[block], "attentions")}
            ldm[f"output_blocks.{block * per_block + layer}.{slot[kind]}.{rest}"] = value
    return ldm


def vae_to_ldm(vae) -> dict:
    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    last = len(vae.config.up_block_types) - 1  # LDM numbers the decoder's up blocks from the bottom
    ldm = {}
    for key, value in vae.state_dict().items():
        if key in fixed:
            ldm[fixed[key]] = value
            continue
        key = re.sub(r"down_blocks\.(\d+)\.resnets", r"down.\1.block", key)
        key = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0", r"down.\1.downsample", key)
        key = re.sub(r"up_blocks\.(\d+)\.resnets", lambda m: f"up.{last - int(m[1])}.block", key)
        key = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0", lambda m: f"up.{last - int(m[1])}.upsample", key)
        key = re.sub(r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m[1]) + 1}", key)
        key = key.replace("mid_block.attentions.0.", "mid.attn_1.").replace("conv_shortcut", "nin_shortcut")
        if ".attn_1." in key:
            head, name, param = re.fullmatch(r"(.+\.attn_1)\.(.+)\.(weight|bias)", key).groups()
            key = f"{head}.{VAE_ATTENTION[name]}.{param}"
            if value.ndim == 2:  # LDM's VAE attention uses 1x1 convolutions where diffusers uses linear layers
                value = value[:, :, None, None]
        ldm[key] = value
    return ldm


def clip_to_ldm(encoder) -> dict:
    """OpenAI CLIP's layout is transformers' own, under `text_model.` (which transformers 5's CLIPTextModel lacks)."""
    return {"text_model." + key.removeprefix("text_model."): value for key, value in encoder.state_dict().items()}


def open_clip_to_ldm(encoder) -> dict:
    tables = DIFFUSERS_TO_LDM_MAPPING["openclip"]
    # diffusers' tables name the parameters as in a `text_model`-nested CLIP model
    state = {
        key if key.startswith(("text_model.", "text_projection.")) else "text_model." + key: value
        for key, value in encoder.state_dict().items()
    }
    ldm = {}
    for key, value in state.items():
        if key in tables["layers"]:
            # OpenCLIP applies its projection as x @ P, a Linear layer as x @ W.T (and safetensors wants it contiguous)
            ldm[tables["layers"][key]] = value.T.contiguous() if key == "text_projection.weight" else value
        elif not re.search(r"\.[kv]_proj\.", key):  # OpenCLIP stacks q, k and v in one in_proj; k, v join q's
            if ".q_proj." in key:
                value = torch.cat([state[key.replace(".q_proj.", f".{p}_proj.")] for p in "qkv"])
                key = key.replace(".q_proj.", ".in_proj_")
            for diffusers_name, ldm_name in tables["transformer"].items():
                key = key.replace(diffusers_name, ldm_name)
            ldm["transformer." + key] = value
    return ldm


def save_sd3_single_file(pipe, path, t5: bool = True) -> None:
    """Write a diffusers StableDiffusion3Pipeline as ONE checkpoint in Stability AI's SD 3 layout, as
    `sd3.5_medium.safetensors` ships: the MMDiT under `model.diffusion_model.` (inverting diffusers'
    convert_sd3_transformer_checkpoint_to_diffusers), the VAE under `first_stage_model.`, and the text encoders in
    transformers' own layout under `text_encoders.clip_l.transformer.`, `text_encoders.clip_g.transformer.` and, with
    `t5`, `text_encoders.t5xxl.transformer.` (diffusers loads CLIP-L's projection as the identity)."""
    state = prefixed("model.diffusion_model.", mmdit_to_sai(pipe.transformer))
    state |= prefixed("first_stage_model.", vae_to_ldm(pipe.vae))
    state |= prefixed("text_encoders.clip_l.transformer.", pipe.text_encoder.state_dict())
    state |= prefixed("text_encoders.clip_g.transformer.", pipe.text_encoder_2.state_dict())
    if t5:
        t5_state = {key: value.clone() for key, value in pipe.text_encoder_3.state_dict().items()}  # tied: one each
        state |= prefixed("text_encoders.t5xxl.transformer.", t5_state)
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))


def swapped_halves(value: torch.Tensor) -> torch.Tensor:
    """diffusers' swap_scale_shift, which is its own inverse: (shift, scale) <-> (scale, shift)."""
    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


# diffusers' SD3Transformer2DModel names -> Stability AI's, outside the joint blocks
MMDIT = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}
# within joint block i: diffusers' name -> Stability AI's (q, k and v are stacked into one qkv there)
JOINT_BLOCK = {
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
}


def mmdit_to_sai(transformer) -> dict:
    state = transformer.state_dict()
    last = transformer.config.num_layers - 1
    sai = {}
    for key, value in state.items():
        name, param = key.rsplit(".", 1) if key != "pos_embed.pos_embed" else (key, None)
        if name in MMDIT:
            swap = name == "norm_out.linear"  # diffusers swaps scale and shift in the final norm
            sai[MMDIT[name] + (f".{param}" if param else "")] = swapped_halves(value) if swap else value
            continue
        block, inner = re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", name).groups()
        prefix = f"joint_blocks.{block}."
        if inner in JOINT_BLOCK:
            swap = inner == "norm1_context.linear" and int(block) == last  # the last context norm, swapped too
            sai[prefix + JOINT_BLOCK[inner] + f".{param}"] = swapped_halves(value) if swap else value
        elif inner in ("attn.to_q", "attn.add_q_proj"):  # q, k, v stacked
            side = "x_block" if inner == "attn.to_q" else "context_block"
            parts = ("to_q", "to_k", "to_v") if side == "x_block" else ("add_q_proj", "add_k_proj", "add_v_proj")
            sai[prefix + f"{side}.attn.qkv.{param}"] = torch.cat(
                [state[f"transformer_blocks.{block}.attn.{part}.{param}"] for part in parts]
            )
        elif inner not in ("attn.to_k", "attn.to_v", "attn.add_k_proj", "attn.add_v_proj"):
            raise KeyError(f"no Stability AI name for {key}")
    return sai
