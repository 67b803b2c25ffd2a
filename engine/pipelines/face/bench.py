"""Speed/memory benchmark of the face pipeline with random weights (no download needed): a whole video from landmarks,
pose images and motion field to decoded frames, at 512x512 (full) or 64x64 (tiny). `--set frames=100` measures
periodic sampling (100 frames = 8 windows of 25 per step)."""
from __future__ import annotations

import time

import numpy as np
import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler

from engine.bench import Harness, Measurements
from engine.models.mofa.cmp import CMP, CMPConfig
from engine.models.mofa.landmark_controlnet import LandmarkControlNet
from engine.models.mofa.svd_unet import MofaSVDUNet
from engine.pipelines.motion.bench import FULL_CLIP, FULL_VAE
from engine.pipelines.motion.tiny import SVD_SCHEDULER, TINY_CLIP, TINY_CMP, TINY_UNET, TINY_VAE
from .pipeline import FacePipeline
from .spec import SPEC
from .tiny import TINY_MATTING, synthetic_landmarks
from .windows import periodic_windows

SETTINGS = {"frames": 25, "steps": 25}  # one 25-frame video as the app makes it by default


def build_random_pipeline(harness: Harness, size: str) -> FacePipeline:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    full = size == "full"
    unet = {} if full else TINY_UNET
    controlnet = {} if full else {**{k: v for k, v in unet.items() if k != "num_frames"}, **TINY_MATTING}
    clip = CLIPVisionConfig(**(FULL_CLIP if full else TINY_CLIP))
    pipeline = FacePipeline(
        unet=harness.network(lambda: MofaSVDUNet(**unet)),
        vae=harness.network(lambda: AutoencoderKLTemporalDecoder(**(FULL_VAE if full else TINY_VAE))),
        image_encoder=harness.network(lambda: CLIPVisionModelWithProjection(clip)),
        scheduler=EulerDiscreteScheduler.from_config(SVD_SCHEDULER),
        controlnet=harness.network(lambda: LandmarkControlNet(**controlnet)),
        cmp=harness.network(lambda: CMP(CMPConfig() if full else TINY_CMP), dtype=torch.float32),  # as loaded
        device=harness.device, dtype=harness.dtype)
    return pipeline.with_offload(harness.offload)


def bench(harness: Harness, size: str, frames: int, steps: int) -> Measurements:
    """Time one video ("video") and, from the progress reports, the seconds per denoising step (all windows)."""
    pipeline = build_random_pipeline(harness, size)
    side = 512 if size == "full" else 64
    image = (np.random.RandomState(0).rand(side, side, 3) * 255).astype(np.uint8)
    inputs = {"image": image, "landmarks": synthetic_landmarks(frames, side, side)}
    options = SPEC.parse_options({"steps": steps, "size": side})
    stamps: list[float] = []

    def stamp_steps(fraction: float, message: str) -> None:
        if message.startswith(("Motion field ready", "Denoising step")):
            harness.synchronize()
            stamps.append(time.perf_counter())

    harness.reset_peak()
    with harness.timer("video"):
        start = time.perf_counter()
        pipeline(inputs, options, progress=stamp_steps)
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else stamps[0] - start
    return {"resolution": side, "frames": frames, "windows_per_step": len(periodic_windows(frames)), "s_per_step": round(per_step, 4),
            "motion_field_s": round(stamps[0] - start, 4)}
