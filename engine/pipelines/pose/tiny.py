"""Tiny MagicAnimate checkpoints in the published layout, for tests (random weights, real key names).

Folders (keys of `folders`): "sd15" (tokenizer/, text_encoder/, unet/config.json), "sd_vae_mse" (config.json +
safetensors), "magicanimate" (appearance_encoder/, densepose_controlnet/, temporal_attention/temporal_attention.ckpt).
Layers the real models initialise to zero (ControlNet zero convs, norm biases...) get random values so every
path contributes and bugs cannot hide behind zeros.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from engine.pipelines.densepose.tiny import write_tiny_checkpoints as write_tiny_densepose
from engine.pipelines.pose.appearance import prune
from engine.pipelines.pose.unet3d import SD_DOWN, SD_UP, UNet3DConditionModel, UNet3DConfig
from engine.pipelines.pose.weights import read_temporal_checkpoint
from engine.testing.weights import randomise, save_diffusers_folder
from engine.weights import DIFFUSERS_WEIGHTS

TINY_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [32, 64, 128, 128], "center_input_sample": False, "cross_attention_dim": 32,
    "down_block_types": list(SD_DOWN), "up_block_types": list(SD_UP), "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "sample_size": 8,
}
TINY_CONTROLNET = {key: TINY_UNET[key] for key in (
    "act_fn", "attention_head_dim", "block_out_channels", "cross_attention_dim", "down_block_types",
    "downsample_padding", "flip_sin_to_cos", "freq_shift", "in_channels", "layers_per_block",
    "mid_block_scale_factor", "norm_eps", "norm_num_groups")} | {"conditioning_embedding_out_channels": [8, 8, 16, 16]}
TINY_VAE = {
    "block_out_channels": [8, 16, 32, 32], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 8, "sample_size": 64, "scaling_factor": 0.18215,
}
TOKENS = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
          "pad_token": "<|endoftext|>"}
TEMPORAL = ("temporal_attention", "temporal_attention.ckpt")


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {b: b for b in printable}, 0
    for byte in range(256):
        if byte not in chars:
            chars[byte], extra = 256 + extra, extra + 1
    return [chr(chars[byte]) for byte in range(256)]


def write_tokenizer(folder: Path) -> int:
    """A CLIP tokenizer with a tiny vocabulary (bytes, two merges, specials); returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_alphabet()
    vocab = chars + [c + "</w>" for c in chars] + ["do", "dog</w>", TOKENS["bos_token"], TOKENS["eos_token"]]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\nd o\ndo g</w>\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(TOKENS))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **TOKENS}))
    return len(vocab)


def tiny_unet3d(seed: int = 0) -> UNet3DConditionModel:
    return randomise(UNet3DConditionModel(UNet3DConfig.from_sd_config(TINY_UNET)), torch.Generator().manual_seed(seed))


def write_tiny_checkpoints(folders: dict[str, Path], seed: int = 0) -> None:
    """Write the three checkpoint repositories with tiny random models (UNet3D as a raw torch.save dict), and the
    DensePose model when asked for its folder (the pose task's optional checkpoint)."""
    if "densepose" in folders:
        write_tiny_densepose({"densepose": folders["densepose"]}, seed)
    sd15, vae_dir, magic = (Path(folders[name]) for name in ("sd15", "sd_vae_mse", "magicanimate"))
    generator = torch.Generator().manual_seed(seed)
    vocab_size = write_tokenizer(sd15 / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
                                        pad_token_id=vocab_size - 1))
    randomise(text, generator).save_pretrained(sd15 / "text_encoder")
    (sd15 / "unet").mkdir(parents=True, exist_ok=True)
    (sd15 / "unet" / "config.json").write_text(json.dumps(TINY_UNET))
    save_diffusers_folder(randomise(AutoencoderKL(**TINY_VAE), generator), vae_dir)
    appearance = UNet2DConditionModel(**{k: v for k, v in TINY_UNET.items() if not k.startswith("_")})
    save_diffusers_folder(prune(randomise(appearance, generator)), magic / "appearance_encoder",
                          class_name="AppearanceEncoderModel")
    save_diffusers_folder(randomise(ControlNetModel(**TINY_CONTROLNET), generator), magic / "densepose_controlnet")
    (magic / TEMPORAL[0]).mkdir(parents=True, exist_ok=True)
    torch.save(tiny_unet3d(seed + 1).state_dict(), magic.joinpath(*TEMPORAL))


def rewrite_temporal_checkpoint(folders: dict[str, Path], variant: str) -> None:
    """Re-save the tiny temporal_attention.ckpt in another layout the original loader accepts.

    "wrapped": {'state_dict': {'module.<key>': ...}, 'global_step': 1};
    "motion_only": {'unet.<motion key>': ...}, with the spatial weights moved to sd15/unet/ (as for a
    motion-module-only release).
    """
    if variant not in ("wrapped", "motion_only"):
        raise ValueError(f"unknown variant {variant!r}")
    path = Path(folders["magicanimate"]).joinpath(*TEMPORAL)
    state = read_temporal_checkpoint(path)
    path.unlink()  # a new file, so that models memory-mapped on the old one stay valid
    if variant == "wrapped":
        torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "global_step": 1}, path)
    else:
        torch.save({"unet." + k: v for k, v in state.items() if "motion_modules" in k}, path)
        spatial = {k: v.contiguous() for k, v in state.items() if "motion_modules" not in k}
        save_file(spatial, str(Path(folders["sd15"]) / "unet" / DIFFUSERS_WEIGHTS))


def tiny_inputs(folder: Path) -> tuple[dict[str, object], dict[str, object]]:
    """Small inputs and options for a quick run on the tiny models (the contract test)."""
    import numpy as np

    from engine import media
    from engine.pipelines.pose.palette import viridis

    rng = np.random.default_rng(0)
    media.write_png(folder / "reference.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    levels = [np.kron(rng.integers(0, 255, (8, 8), dtype=np.uint8), np.ones((8, 8), np.uint8)) for _ in range(3)]
    media.write_mp4(folder / "motion.mp4", [viridis(frame) for frame in levels], 25)  # DensePose's colours
    return ({"image": folder / "reference.png", "motion": folder / "motion.mp4"},
            {"size": 64, "steps": 2, "context": 2, "overlap": 1, "seed": 3})
