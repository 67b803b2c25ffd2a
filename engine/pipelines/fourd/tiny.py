"""Tiny SV4D 2.0 and SV3D checkpoints in the published single-file layouts (tests and the offline demo cache).

Each `<model>.safetensors` holds every part under its sgm prefix with random weights (zero-initialised layers
randomised too): the UNet, the OpenCLIP visual tower AND text-tower keys, three equal conditioning autoencoders with
their unused decoding halves, and the first-stage decoder, so the strict loading and the expected-unused rules are
exercised. The tiny hyper-parameters go beside the weights as `<model>.yaml` in the original's config format (the
production path reads a config found there), with the real N_TIME / N_VIEW so the real window schedule runs.
SV3D files hold the VideoUNet, the same CLIP tower and text-tower keys, one conditioning autoencoder (with its
unused decoding half) and the first-stage decoder.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from engine.testing.onnx import write_tiny_cutout
from engine.testing.weights import randomise

from . import checkpoint as ck
from .background import MODEL_FILE
from .clip import OpenCLIPImageEmbedder
from .config import BUILT_IN, SV3D_MODELS, FourDConfig, parse_config
from .pipeline import MODELS
from .sv3d_config import SV3DConfig
from .unet import SpatialUNetModelWithTime
from .vae import ConditionEncoder, Decoder
from .video_unet import VideoUNet

REMBG_CHECKPOINT = "rembg_u2net"
TINY_NETWORK = {"model_channels": 32, "channel_mult": [1, 1], "num_res_blocks": 1, "attention_resolutions": [2],
                "num_head_channels": 16, "context_dim": 32, "adm_in_channels": 128}
TINY_SINUSOIDS = {"cond_frames": 32, "polar_rad": 48, "azimuth_rad": 48}  # 32 + 48 + 48 = adm_in_channels
TINY_SV3D_SINUSOIDS = {"cond_aug": 32, "polars_rad": 48, "azimuths_rad": 48}  # sv3d_p 128, sv3d_u 32
TINY_VAE = {"ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1}
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32,
                                             "patch_size": 32},
             "text_cfg": {"context_length": 77, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}}


def tiny_config_data(model: str) -> dict[str, Any]:
    """The built-in config of `model` with tiny sizes, in the original's format (N_TIME / N_VIEW unchanged)."""
    data = copy.deepcopy(yaml.safe_load((BUILT_IN / f"{model}.yaml").read_text()))
    params = data["model"]["params"]
    params["network_config"]["params"].update(TINY_NETWORK)
    if model in SV3D_MODELS:
        params["network_config"]["params"]["adm_in_channels"] = sum(
            TINY_SV3D_SINUSOIDS[e["input_key"]] for e in params["conditioner_config"]["params"]["emb_models"]
            if e["input_key"] in TINY_SV3D_SINUSOIDS)
    embedders = params["conditioner_config"]["params"]["emb_models"]
    for embedder in embedders:
        key, p = embedder["input_key"], embedder["params"]
        if "encoder_config" in p:
            p["encoder_config"]["params"]["ddconfig"] = {**p["encoder_config"]["params"]["ddconfig"], **TINY_VAE}
        if key == "cond_frames" and "sigma_cond_config" in p:
            p["sigma_cond_config"]["params"]["outdim"] = TINY_SINUSOIDS[key]
        if key in ("polar_rad", "azimuth_rad"):
            p["outdim"] = TINY_SINUSOIDS[key]
        if key in TINY_SV3D_SINUSOIDS:
            p["outdim"] = TINY_SV3D_SINUSOIDS[key]
        if key == "cond_frames_without_noise":
            p["open_clip_embedding_config"].setdefault("params", {})["arch"] = TINY_CLIP
    decoder = params["first_stage_config"]["params"]["decoder_config"]
    decoder["params"] = {**decoder["params"], **TINY_VAE}
    return data


