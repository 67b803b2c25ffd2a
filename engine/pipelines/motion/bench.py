"""Speed/memory benchmark of the trajectory pipeline with random weights (no download needed): the whole video,
motion field to decoded frames, at 512x512 (full) or 64x64 (tiny)."""
from __future__ import annotations

import time

import numpy as np
import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler

from engine.bench import Harness, Measurements
from engine.models.mofa.cmp import CMP, CMPConfig
from engine.models.mofa.controlnet import FlowControlNet
from engine.models.mofa.svd_unet import MofaSVDUNet
from .pipeline import MotionPipeline
from .spec import SPEC
from .tiny import SVD_SCHEDULER, TINY_CLIP, TINY_CMP, TINY_UNET, TINY_VAE

SETTINGS = {"frames": 25, "steps": 25}  # the task's defaults: one video as the app makes it
FULL_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                layers_per_block=2, latent_channels=4, sample_size=768)
FULL_CLIP = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
                 image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")


def random_mofa_networks(harness: Harness, full: bool) -> dict:
    """SVD-XT's networks, its scheduler and CMP with random weights: what every MOFA pipeline is built with besides
    its adapter."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    clip = CLIPVisionConfig(**(FULL_CLIP if full else TINY_CLIP))
    return {
        "unet": harness.network(lambda: MofaSVDUNet(**({} if full else TINY_UNET))),
        "vae": harness.network(lambda: AutoencoderKLTemporalDecoder(**(FULL_VAE if full else TINY_VAE))),
        "image_encoder": harness.network(lambda: CLIPVisionModelWithProjection(clip)),
        "scheduler": EulerDiscreteScheduler.from_config(SVD_SCHEDULER),
        "cmp": harness.network(lambda: CMP(CMPConfig() if full else TINY_CMP), dtype=torch.float32),  # as loaded
    }


def build_random_pipeline(harness: Harness, size: str) -> MotionPipeline:
    full = size == "full"
    controlnet = {k: v for k, v in ({} if full else TINY_UNET).items() if k != "num_frames"}
    pipeline = MotionPipeline(**random_mofa_networks(harness, full),
                              controlnet=harness.network(lambda: FlowControlNet(**controlnet)),
                              device=harness.device, dtype=harness.dtype)
    return pipeline.with_offload(harness.offload)


def bench(harness: Harness, size: str, frames: int, steps: int) -> Measurements:
    """Time one video ("video") and, from the progress reports, the seconds per denoising step."""
    pipeline = build_random_pipeline(harness, size)
    side = 512 if size == "full" else 64
    image = (np.random.RandomState(0).rand(side, side, 3) * 255).astype(np.uint8)
    inputs = {"image": image, "trajectories": [[[side * 0.3, side * 0.3], [side * 0.6, side * 0.5]]]}
    options = SPEC.parse_options({"frames": frames, "steps": steps, "size": side})
    stamps: list[float] = []

    def stamp_steps(fraction: float, message: str) -> None:
        if message.startswith("Denoising step"):
            harness.synchronize()
            stamps.append(time.perf_counter())

    harness.reset_peak()
    with harness.timer("video"):
        start = time.perf_counter()
        pipeline(inputs, options, progress=stamp_steps)
    # the first step's time includes the motion field and the encoders, so it is left out when there are others
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else stamps[0] - start
    return {"resolution": side, "s_per_step": round(per_step, 4)}
