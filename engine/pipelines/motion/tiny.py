"""Tiny random checkpoints in the published layouts of SVD-XT-1.1 and MOFA-Video-Traj (for tests)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from diffusers import AutoencoderKLTemporalDecoder

from engine.models.mofa.cmp import CMPConfig, CMPNet
from engine.models.mofa.controlnet import FlowControlNet
from .pipeline import CMP_CHECKPOINT, CMP_CONFIG, CONTROLNET_DIR, OPENAI_CLIP_STATS, SVD_KEY, TRAJ_KEY
from engine.models.mofa.svd_unet import MofaSVDUNet
from engine.testing.weights import randomise, save_diffusers_folder

TINY_UNET = dict(block_out_channels=(32, 64, 64, 64), layers_per_block=2, num_attention_heads=(2, 4, 4, 4),
                 cross_attention_dim=32, addition_time_embed_dim=8, projection_class_embeddings_input_dim=24,
                 num_frames=4)
TINY_VAE = dict(block_out_channels=(32,) * 4, down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2,
                latent_channels=4, sample_size=64)
TINY_CLIP = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=224,
                 patch_size=32, projection_dim=32)
TINY_CMP = CMPConfig(base_width=8, blocks=(1, 1, 1, 1), img_enc_dim=16, sparse_enc_dim=16, decoder_width=16, size=64)
SVD_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
    "prediction_type": "v_prediction", "set_alpha_to_one": False, "sigma_max": 700.0, "sigma_min": 0.002,
    "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "timestep_type": "continuous",
    "trained_betas": None, "use_karras_sigmas": True}


def write_svd(folder: Path, generator: torch.Generator) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    save_diffusers_folder(randomise(MofaSVDUNet(**TINY_UNET), generator), folder / "unet", fp16_variant=True)
    save_diffusers_folder(randomise(AutoencoderKLTemporalDecoder(**TINY_VAE), generator), folder / "vae",
                          fp16_variant=True)
    clip = randomise(CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP)), generator)
    clip.save_pretrained(folder / "image_encoder")
    clip.half().save_pretrained(folder / "image_encoder", variant="fp16")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SVD_SCHEDULER, indent=2))
    (folder / "feature_extractor").mkdir(parents=True, exist_ok=True)
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": list(OPENAI_CLIP_STATS[0]),
        "image_std": list(OPENAI_CLIP_STATS[1]), "resample": 3, "size": 224}, indent=2))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableVideoDiffusionPipeline",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"]}, indent=2))


def write_cmp(checkpoint: Path, config_file: Path, cfg: CMPConfig, generator: torch.Generator) -> None:
    """Training-style checkpoint: {'step','state_dict','optimizer'}, keys prefixed `module.`, and like the
    published file without BatchNorm `num_batches_tracked` counters."""
    net = randomise(CMPNet(cfg), generator)
    state = {f"module.{k}": v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 42000, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, checkpoint)
    config_file.write_text(yaml.safe_dump({
        "model": {"arch": "CMP", "module": {"arch": "CMP", "image_encoder": "resnet50",
                                            "sparse_encoder": "shallownet8x", "flow_decoder": "MotionDecoderSkipLayer",
                                            "skip_layer": True, "img_enc_dim": cfg.img_enc_dim,
                                            "sparse_enc_dim": cfg.sparse_enc_dim, "output_dim": 2 * cfg.nbins,
                                            "nbins": cfg.nbins, "fmax": cfg.fmax}},
        "data": {"crop_size": [cfg.size, cfg.size]}}))


def write_traj(folder: Path, generator: torch.Generator) -> None:
    unet_keys = {k: v for k, v in TINY_UNET.items() if k != "num_frames"}
    save_diffusers_folder(randomise(FlowControlNet(**unet_keys), generator), folder / CONTROLNET_DIR)
    write_cmp(folder / CMP_CHECKPOINT, folder / CMP_CONFIG, TINY_CMP, generator)


def write_tiny_checkpoints(folders: dict[str, Path], seed: int = 0) -> None:
    """Write tiny 'svd_xt_11' and 'mofa_traj' folders (same files, formats and key names as published)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        write_svd(Path(folders[SVD_KEY]), generator)
        write_traj(Path(folders[TRAJ_KEY]), generator)


def tiny_inputs(folder: Path) -> tuple[dict[str, object], dict[str, object]]:
    """Small inputs and options for a quick run on the tiny models (the contract test)."""
    import numpy as np
    from PIL import Image

    picture = folder / "picture.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(picture)
    return ({"image": picture, "trajectories": [[[10, 12], [30, 20], [44, 40]]]},
            {"frames": 3, "steps": 2, "size": 64, "seed": 3})