def _prefixed(prefix: str, module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    return {prefix + name: tensor.detach().contiguous().clone() for name, tensor in state.items()}


def _text_tower(config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The OpenCLIP text-tower tensors sgm keeps in the file (it deletes only `transformer`): unused by the app."""
    text, embed = config["text_cfg"], config["embed_dim"]
    shapes = {"positional_embedding": (text["context_length"], text["width"]),
              "token_embedding.weight": (text["vocab_size"], text["width"]), "ln_final.weight": (text["width"],),
              "ln_final.bias": (text["width"],), "text_projection": (text["width"], embed), "logit_scale": ()}
    return {ck.CLIP + name: torch.randn(shape, generator=generator) * 0.02 for name, shape in shapes.items()}


def tiny_state(config: FourDConfig, clip_arch: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every tensor of a tiny single-file checkpoint, with the published prefixes."""
    state = _prefixed(ck.UNET, randomise(SpatialUNetModelWithTime(config.unet), generator))
    state |= _prefixed(ck.CLIP, randomise(OpenCLIPImageEmbedder(config.clip), generator))
    state |= _text_tower(clip_arch, generator)
    encoder = randomise(ConditionEncoder(config.encoder), generator)
    unused_decoder = randomise(Decoder(config.encoder), generator)
    post_quant = randomise(nn.Conv2d(config.encoder.embed_dim, config.encoder.z_channels, 1), generator)
    for prefix in (ck.FRAMES_ENCODER, ck.VIEW_ENCODER, ck.MOTION_ENCODER):  # three equal copies, as published
        state |= _prefixed(prefix, encoder) | _prefixed(prefix + "decoder.", unused_decoder)
        state |= _prefixed(prefix + "post_quant_conv.", post_quant)
    state |= _prefixed(ck.DECODER, randomise(Decoder(config.decoder), generator))
    return state


def tiny_sv3d_state(config: SV3DConfig, clip_arch: Mapping[str, Any], generator: torch.Generator
                    ) -> dict[str, torch.Tensor]:
    """Every tensor of a tiny SV3D single-file checkpoint, with the published prefixes."""
    state = _prefixed(ck.UNET, randomise(VideoUNet(config.unet), generator))
    state |= _prefixed(ck.CLIP, randomise(OpenCLIPImageEmbedder(config.clip), generator))
    state |= _text_tower(clip_arch, generator)
    state |= _prefixed(ck.FRAMES_ENCODER, randomise(ConditionEncoder(config.encoder), generator))
    state |= _prefixed(ck.FRAMES_ENCODER + "decoder.", randomise(Decoder(config.encoder), generator))
    state |= _prefixed(ck.FRAMES_ENCODER + "post_quant_conv.",
                       randomise(nn.Conv2d(config.encoder.embed_dim, config.encoder.z_channels, 1), generator))
    state |= _prefixed(ck.DECODER, randomise(Decoder(config.decoder), generator))
    return state


def write_tiny_model(folder: Path, model: str, generator: torch.Generator) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = tiny_config_data(model)
    config = parse_config(data, model, source=f"tiny {model}")
    clip_arch = TINY_CLIP
    build = tiny_sv3d_state if model in SV3D_MODELS else tiny_state
    with torch.no_grad():
        save_file(build(config, clip_arch, generator), str(folder / f"{model}.safetensors"))
    (folder / f"{model}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def write_tiny_checkpoints(folders: Mapping[str, Path], seed: int = 0) -> None:
    """Tiny sv4d2, sv4d2_8views, sv4d, sv3d_u and sv3d_p files (each in its own snapshot folder) and the tiny rembg
    model."""
    generator = torch.Generator().manual_seed(seed)
    for model in MODELS + ("sv4d",) + SV3D_MODELS:
        if model in folders:
            write_tiny_model(Path(folders[model]), model, generator)
    if REMBG_CHECKPOINT in folders:
        Path(folders[REMBG_CHECKPOINT]).mkdir(parents=True, exist_ok=True)
        write_tiny_cutout(Path(folders[REMBG_CHECKPOINT]) / MODEL_FILE)


def synthetic_clip(frames: int = 24, size: int = 96) -> list[np.ndarray]:
    """A dark disc moving across a white background (RGB uint8 frames)."""
    yy, xx = np.mgrid[:size, :size]
    clip = []
    for i in range(frames):
        cx, cy = size * (0.35 + 0.3 * i / frames), size * (0.5 + 0.1 * np.sin(i / 3))
        frame = np.full((size, size, 3), 255, np.uint8)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < (size * 0.18) ** 2
        frame[inside] = (40 + 5 * i % 200, 90, 160)
        clip.append(frame)
    return clip


def tiny_inputs(folder: Path) -> tuple[dict[str, object], dict[str, object]]:
    """A short GIF of an object on white, and options that make the run tiny (64 px, one step, whole-window chunks)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "object.gif"
    images = [Image.fromarray(frame) for frame in synthetic_clip()]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return {"video": path}, {"size": 64, "steps": 1, "remove_bg": False, "encode_chunk": 48, "decode_chunk": 48}
